"""Rendezvous assignment: few moves when shards come and go, shares follow capacity."""

from __future__ import annotations

import pytest

from feedtag.runtime.assignment import Move, assign, moves, owner

IDS = [f"cam-{n:05d}" for n in range(10_000)]
FOUR = {"s0": 1.0, "s1": 1.0, "s2": 1.0, "s3": 1.0}


@pytest.fixture(scope="module")
def four() -> dict[str, str]:
    return assign(IDS, FOUR)


def test_losing_a_shard_moves_only_its_cameras(four: dict[str, str]) -> None:
    after = assign(IDS, {k: v for k, v in FOUR.items() if k != "s2"})
    moved = moves(four, after)
    lost = [c for c, s in four.items() if s == "s2"]
    assert sorted(m.camera_id for m in moved) == sorted(lost)
    assert all(m.source == "s2" and m.target in {"s0", "s1", "s3"} for m in moved)
    assert len(moved) == pytest.approx(2_500, abs=150)  # measured: 2,457


@pytest.mark.parametrize(
    ("joining", "weight", "share"),
    [
        ("s4", 1.0, 1 / 5),  # one more equal shard takes a fifth (measured: 2,022)
        ("big", 4.0, 4 / 8),  # as big as the other four together: half (measured: 4,929)
    ],
)
def test_adding_a_shard_moves_about_its_weighted_share(
    four: dict[str, str], joining: str, weight: float, share: float
) -> None:
    after = assign(IDS, {**FOUR, joining: weight})
    moved = moves(four, after)
    assert all(m.target == joining for m in moved)  # nobody moves between old shards
    assert len(moved) == pytest.approx(share * len(IDS), rel=0.06)


def test_shares_follow_capacity() -> None:
    plan = assign(IDS, {"small": 1.0, "large": 3.0})
    large = sum(1 for shard in plan.values() if shard == "large")
    assert large / len(IDS) == pytest.approx(0.75, abs=0.02)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ({"a": "s1"}, {"a": "s1"}, []),
        ({}, {"a": "s1"}, [Move("a", None, "s1")]),
        ({"a": "s1"}, {}, [Move("a", "s1", None)]),
        ({"a": "s1", "b": "s1"}, {"a": "s2", "b": "s1"}, [Move("a", "s1", "s2")]),
    ],
)
def test_moves_table(before: dict[str, str], after: dict[str, str], expected: list[Move]) -> None:
    assert moves(before, after) == expected


def test_no_shard_is_an_error() -> None:
    with pytest.raises(ValueError, match="no shard"):
        owner("a", {"s": 0.0})
