"""The batch scheduler: round-robin fairness (exact batches, and a flooding camera among nine
quiet ones), the batch size and wait bounds, drops, failures, stop(); and one run through the
real ONNX backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future
from pathlib import Path

import numpy as np
import pytest

from feedtag.core import Detections
from feedtag.errors import DetectorError
from feedtag.vision.batching import BatchScheduler
from feedtag.vision.onnx_backend import OnnxDetector

from ..conftest import wait_for
from .test_decoders import CLASSES, frame_with_square, square_finder

BAD_FRAME = 255


def frame(camera: int, sequence: int = 0) -> np.ndarray:
    """A tiny frame that says which camera and which of its frames it is."""
    image = np.zeros((2, 2, 3), np.uint8)
    image[0, 0, 0], image[0, 0, 1] = camera, sequence
    return image


class RecordingDetector:
    """Records each batch as (camera, sequence) pairs; answers one box per frame whose x1 is
    the camera number, so that a result can be traced back to its frame. A frame whose
    sequence is :data:`BAD_FRAME` makes the whole call fail."""

    class_names = ("thing",)

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.batches: list[list[tuple[int, int]]] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.release.set()

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        keys = [(int(image[0, 0, 0]), int(image[0, 0, 1])) for image in images]
        with self.lock:
            self.batches.append(keys)
        self.release.wait(10)
        if self.delay_s:
            time.sleep(self.delay_s)
        if any(sequence == BAD_FRAME for _, sequence in keys):
            raise DetectorError("this frame cannot be read")
        return [
            Detections(
                np.array([[camera, sequence, camera + 1, sequence + 1]], np.float32),
                np.ones(1, np.float32),
                np.zeros(1, np.int32),
            )
            for camera, sequence in keys
        ]

    def cameras(self) -> list[list[int]]:
        with self.lock:
            return [[camera for camera, _ in batch] for batch in self.batches]


def answered(future: Future[Detections]) -> tuple[int, int]:
    box = future.result(timeout=5).xyxy[0]
    return int(box[0]), int(box[1])


# -- fairness ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("submissions", "max_batch", "expected"),
    [
        pytest.param(
            [(0, 6)] + [(camera, 1) for camera in range(1, 10)],
            4,
            [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 0], [0, 0, 0]],
            id="flood-first-waits-for-the-others",
        ),
        pytest.param(
            [(1, 3), (2, 2), (3, 1)], 2, [[1, 2], [3, 1], [2, 1]], id="turns-carry-across-batches"
        ),
        pytest.param(
            [(camera, 3) for camera in range(10)],
            10,
            [list(range(10))] * 3,
            id="ten-cameras-one-slot-each-per-batch",
        ),
        pytest.param([(7, 5)], 4, [[7, 7, 7, 7], [7]], id="a-lone-camera-fills-the-batch"),
    ],
)
def test_round_robin_batches(
    submissions: list[tuple[int, int]], max_batch: int, expected: list[list[int]]
) -> None:
    """``submissions`` are (camera, frames), submitted in that order before the worker starts,
    so the batches are exactly determined."""
    detector = RecordingDetector()
    scheduler = BatchScheduler(
        detector, max_batch=max_batch, max_wait_s=0, max_pending_per_camera=100
    )
    futures = [
        (camera, sequence, scheduler.submit(f"cam{camera}", frame(camera, sequence)))
        for camera, count in submissions
        for sequence in range(count)
    ]
    with scheduler:
        for camera, sequence, future in futures:
            assert answered(future) == (camera, sequence)  # each result reaches its own frame
    assert detector.cameras() == expected
    # a camera's frames are served oldest first
    for camera, _ in submissions:
        served = [
            sequence for batch in detector.batches for cam, sequence in batch if cam == camera
        ]
        assert served == sorted(served)


@pytest.mark.parametrize("max_batch", [10, 4])
def test_flooding_camera_cannot_starve_nine_quiet_ones(max_batch: int) -> None:
    """Camera 0 submits as fast as it can; cameras 1-9 submit their next frame the moment the
    previous one is answered, so they always have a frame waiting when a batch is formed."""
    detector = RecordingDetector(delay_s=0.003)
    scheduler = BatchScheduler(detector, max_batch=max_batch, max_wait_s=0.05)
    rounds = 30
    served = dict.fromkeys(range(1, 10), 0)
    finished = threading.Event()
    scheduler_stopped = threading.Event()
    flood_stop = threading.Event()
    lock = threading.Lock()

    def resubmit(camera: int) -> None:
        def again(done: Future[Detections]) -> None:
            with lock:
                served[camera] += 1
                if all(count >= rounds for count in served.values()):
                    finished.set()
                more = served[camera] < rounds + 5
            if more and not scheduler_stopped.is_set():
                scheduler.submit(f"cam{camera}", frame(camera)).add_done_callback(again)

        scheduler.submit(f"cam{camera}", frame(camera)).add_done_callback(again)

    def flood() -> None:
        sequence = 0
        while not flood_stop.is_set():
            scheduler.submit("cam0", frame(0, sequence % 200))
            sequence += 1
            time.sleep(0.0002)

    for _ in range(3):
        scheduler.submit("cam0", frame(0))
    for camera in range(1, 10):
        resubmit(camera)
    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    scheduler.start()
    try:
        assert finished.wait(20), f"quiet cameras starved: {served}"
    finally:
        flood_stop.set()
        flooder.join(5)
        scheduler_stopped.set()
        scheduler.stop()
    batches = detector.cameras()[: rounds * 9 // max_batch]  # while every quiet camera ran
    assert batches
    for batch in batches:
        assert len(batch) <= max_batch
        # the flood never gets a second slot: a quiet camera always has a frame waiting
        assert batch.count(0) <= 1, batch
        if max_batch == 10:
            assert set(range(1, 10)) <= set(batch), batch  # every quiet camera, in every batch
    if max_batch == 4:
        # nine quiet cameras and a batch of four: each is served at least every third batch
        for camera in range(1, 10):
            gaps = np.diff([i for i, batch in enumerate(batches) if camera in batch])
            assert gaps.size and gaps.max() <= 3, (camera, gaps)
    assert scheduler.stats().dropped > 0  # the flood's backlog is bounded by dropping


# -- bounds -----------------------------------------------------------------------------------


def test_a_lone_frame_is_served_within_max_wait() -> None:
    max_wait_s = 0.1
    with BatchScheduler(RecordingDetector(), max_batch=8, max_wait_s=max_wait_s) as scheduler:
        time.sleep(0.05)  # the worker is idle, waiting
        started = time.monotonic()
        future = scheduler.submit("cam1", frame(1))
        future.result(timeout=5)
        elapsed = time.monotonic() - started
    assert max_wait_s * 0.9 <= elapsed <= max_wait_s + 0.25  # waited for company, not longer


def test_a_full_batch_does_not_wait() -> None:
    with BatchScheduler(RecordingDetector(), max_batch=4, max_wait_s=30) as scheduler:
        started = time.monotonic()
        futures = [scheduler.submit(f"cam{camera}", frame(camera)) for camera in range(4)]
        for future in futures:
            future.result(timeout=5)
        assert time.monotonic() - started < 1.0


def test_each_camera_gets_its_share_of_the_detector_time() -> None:
    delay_s = 0.2
    detector = RecordingDetector(delay_s)
    with BatchScheduler(detector, max_batch=3, max_wait_s=30) as scheduler:
        # one full batch: two frames of cam1 and one of cam2 in one call of about 0.2 s
        futures = [scheduler.submit("cam1", frame(1, n)) for n in range(2)]
        futures.append(scheduler.submit("cam2", frame(2)))
        for future in futures:
            future.result(timeout=5)
        # the futures resolve after the shares are counted
        seconds = scheduler.detector_seconds()
        assert set(seconds) == {"cam1", "cam2"}
        assert seconds["cam1"] == pytest.approx(2 * seconds["cam2"])
        assert delay_s <= seconds["cam1"] + seconds["cam2"] < delay_s + 0.2
        scheduler.forget("cam1")
        assert set(scheduler.detector_seconds()) == {"cam2"}
        # a camera removed while its frame is being detected is not counted again
        detector.release.clear()
        future = scheduler.submit("cam3", frame(3), wait_s=0)
        wait_for(lambda: detector.batches[-1] == [(3, 0)], 5, what="cam3 in detect()")
        scheduler.forget("cam3")
        detector.release.set()
        future.result(timeout=5)
        assert set(scheduler.detector_seconds()) == {"cam2"}


def test_a_frame_may_ask_to_wait_less_than_max_wait() -> None:
    detector = RecordingDetector()
    with BatchScheduler(detector, max_batch=8, max_wait_s=30) as scheduler:
        time.sleep(0.05)  # the worker is idle, waiting
        started = time.monotonic()
        assert answered(scheduler.submit("file", frame(1), wait_s=0)) == (1, 0)
        assert time.monotonic() - started < 1.0
        # a frame that asks nothing waits for company ...
        plain = scheduler.submit("cam2", frame(2))
        time.sleep(0.3)
        assert not plain.done()
        # ... until a frame that may wait only 0.2 s takes it along
        started = time.monotonic()
        assert answered(scheduler.submit("cam3", frame(3), wait_s=0.2)) == (3, 0)
        assert 0.15 <= time.monotonic() - started < 1.5
        assert answered(plain) == (2, 0)
        # a wait above max_wait_s is capped at it (checked with a short max_wait_s below)
    assert detector.batches == [[(1, 0)], [(2, 0), (3, 0)]]
    with BatchScheduler(RecordingDetector(), max_batch=8, max_wait_s=0.1) as scheduler:
        time.sleep(0.05)
        started = time.monotonic()
        answered(scheduler.submit("cam1", frame(1), wait_s=30))
        assert time.monotonic() - started < 1.0


def test_a_camera_about_to_lose_a_frame_does_not_wait() -> None:
    """A camera at a high rate must not drop frames because its batch waits for companions:
    when it has ``max_pending_per_camera`` frames waiting, the batch goes at once."""
    detector = RecordingDetector()
    with BatchScheduler(
        detector, max_batch=8, max_wait_s=30, max_pending_per_camera=2
    ) as scheduler:
        time.sleep(0.05)
        started = time.monotonic()
        first = scheduler.submit("fast", frame(1, 0))
        time.sleep(0.2)
        assert not first.done()  # one frame waiting: it waits for company
        second = scheduler.submit("fast", frame(1, 1))
        assert [answered(first), answered(second)] == [(1, 0), (1, 1)]
        assert time.monotonic() - started < 1.5
        # the count of such cameras went back to zero: a lone frame waits again
        third = scheduler.submit("fast", frame(1, 2))
        time.sleep(0.3)
        assert not third.done()
    assert scheduler.stats().dropped == 0
    assert detector.batches == [[(1, 0), (1, 1)]]


def test_batch_size_is_bounded() -> None:
    detector = RecordingDetector()
    scheduler = BatchScheduler(detector, max_batch=8, max_wait_s=0)
    futures = [scheduler.submit(f"cam{camera}", frame(camera)) for camera in range(25)]
    with scheduler:
        for future in futures:
            future.result(timeout=5)
    assert [len(batch) for batch in detector.batches] == [8, 8, 8, 1]
    stats = scheduler.stats()
    assert (stats.batches, stats.frames, stats.mean_batch) == (4, 25, 6.25)


def test_many_submitter_threads_never_exceed_the_batch_size() -> None:
    detector = RecordingDetector(delay_s=0.002)
    with BatchScheduler(detector, max_batch=5, max_wait_s=0.01, workers=2) as scheduler:

        def camera(index: int) -> None:
            for sequence in range(20):
                answered(scheduler.submit(f"cam{index}", frame(index, sequence)))

        threads = [threading.Thread(target=camera, args=(i,)) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
    assert sum(len(batch) for batch in detector.batches) == 12 * 20
    assert max(len(batch) for batch in detector.batches) <= 5


def test_oldest_waiting_frame_of_a_camera_is_dropped() -> None:
    detector = RecordingDetector()
    scheduler = BatchScheduler(detector, max_batch=8, max_wait_s=0, max_pending_per_camera=2)
    futures = [scheduler.submit("cam1", frame(1, sequence)) for sequence in range(4)]
    assert [future.cancelled() for future in futures] == [True, True, False, False]
    with scheduler:
        assert [answered(future) for future in futures[2:]] == [(1, 2), (1, 3)]
    assert scheduler.stats().dropped == 2


def test_a_frame_cancelled_by_its_submitter_is_not_detected() -> None:
    detector = RecordingDetector()
    scheduler = BatchScheduler(detector, max_batch=8, max_wait_s=0)
    keep = scheduler.submit("cam1", frame(1))
    scheduler.submit("cam2", frame(2)).cancel()
    with scheduler:
        assert answered(keep) == (1, 0)
    assert detector.cameras() == [[1]]


# -- failures ---------------------------------------------------------------------------------


def test_one_bad_frame_fails_only_its_own_future() -> None:
    detector = RecordingDetector()
    scheduler = BatchScheduler(detector, max_batch=8, max_wait_s=0)
    good = [scheduler.submit(f"cam{camera}", frame(camera)) for camera in (1, 2)]
    bad = scheduler.submit("cam3", frame(3, BAD_FRAME))
    with scheduler:
        assert [answered(future) for future in good] == [(1, 0), (2, 0)]
        with pytest.raises(DetectorError, match="cannot be read"):
            bad.result(timeout=5)
    assert scheduler.stats().failed_batches == 1


class MiscountingDetector:
    class_names = ("thing",)

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        return [Detections.empty()] * (len(images) + 1)


def test_a_detector_returning_the_wrong_count_fails_the_futures() -> None:
    with BatchScheduler(MiscountingDetector(), max_wait_s=0) as scheduler:
        future = scheduler.submit("cam1", frame(1))
        with pytest.raises(DetectorError, match="returned 2 results for 1 frames"):
            future.result(timeout=5)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((4, 4, 3), np.float32), r"expected image uint8 \(H, W, 3\), got \(4, 4, 3\)"),
        (np.zeros((4, 4), np.uint8), r"got \(4, 4\)"),
        ("not an image", "got str"),
    ],
)
def test_submit_rejects_what_is_not_a_frame(image: object, message: str) -> None:
    scheduler = BatchScheduler(RecordingDetector())
    with pytest.raises(ValueError, match=message):
        scheduler.submit("cam1", image)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch": 0}, "max_batch >= 1, got 0"),
        ({"max_wait_s": -1}, "0 <= max_wait_s <= 60, got -1"),
        ({"max_pending_per_camera": 0}, "max_pending_per_camera >= 1, got 0"),
        ({"workers": 0}, "workers >= 1, got 0"),
    ],
)
def test_settings_are_validated(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BatchScheduler(RecordingDetector(), **kwargs)  # type: ignore[arg-type]


# -- stop -------------------------------------------------------------------------------------


def test_stop_when_idle_is_prompt_and_ends_the_workers() -> None:
    def workers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("idle-test-batch-")]

    scheduler = BatchScheduler(RecordingDetector(), workers=3, name="idle-test")
    scheduler.start()
    assert len(workers()) == 3
    time.sleep(0.05)  # every worker is waiting now
    started = time.monotonic()
    scheduler.stop()
    assert time.monotonic() - started < 0.5
    assert workers() == []


def test_stop_returns_within_its_timeout_while_detect_is_busy() -> None:
    detector = RecordingDetector()
    detector.release.clear()  # detect() blocks until released
    scheduler = BatchScheduler(detector, max_batch=1, max_wait_s=0)
    scheduler.start()
    in_flight = scheduler.submit("cam1", frame(1))
    waiting = scheduler.submit("cam2", frame(2))
    deadline = time.monotonic() + 5
    while not detector.batches and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    started = time.monotonic()
    scheduler.stop(timeout_s=1.0)
    assert 0.9 <= time.monotonic() - started < 1.3
    with pytest.raises(CancelledError):
        waiting.result(timeout=1)
    with pytest.raises(DetectorError, match="stopped"):
        scheduler.submit("cam1", frame(1))
    with pytest.raises(DetectorError, match="stopped"):
        scheduler.start()
    detector.release.set()  # the frame in flight still gets its answer
    assert answered(in_flight) == (1, 0)


# -- with the real backend --------------------------------------------------------------------


def test_scheduled_results_equal_direct_detection(tmp_path: Path) -> None:
    detector = OnnxDetector(square_finder(tmp_path / "m.onnx", "yolo-decoded"), CLASSES)
    squares = [(10 + 7 * i, 20 + 3 * i, 90 + 5 * i, 100) for i in range(6)]
    frames = [frame_with_square(square, 160 + 16 * i, 120) for i, square in enumerate(squares)]
    direct = [detector.detect([image])[0] for image in frames]
    with BatchScheduler(detector, max_batch=4, max_wait_s=0.02) as scheduler:
        futures = [scheduler.submit(f"cam{i}", image) for i, image in enumerate(frames)]
        scheduled = [future.result(timeout=10) for future in futures]
    for alone, batched in zip(direct, scheduled, strict=True):
        np.testing.assert_allclose(batched.xyxy, alone.xyxy, atol=1e-4)
        np.testing.assert_allclose(batched.confidence, alone.confidence, atol=1e-6)
        np.testing.assert_array_equal(batched.class_id, alone.class_id)
