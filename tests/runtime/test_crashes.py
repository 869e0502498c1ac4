"""The crash budget of the Ray engine's coordinator, on an injected clock."""

from __future__ import annotations

import pytest

from feedtag.runtime.crashes import CRASH_BUDGET, CRASH_WINDOW_S, TRIAL_S, CrashBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.mark.parametrize(
    ("crashes", "offline", "held"),
    [
        ([["a"]] * (CRASH_BUDGET - 1), set(), []),
        ([["a"]] * CRASH_BUDGET, {"a"}, []),
        ([["a", "b"]] * (CRASH_BUDGET - 1), set(), []),
        ([["b", "a"]] * CRASH_BUDGET, set(), ["a", "b"]),  # spent together: held, in order
        ([["a", "b"]] * (CRASH_BUDGET - 1) + [["a"]], {"a"}, []),  # one more strike: blamed
        ([["a", "b", "c"], ["a", "b"], ["a", "b"]], set(), ["a", "b"]),
    ],
)  # fmt: skip
def test_strikes_put_one_camera_offline_or_hold_several(
    clock: Clock, crashes: list[list[str]], offline: set[str], held: list[str]
) -> None:
    budget = CrashBudget(clock=clock)
    for suspects in crashes:
        budget.crashed(suspects)
        clock.now += 5
    assert set(budget.offline) == offline
    assert budget.held == held
    assert budget.kept_out() == offline | set(held)
    for camera_id in offline:
        assert f"crashed {CRASH_BUDGET} times" in budget.offline[camera_id]


def test_the_camera_whose_shard_crashes_on_its_trial_goes_offline(clock: Clock) -> None:
    budget = CrashBudget(clock=clock)
    for _ in range(CRASH_BUDGET):
        budget.crashed(["crasher", "mate", "bystander"])
    assert budget.held == ["bystander", "crasher", "mate"]
    wanted = {"crasher", "mate", "bystander", "other"}

    budget.next_trial(wanted)  # bystander runs alone among the suspects, for TRIAL_S
    assert budget.trial == "bystander" and "bystander" not in budget.kept_out()
    clock.now += TRIAL_S / 2
    budget.crashed(["other"])  # another shard's crash does not end the trial
    budget.next_trial(wanted)
    assert budget.trial == "bystander"
    clock.now += TRIAL_S / 2
    budget.next_trial(wanted)  # cleared; the crasher's turn
    assert budget.trial == "crasher" and budget.held == ["mate"]

    budget.crashed(["crasher", "bystander", "other"])  # on its trial: only it is blamed
    assert set(budget.offline) == {"crasher"}
    assert f"crashed {CRASH_BUDGET + 1} times" in budget.offline["crasher"]
    budget.next_trial(wanted)
    assert budget.trial == "mate"
    clock.now += TRIAL_S
    budget.next_trial(wanted)
    assert budget.trial is None and budget.kept_out() == {"crasher"}
    budget.crashed(["bystander", "mate"])  # cleared cameras start from no strikes
    assert set(budget.offline) == {"crasher"} and not budget.held


def test_strikes_expire_after_the_window(clock: Clock) -> None:
    budget = CrashBudget(clock=clock)
    for _ in range(CRASH_BUDGET - 1):
        budget.crashed(["a"])
    clock.now += CRASH_WINDOW_S + 1
    budget.crashed(["a"])
    assert not budget.offline


def test_clear_and_removal_give_another_chance(clock: Clock) -> None:
    budget = CrashBudget(clock=clock)
    for _ in range(CRASH_BUDGET):
        budget.crashed(["a"])
        budget.crashed(["b", "c"])
    assert set(budget.offline) == {"a"} and budget.held == ["b", "c"]
    budget.clear("a")
    budget.clear("b")
    assert budget.kept_out() == {"c"}
    budget.crashed(["a"])
    assert not budget.offline
    budget.next_trial({"a", "b"})  # c is no longer configured: forgotten
    assert budget.held == [] and budget.trial is None
