from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from feedtag.config import validate_config
from feedtag.core import CameraState, Frame
from feedtag.runtime.node import NodeEngine, RateRecorder

from ..conftest import resource_counts, wait_for


def file_cameras(clip: Path, count: int) -> list[dict[str, object]]:
    return [{"id": f"cam{i}", "url": clip.name, "loop": True} for i in range(count)]


def test_engine_runs_cameras_and_stops_cleanly(vtest_clip: Path) -> None:
    gc.collect()
    baseline = resource_counts()
    config = validate_config(
        {"media_root": str(vtest_clip.parent), "cameras": file_cameras(vtest_clip, 4)}
    )
    recorder = RateRecorder()
    engine = NodeEngine(config, recorder)
    engine.start()
    wait_for(lambda: all(recorder.counts.get(f"cam{i}", 0) >= 4 for i in range(4)), 15)
    statuses = engine.statuses()
    assert {s.state for s in statuses} == {CameraState.ONLINE}
    assert all(0.6 <= s.analysed_fps <= 1.4 for s in statuses), [s.analysed_fps for s in statuses]
    started = time.monotonic()
    assert engine.stop()
    assert time.monotonic() - started < 5
    gc.collect()
    assert resource_counts() == baseline


def test_cameras_added_and_removed_at_run_time(vtest_clip: Path) -> None:
    config = validate_config(
        {"media_root": str(vtest_clip.parent), "cameras": file_cameras(vtest_clip, 1)}
    )
    recorder = RateRecorder()
    engine = NodeEngine(config, recorder)
    engine.start()
    try:
        extra = validate_config(
            {
                "media_root": str(vtest_clip.parent),
                "cameras": [{"id": "late", "url": vtest_clip.name}],
            }
        ).cameras[0]
        engine.add_camera(extra)
        wait_for(lambda: recorder.counts.get("late", 0) >= 2, 10, what="frames from 'late'")
        assert engine.remove_camera("late")
        before = recorder.counts["cam0"]
        wait_for(lambda: recorder.counts["cam0"] >= before + 2, 10, what="cam0 unaffected")
        assert [s.camera_id for s in engine.statuses()] == ["cam0"]
    finally:
        assert engine.stop()


def test_a_failing_consumer_does_not_stop_the_engine(vtest_clip: Path) -> None:
    class Flaky(RateRecorder):
        def __init__(self) -> None:
            super().__init__()
            self.seen = 0

        def consume(self, frame: Frame) -> None:
            self.seen += 1
            if self.seen % 2:
                raise RuntimeError("boom")

    config = validate_config(
        {"media_root": str(vtest_clip.parent), "cameras": file_cameras(vtest_clip, 1)}
    )
    flaky = Flaky()
    engine = NodeEngine(config, flaky)
    engine.start()
    try:
        wait_for(lambda: flaky.seen >= 3, 10)
    finally:
        assert engine.stop()


def test_rate_recorder() -> None:
    now = [0.0]
    recorder = RateRecorder(clock=lambda: now[0])
    image = np.zeros((4, 4, 3), np.uint8)
    for i in range(10):
        now[0] = i * 0.5
        recorder.consume(Frame("a", i, i * 0.5, 0.0, image))
    assert recorder.counts == {"a": 10}
    assert recorder.rate("a") == pytest.approx(2.0, rel=0.15)
    assert recorder.rate("unknown") == 0.0


def test_a_file_read_as_fast_as_possible_loses_no_frame(vtest_clip: Path) -> None:
    class Slow(RateRecorder):
        def consume(self, frame: Frame) -> None:
            time.sleep(0.05)  # slower than decoding: the queue fills
            super().consume(frame)

    config = validate_config(
        {
            "media_root": str(vtest_clip.parent),
            "engine": {"queue_size": 1},
            "cameras": [{"id": "f", "url": vtest_clip.name, "realtime": False, "analysis_fps": 5}],
        }
    )
    slow = Slow()
    engine = NodeEngine(config, slow)
    engine.start()
    try:
        wait_for(lambda: engine.statuses()[0].state is CameraState.STOPPED, 20, what="the end")
        wait_for(lambda: slow.counts.get("f", 0) >= 20, 5, what="every frame consumed")
    finally:
        assert engine.stop()
    status = engine.statuses()[0]
    assert status.counters.frames_analysed == 20 == slow.counts["f"]
    assert status.counters.frames_dropped == {}


def test_a_camera_added_outside_the_engines_run_opens_only_while_it_runs(
    vtest_clip: Path,
) -> None:
    """A camera added before ``start`` waits for it; one added after ``stop`` is never
    opened: no camera thread outlives the engine (an API served without a started engine
    once left its added cameras retrying for the rest of the process)."""
    config = validate_config({"media_root": str(vtest_clip.parent), "cameras": []})
    late = validate_config(
        {"media_root": str(vtest_clip.parent), "cameras": file_cameras(vtest_clip, 2)}
    ).cameras
    recorder = RateRecorder()
    engine = NodeEngine(config, recorder)
    engine.add_camera(late[0])
    time.sleep(0.5)
    assert recorder.counts.get("cam0", 0) == 0 and not camera_threads("cam0")
    engine.start()
    try:
        wait_for(lambda: recorder.counts.get("cam0", 0) >= 2, 10, what="frames from cam0")
    finally:
        assert engine.stop()
    engine.add_camera(late[1])
    time.sleep(0.5)
    assert not camera_threads("cam0", "cam1")
    assert recorder.counts.get("cam1", 0) == 0


def camera_threads(*ids: str) -> list[str]:
    names = {f"ingest-{camera_id}" for camera_id in ids}
    return [thread.name for thread in threading.enumerate() if thread.name in names]
