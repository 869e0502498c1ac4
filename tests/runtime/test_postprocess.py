"""The post-processing stage: a bounded queue and one thread between detection and the result
handler (rules, media, store). A stuck handler never holds a detector worker; a full queue
blocks its producer for a bounded time, then drops and counts; stop drains within its bound."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from feedtag.config import validate_config
from feedtag.core import Detections, Frame
from feedtag.runtime.postprocess import PostProcessStage
from feedtag.runtime.vision import VisionConsumer

from ..conftest import wait_for
from .test_vision import MovingBoxDetector, camera, frame


def tiny(camera_id: str, index: int) -> Frame:
    return Frame(camera_id, index, float(index), 0.0, np.zeros((4, 4, 3), np.uint8))


def test_a_stuck_handler_does_not_hold_the_detector() -> None:
    """The result handler blocks; the detector keeps detecting every camera meanwhile, the
    results wait in the queue (its depth shows them), and once the handler is free they are
    all handled, in order per camera."""
    detector = MovingBoxDetector()
    cameras = [camera(f"c{i}", gate={"enabled": False}) for i in range(3)]
    settings = validate_config({"detector": {"max_wait_s": 0.0}}).detector
    consumer = VisionConsumer(detector, settings, cameras)
    free = threading.Event()
    handled: list[tuple[str, int]] = []

    def handler(item: Frame, detections: Detections) -> None:
        free.wait(10)
        handled.append((item.camera_id, item.index))

    consumer.on_result = handler
    consumer.start()
    try:
        for index in range(8):
            for cid in ("c0", "c1", "c2"):
                consumer.consume(frame(cid, index, 20 + index))
            wait_for(
                lambda n=index + 1: all(s.detected >= n for s in consumer.statuses()),
                5,
                what=f"frame {index} detected while the handler is stuck",
            )
        stage = consumer.stage_status()
        assert handled == []
        assert stage.postprocess_depth >= 23  # one result may be in the handler already
        assert stage.postprocess_dropped == 0
        free.set()
        wait_for(lambda: len(handled) == 24, 5, what="every result handled")
    finally:
        free.set()
        consumer.stop()
    for cid in ("c0", "c1", "c2"):
        assert [i for c, i in handled if c == cid] == list(range(8))
    assert consumer.stage_status().postprocess_handled == 24


def test_a_full_queue_blocks_for_its_bound_then_drops_and_counts() -> None:
    free = threading.Event()
    stage = PostProcessStage(lambda f, d: free.wait(10), capacity=2, put_timeout_s=0.3)
    stage.start()
    try:
        assert stage.put(tiny("a", 0), Detections.empty())  # taken by the stuck handler
        wait_for(lambda: stage.stats().depth == 0, 5, what="the handler to take it")
        assert stage.put(tiny("a", 1), Detections.empty())
        assert stage.put(tiny("a", 2), Detections.empty())
        started = time.monotonic()
        assert not stage.put(tiny("a", 3), Detections.empty())
        assert 0.3 <= time.monotonic() - started < 1.0
        stats = stage.stats()
        assert (stats.depth, stats.capacity, stats.dropped, stats.handled) == (2, 2, 1, 0)
        # stop with the handler still stuck: returns within its bound, the rest is counted
        started = time.monotonic()
        assert not stage.stop(0.5)
        assert time.monotonic() - started < 1.0
        assert stage.stats().dropped == 3
        assert not stage.put(tiny("a", 4), Detections.empty())  # after stop: counted
        assert stage.stats().dropped == 4
    finally:
        free.set()


def test_stop_drains_what_is_queued() -> None:
    handled: list[int] = []
    stage = PostProcessStage(lambda f, d: (time.sleep(0.01), handled.append(f.index)))
    stage.start()
    for index in range(30):
        stage.put(tiny("a", index), Detections.empty())
    assert stage.stop(3.0)
    assert handled == list(range(30))
    assert (stage.stats().handled, stage.stats().dropped) == (30, 0)


def test_a_failing_handler_is_logged_and_the_next_result_handled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handled: list[int] = []

    def handler(item: Frame, detections: Detections) -> None:
        if item.index == 0:
            raise RuntimeError("rule broke")
        handled.append(item.index)

    stage = PostProcessStage(handler)
    caplog.set_level(logging.ERROR, logger="feedtag.runtime.postprocess")
    stage.start()
    stage.put(tiny("door", 0), Detections.empty())
    stage.put(tiny("door", 1), Detections.empty())
    assert stage.stop(2.0)
    assert handled == [1]
    assert "camera door: result handler failed" in caplog.text
