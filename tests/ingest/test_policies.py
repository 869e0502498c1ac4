from __future__ import annotations

import random

import pytest

from feedtag.ingest.policies import (
    Backoff,
    PacketGate,
    RateMeter,
    RestartBudget,
    StallDetector,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_backoff_grows_caps_and_resets() -> None:
    backoff = Backoff(0.5, 4.0, multiplier=2, jitter=0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_backoff_jitter_stays_in_bounds_and_spreads() -> None:
    backoff = Backoff(1.0, 100.0, multiplier=1, jitter=0.2, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(0.8 <= d <= 1.2 for d in delays)
    assert max(delays) - min(delays) > 0.2  # actually jittered, so reconnect storms spread


def test_backoff_never_exceeds_cap_with_jitter() -> None:
    backoff = Backoff(1.0, 2.0, jitter=1.0, rng=random.Random(1))
    assert all(backoff.next_delay() <= 2.0 for _ in range(100))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_s": 0, "max_s": 1},
        {"initial_s": 2, "max_s": 1},
        {"initial_s": 1, "max_s": 2, "multiplier": 0.5},
        {"initial_s": 1, "max_s": 2, "jitter": 1.5},
    ],
)
def test_backoff_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="expected"):
        Backoff(**kwargs)


def test_restart_budget_window_slides() -> None:
    clock = FakeClock()
    budget = RestartBudget(limit=3, window_s=60, clock=clock)
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]
    clock.now += 59
    assert not budget.try_spend()
    clock.now += 1.5
    assert budget.try_spend()


def test_stall_detector_counts_from_the_last_frame() -> None:
    clock = FakeClock()
    stall = StallDetector(timeout_s=3, clock=clock)
    stall.start()
    clock.now += 2.9
    assert not stall.is_stalled()
    stall.frame_decoded()
    clock.now += 2.9
    assert not stall.is_stalled()
    clock.now += 0.2
    assert stall.is_stalled()
    assert stall.silent_for() == pytest.approx(3.1)


def test_rate_meter() -> None:
    clock = FakeClock()
    meter = RateMeter(window_s=5, clock=clock)
    for _ in range(50):
        clock.now += 0.1
        meter.tick()
    assert meter.rate() == pytest.approx(10, rel=0.05)
    clock.now += 10
    assert meter.rate() == 0


def _group(gate: PacketGate, t: float, p_frames: int, keyframe: int = 20_000) -> bool:
    """24 P-frames of ``p_frames`` bytes after the keyframe at ``t``, then the next keyframe
    at ``t + 1``: whether the gate calls the scene unchanged then."""
    for index in range(24):
        gate.observe(t + (index + 1) / 25, p_frames, False)
    gate.observe(t + 1, keyframe, True)
    return gate.unchanged


def test_the_packet_gate_learns_a_baseline_before_it_judges() -> None:
    gate = PacketGate()
    gate.observe(0.0, 20_000, True)
    assert [_group(gate, t, 60) for t in range(3)] == [False] * 3
    gate.decoded()
    assert _group(gate, 3, 60)


@pytest.mark.parametrize(
    ("p_frames", "keyframe", "unchanged"),
    [
        (60, 20_000, True),
        (89, 20_000, True),  # 1.48x the baseline: within PACKET_GATE_RATIO
        (92, 20_000, False),  # 1.53x
        (60, 23_900, True),  # keyframe 19.5% larger: within PACKET_GATE_KEYFRAME_CHANGE
        (60, 24_200, False),  # 21% larger: lights on
        (60, 15_000, False),  # 25% smaller: dark, covered
        (0, 20_000, True),  # fewer bytes is no change (the picture froze: see health rules)
    ],
)
def test_the_packet_gate_judges_each_group_against_the_three_before(
    p_frames: int, keyframe: int, unchanged: bool
) -> None:
    gate = PacketGate()
    gate.observe(0.0, 20_000, True)
    for t in range(3):
        _group(gate, t, 60)
    gate.decoded()
    assert _group(gate, 3, p_frames, keyframe) is unchanged


def test_a_change_holds_until_the_caller_decodes_a_keyframe() -> None:
    """A car that arrived and parked in the second before a keyframe the camera did not
    decode still needs a look: the change is kept until :meth:`PacketGate.decoded`."""
    gate = PacketGate()
    gate.observe(0.0, 20_000, True)
    for t in range(3):
        _group(gate, t, 60)
    gate.decoded()
    assert not _group(gate, 3, 400)  # the car drives in
    assert not _group(gate, 4, 60)  # parked: quiet again, but not yet looked at
    gate.decoded()
    assert _group(gate, 5, 60)


@pytest.mark.parametrize(("p_frames", "unchanged"), [(580, True), (620, False)])
def test_an_encoder_that_spends_on_a_still_scene_is_not_believed(
    p_frames: int, unchanged: bool
) -> None:
    """P-frames of 2.9% of a keyframe are what a variable-rate encoder spends on a busy
    scene; 3.1% on a still one is a constant-rate encoder filling its budget with noise,
    whose sizes do not change when the scene does."""
    gate = PacketGate()
    gate.observe(0.0, 20_000, True)
    for t in range(3):
        _group(gate, t, p_frames)
    assert gate.believed is None  # the baseline was being built
    gate.decoded()
    assert _group(gate, 3, p_frames) is unchanged
    assert gate.believed is unchanged


def test_an_all_intra_stream_is_never_called_unchanged() -> None:
    gate = PacketGate()
    for t in range(8):
        gate.observe(float(t), 20_000, True)
        gate.decoded()
    gate.observe(8.0, 20_000, True)
    assert not gate.unchanged and gate.believed is False


def test_a_stream_without_timestamps_is_never_called_unchanged() -> None:
    gate = PacketGate()
    for _ in range(6):
        for _ in range(24):
            gate.observe(None, 60, False)
        gate.observe(None, 20_000, True)
        gate.decoded()
    assert not _group(gate, 10, 60)
    with pytest.raises(ValueError, match="history"):
        PacketGate(history=0)
