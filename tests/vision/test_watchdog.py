"""The batch scheduler's watchdog: a detect() call that does not return within the hang bound
fails its frames (naming their cameras), its worker is replaced within the restart budget,
and what the hung call returns later is discarded."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from feedtag.core import Detections
from feedtag.errors import DetectorHangError
from feedtag.ingest.policies import RestartBudget
from feedtag.vision.batching import FIRST_CALL_HANG_S, MIN_HANG_S, BatchScheduler

from ..conftest import wait_for


def image(camera: int) -> np.ndarray:
    out = np.zeros((2, 2, 3), np.uint8)
    out[0, 0, 0] = camera
    return out


class HangingDetector:
    """Behind the Detector seam: the call that holds the ``hang_on``-th frame (counted from
    0 over all calls) and every later call holding one of ``also`` blocks until
    :attr:`release` is set; every other call answers at once with one box per frame whose x1
    is the frame's camera number."""

    class_names = ("thing",)

    def __init__(self, hang_on: int | None, delay_s: float = 0.0) -> None:
        self.hang_on = hang_on
        self.delay_s = delay_s
        self.frames = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.hung_calls = 0
        self.returned_late = threading.Event()

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        with self.lock:
            first, self.frames = self.frames, self.frames + len(images)
            hangs = self.hang_on is not None and first <= self.hang_on < self.frames
            self.hung_calls += hangs
        if hangs:
            self.release.wait(30)
            self.returned_late.set()
        elif self.delay_s:
            time.sleep(self.delay_s)
        return [
            Detections(
                np.array([[int(i[0, 0, 0]), 0, int(i[0, 0, 0]) + 1, 1]], np.float32),
                np.ones(1, np.float32),
                np.zeros(1, np.int32),
            )
            for i in images
        ]


def test_a_hung_call_fails_its_frames_names_its_cameras_and_its_worker_is_replaced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    detector = HangingDetector(hang_on=2)
    scheduler = BatchScheduler(detector, max_batch=4, max_wait_s=0.0, hang_timeout_s=0.5)
    caplog.set_level(logging.WARNING, logger="feedtag.vision.batching")
    with scheduler:
        before = [scheduler.submit("cam0", image(0)).result(timeout=5) for _ in range(2)]
        assert [int(d.xyxy[0, 0]) for d in before] == [0, 0]
        hung = scheduler.submit("cam7", image(7))
        started = time.monotonic()
        with pytest.raises(DetectorHangError, match=r"cam7"):
            hung.result(timeout=5)
        assert 0.5 <= time.monotonic() - started < 2.0
        # the replacement serves every camera, the hung one's too
        after = [scheduler.submit(f"cam{i}", image(i)).result(timeout=5) for i in (1, 7)]
        assert [int(d.xyxy[0, 0]) for d in after] == [1, 7]
        stats = scheduler.stats()
        assert (stats.hangs, stats.restarts, stats.workers) == (1, 1, 1)
        assert stats.hung_cameras == ("cam7",)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "cam7" in errors[0].getMessage()
        assert "replaced" in errors[0].getMessage()
        # the hung call returns at last: its result is discarded, its future keeps the error
        detector.release.set()
        wait_for(lambda: "discarded" in caplog.text, 5, what="the late result discarded")
        assert isinstance(hung.exception(), DetectorHangError)


def test_past_the_restart_budget_a_hung_worker_is_not_replaced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    detector = HangingDetector(hang_on=0)
    scheduler = BatchScheduler(
        detector,
        max_batch=1,
        max_wait_s=0.0,
        workers=2,
        hang_timeout_s=0.3,
        restart_budget=RestartBudget(limit=1, window_s=3600),
    )
    caplog.set_level(logging.ERROR, logger="feedtag.vision.batching")
    try:
        scheduler.start()
        first = scheduler.submit("a", image(1))
        with pytest.raises(DetectorHangError):
            first.result(timeout=5)
        detector.hang_on = detector.frames  # the next frame hangs too
        with pytest.raises(DetectorHangError):
            scheduler.submit("b", image(2)).result(timeout=5)
        stats = scheduler.stats()
        assert (stats.hangs, stats.restarts, stats.workers) == (2, 1, 1)
        assert "restart budget spent" in caplog.records[-1].getMessage()
        # the one worker left still detects
        assert int(scheduler.submit("c", image(3)).result(timeout=5).xyxy[0, 0]) == 3
    finally:
        started = time.monotonic()
        scheduler.stop(1.0)
        assert time.monotonic() - started < 1.5  # hung workers are not waited for
        detector.release.set()


@pytest.mark.parametrize(
    ("configured", "delay_s", "expected"),
    [
        (2.5, 0.0, (2.5, 2.5)),  # configured: used as it is
        (None, 0.0, (FIRST_CALL_HANG_S, MIN_HANG_S)),  # fast calls: the floor
        (None, 0.7, (FIRST_CALL_HANG_S, 7.0)),  # 10 x the median latency
    ],
)
def test_the_hang_bound(
    configured: float | None, delay_s: float, expected: tuple[float, float]
) -> None:
    detector = HangingDetector(hang_on=None, delay_s=delay_s)
    with BatchScheduler(
        detector, max_batch=1, max_wait_s=0.0, hang_timeout_s=configured
    ) as scheduler:
        before = scheduler.hang_bound_s()
        for _ in range(3):
            scheduler.submit("a", image(1)).result(timeout=5)
        after = scheduler.hang_bound_s()
    assert before == expected[0]
    assert after == pytest.approx(expected[1], rel=0.15)
    assert scheduler.stats().hangs == 0
