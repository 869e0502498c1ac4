"""A feeds-per-core figure is given only for a run that kept up; the search finds the edge."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from feedtag.bench.capacity import (
    STAGGER_S,
    Capacity,
    ResultRecorder,
    ThroughputCounts,
    judge,
    search_capacity,
    start_staggered,
)
from feedtag.bench.ingest import EngineRun


def counts(*, due: int = 1000, handled: int = 1000, dropped: int = 0, wall: float = 10.0,
           expected_fps: float = 100.0) -> ThroughputCounts:  # fmt: skip
    return ThroughputCounts(
        feeds=100, wall_s=wall, cpu_s=5.0, expected_fps=expected_fps, due=due,
        handled=handled, dropped=dropped,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("run", "latency_s", "reason"),
    [
        # a saturated detector: 20% of the due frames dropped as detector_busy
        (counts(handled=800, dropped=200), 0.3, "dropped"),
        # just under the 99% bar
        (counts(handled=989, dropped=11), 0.3, "dropped"),
        # every frame handled, but results arrive too late to be live
        (counts(), 2.5, "late"),
        # the ingest itself fell behind: half the frames the feeds ask for never came
        (counts(due=500, handled=500), 0.3, "ingest"),
        # nothing was due at all
        (counts(due=0, handled=0), 0.3, "nothing"),
    ],
)
def test_a_run_that_did_not_keep_up_gets_no_feeds_per_core(
    run: ThroughputCounts, latency_s: float, reason: str
) -> None:
    result = judge(run, [latency_s] * run.handled)
    assert result.saturated, reason
    assert result.feeds_per_core is None, reason
    # the cost is still reported, so that the run can be read
    assert result.cpu_s_per_feed_s == pytest.approx(5.0 / (100 * 10.0))


def test_a_run_that_kept_up_reports_feeds_per_core_and_its_throughput() -> None:
    latencies = [0.1] * 980 + [0.5] * 20  # p99 falls among the slower results
    result = judge(counts(handled=995, dropped=5), latencies)
    assert not result.saturated
    assert result.feeds_per_core == pytest.approx(200.0)
    assert result.detected_fps == pytest.approx(99.5)
    assert result.dropped_fps == pytest.approx(0.5)
    assert result.handled_fraction == pytest.approx(0.995)
    assert 0.1 < (result.p99_latency_s or 0) <= 0.5


def test_the_p99_bound_is_on_the_slow_tail_not_the_mean() -> None:
    latencies = [0.05] * 970 + [3.0] * 30  # mean 0.14 s, 3% of results 3 s late
    assert judge(counts(), latencies).saturated


def test_the_recorder_counts_results_by_the_time_of_their_frame() -> None:
    now = [100.0]
    recorder = ResultRecorder(clock=lambda: now[0], marks_due=True)
    for frame_time, arrived in ((9.0, 9.5), (10.0, 10.2), (12.0, 13.5), (20.0, 20.1)):
        recorder.due(frame_time)
        now[0] = arrived
        recorder.record(frame_time)
    assert recorder.window(10.0, 20.0) == pytest.approx([0.2, 1.5])
    assert recorder.due_in(10.0, 20.0) == 2


def _fake_run(feeds: int, capacity: int) -> Capacity:
    kept_up = feeds <= capacity
    return Capacity(
        cpu_s_per_feed_s=0.01, due_fps=feeds, detected_fps=feeds if kept_up else feeds / 2,
        dropped_fps=0 if kept_up else feeds / 2, handled_fraction=1.0 if kept_up else 0.5,
        p99_latency_s=0.2, saturated=not kept_up, feeds_per_core=100.0 if kept_up else None,
    )  # fmt: skip


@pytest.mark.parametrize(("capacity", "start"), [(37, 8), (8, 8), (5, 40), (200, 1), (0, 4)])
def test_the_search_finds_the_largest_feed_count_that_keeps_up(capacity: int, start: int) -> None:
    tried: list[int] = []
    said: list[str] = []

    def measure(feeds: int) -> Capacity:
        tried.append(feeds)
        return _fake_run(feeds, capacity)

    found = search_capacity(measure, start, say=said.append)
    # within 5% below the edge (bisection stops there), never above it
    assert capacity * 0.95 - 1 <= found <= capacity
    assert len(said) == len(tried) and all("feeds ->" in line for line in said)
    assert len(tried) <= 20


# -- feeds out of step --------------------------------------------------------------------------


def test_starts_are_spread_evenly_over_the_span() -> None:
    times: list[float] = []
    start_staggered([lambda: times.append(time.monotonic()) for _ in range(5)], span_s=0.5)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(times) == 5
    assert all(0.09 <= gap <= 0.3 for gap in gaps), gaps  # 0.1 s apart, not together


def test_the_engine_variant_starts_its_cameras_one_after_another(vtest_clip: Path) -> None:
    """Feeds started together hand the detector their keyframes at the same instant (full
    batches no real site gives); the benchmark's engine adds its cameras over a second."""
    runner = EngineRun([vtest_clip] * 4, "keyframes", pipeline=False)
    assert runner.engine.cameras() == []  # nothing runs before start()
    started = time.monotonic()
    runner.start()
    try:
        took = time.monotonic() - started
        assert [camera.id for camera in runner.engine.cameras()] == [
            f"feed{i:04d}" for i in range(4)
        ]
        assert took >= STAGGER_S * 3 / 4 * 0.9  # three gaps of a quarter of the span
    finally:
        runner.stop()
