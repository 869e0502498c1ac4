"""The batch scheduler: frames of many cameras, one ``detect()`` call.

A model runs several frames in one call for little more than the cost of one (weights are
read once, the matrix products are larger), so the frames the cameras submit are gathered
into batches: at most ``max_batch`` frames, and no frame waits more than ``max_wait_s`` for
companions (a submitter may ask for less per frame: ``submit(..., wait_s=)``). A batch goes
before that when waiting longer would lose a frame: when some camera already has
``max_pending_per_camera`` frames waiting (its next frame would push one out). Batches are
fair: cameras take turns, round robin, and no camera gets a second slot in a batch while
another camera with a waiting frame has none, so a camera that floods (a busy scene at a
high analysis rate) cannot starve a quiet one. Each camera keeps at most
``max_pending_per_camera`` frames waiting; when a newer frame arrives the oldest is dropped
(its future is cancelled), because a late result for an old frame is worth less than a
prompt one for the newest.

Submitters get a :class:`concurrent.futures.Future` that resolves to the frame's
:class:`~feedtag.core.Detections`, or to the detector's exception, or is cancelled when the
frame was dropped or the scheduler stopped. Every wait has a timeout; :meth:`BatchScheduler.
stop` returns within its timeout even while a batch is being detected.

A watchdog thread bounds every ``detect()`` call. A call still running after the hang bound
(``hang_timeout_s``; by default ten times the median latency of recent calls, at least
:data:`MIN_HANG_S`) is reported at ERROR with the cameras of its batch, its frames' futures
fail with :class:`~feedtag.errors.DetectorHangError`, and its worker is replaced by a new
thread while the restart budget allows. A Python thread cannot be killed: the hung one is
abandoned (a daemon), and whatever it returns later is discarded.

>>> import numpy as np
>>> from feedtag.core import Detections
>>> class Nothing:
...     class_names = ("person",)
...     def detect(self, images): return [Detections.empty() for _ in images]
>>> with BatchScheduler(Nothing(), max_batch=4, max_wait_s=0.01) as scheduler:
...     future = scheduler.submit("door", np.zeros((4, 4, 3), np.uint8))
...     len(future.result(timeout=5))
0
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Final, cast

import numpy as np

from feedtag.core import Detections
from feedtag.errors import DetectorError, DetectorHangError
from feedtag.ingest.policies import RestartBudget
from feedtag.vision.detector import Detector, Image, RegionDetector

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH: Final = 8
#: A frame waits up to this long for companions. On a CPU a batch of 8 costs about 9% less
#: inference per frame than single frames, and fewer calls mean fewer thread wake-ups: with
#: 16 cameras whose keyframes are spread over the second, 0.5 s of waiting formed full
#: batches and cut the whole path's CPU per feed by 15% against 0.05 s (0.25 s: batches of
#: 4-5, 11%; docs/performance.md, "Cameras out of step"). At that load a result comes up to
#: 0.5 s later; a busier detector fills its batches sooner.
DEFAULT_MAX_WAIT_S: Final = 0.5
DEFAULT_MAX_PENDING_PER_CAMERA: Final = 2
DEFAULT_STOP_TIMEOUT_S: Final = 1.0
#: the longest an idle worker sleeps before it looks at the stop flag again
IDLE_POLL_S: Final = 0.25
#: the default hang bound is this many times the median detect() latency ...
HANG_LATENCY_FACTOR: Final = 10.0
#: ... and at least this long
MIN_HANG_S: Final = 5.0
#: the hang bound until a first detect() call has returned (a model's first call warms up)
FIRST_CALL_HANG_S: Final = 30.0
#: how many recent detect() latencies the median is taken over
LATENCY_SAMPLES: Final = 64
#: a hung worker is replaced at most this often within the window; past it, fewer workers
#: serve the cameras (an endlessly hanging detector must not leak a thread a minute)
WORKER_RESTART_LIMIT: Final = 5
WORKER_RESTART_WINDOW_S: Final = 3600.0


@dataclass(frozen=True, slots=True)
class SchedulerStats:
    """Counters since the scheduler was made."""

    submitted: int
    batches: int
    frames: int  # frames that went through detect()
    dropped: int  # superseded by a newer frame of the same camera
    failed_batches: int
    pending: int
    hangs: int = 0  # detect() calls the watchdog gave up on
    restarts: int = 0  # hung workers replaced
    workers: int = 0  # workers serving now (hung ones not counted)
    hung_cameras: tuple[str, ...] = ()  # the cameras of the latest hung call's batch

    @property
    def mean_batch(self) -> float:
        return self.frames / self.batches if self.batches else 0.0


@dataclass(slots=True)
class _Waiting:
    camera_id: str
    image: Image
    future: Future[Detections]
    due: float  # time.monotonic() by which its batch must go
    scale: float | None = None  # an active region's scale (RegionDetector); None: whole frame


@dataclass(slots=True)
class _Call:
    """One worker's batch while it is being detected (the watchdog's view of it)."""

    batch: Sequence[_Waiting]
    started: float  # when the current detect() call began (a retry starts a new one)
    finished: bool = False  # the worker owns the results: the watchdog leaves it alone
    abandoned: bool = False  # the watchdog gave up: the worker discards what it returns


class BatchScheduler:
    """Gathers frames from many cameras into batches for one :class:`Detector`.

    ``workers`` threads each run ``detector.detect`` on one batch at a time (the detector must
    be thread-safe when ``workers > 1``; ONNX Runtime sessions are). Frames may be submitted
    before :meth:`start`; they wait until it is called. ``hang_timeout_s`` bounds each
    ``detect()`` call (None: the default bound, see the module docstring).
    """

    def __init__(
        self,
        detector: Detector,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        max_pending_per_camera: int = DEFAULT_MAX_PENDING_PER_CAMERA,
        workers: int = 1,
        name: str = "detector",
        hang_timeout_s: float | None = None,
        restart_budget: RestartBudget | None = None,
    ) -> None:
        checks = (
            (max_batch >= 1, "max_batch >= 1", max_batch),
            (0 <= max_wait_s <= 60, "0 <= max_wait_s <= 60", max_wait_s),
            (max_pending_per_camera >= 1, "max_pending_per_camera >= 1", max_pending_per_camera),
            (workers >= 1, "workers >= 1", workers),
            (hang_timeout_s is None or hang_timeout_s > 0, "hang_timeout_s > 0", hang_timeout_s),
        )
        for ok, what, got in checks:
            if not ok:
                raise ValueError(f"expected {what}, got {got!r}")
        self._detector = detector
        self._name = name
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._max_pending = max_pending_per_camera
        self._hang_timeout_s = hang_timeout_s
        self._budget = restart_budget or RestartBudget(
            WORKER_RESTART_LIMIT, WORKER_RESTART_WINDOW_S
        )
        self._condition = threading.Condition()
        # per camera, its waiting frames oldest first; the ring holds each camera that has a
        # waiting frame exactly once, in the order they will be served
        self._queues: dict[str, deque[_Waiting]] = {}
        self._ring: deque[str] = deque()
        self._waiting = 0
        self._stopping = False
        self._stopped = threading.Event()  # wakes the watchdog at stop
        self._spawned = 0
        self._threads = [self._new_worker() for _ in range(workers)]
        self._watchdog = threading.Thread(target=self._watch, name=f"{name}-watchdog", daemon=True)
        # the batch each worker is detecting now, by worker thread (under the condition)
        self._calls: dict[threading.Thread, _Call] = {}
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._started = False
        self._counts = {
            "submitted": 0, "batches": 0, "frames": 0, "dropped": 0, "failed": 0,
            "hangs": 0, "restarts": 0,
        }  # fmt: skip
        self._hung_cameras: tuple[str, ...] = ()
        #: seconds of detect() calls per camera, each call's time shared among its frames
        self._busy_s: dict[str, float] = {}

    @property
    def max_batch(self) -> int:
        """The most frames one ``detect()`` call gets."""
        return self._max_batch

    def _new_worker(self) -> threading.Thread:
        index, self._spawned = self._spawned, self._spawned + 1
        return threading.Thread(target=self._work, name=f"{self._name}-batch-{index}", daemon=True)

    # -- the submitters' side ----------------------------------------------------------------

    def submit(
        self,
        camera_id: str,
        image: Image,
        scale: float | None = None,
        *,
        wait_s: float | None = None,
    ) -> Future[Detections]:
        """Queue one frame of ``camera_id``; the future resolves to its detections.
        ``scale``: the image is an active region of a frame, to be run at this scale (the
        detector must be a :class:`~feedtag.vision.detector.RegionDetector`). ``wait_s``:
        the longest this frame waits for companions when less than ``max_wait_s`` (0: it
        goes with the next batch, for a caller that sends nothing more until this result is
        back; or a camera whose next frame comes sooner than ``max_wait_s``).

        Raises :class:`DetectorError` once the scheduler is stopping.
        """
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3):
            got = getattr(image, "shape", type(image).__name__)
            raise ValueError(f"camera {camera_id}: expected image uint8 (H, W, 3), got {got}")
        future: Future[Detections] = Future()
        now = time.monotonic()
        wait = self._max_wait_s if wait_s is None else max(0.0, min(wait_s, self._max_wait_s))
        waiting = _Waiting(camera_id, image, future, now + wait, scale)
        dropped: _Waiting | None = None
        with self._condition:
            if self._stopping:
                raise DetectorError("the batch scheduler is stopped")
            queue = self._queues.get(camera_id)
            if queue is None:
                queue = self._queues[camera_id] = deque()
                self._ring.append(camera_id)
            if len(queue) >= self._max_pending:
                dropped = queue.popleft()
                self._waiting -= 1
                self._counts["dropped"] += 1
            queue.append(waiting)
            self._waiting += 1
            self._counts["submitted"] += 1
            self._busy_s.setdefault(camera_id, 0.0)
            crowded = len(queue) == self._max_pending
            if crowded:
                # its next frame would push one out: waiting longer would lose a frame
                queue[0].due = now
            # A waiting worker knows its deadline already; only the first frame (a new
            # deadline), a full batch and an earlier deadline change what it should do.
            if self._waiting in (1, self._max_batch) or wait < self._max_wait_s or crowded:
                self._condition.notify()
        if dropped is not None:
            dropped.future.cancel()  # outside the lock: cancel() runs the submitter's callbacks
        return future

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker threads and the watchdog (once)."""
        with self._condition:
            if self._stopping:
                raise DetectorError("the batch scheduler is stopped; make a new one")
            if self._started:
                return
            self._started = True
            threads = list(self._threads)
        for thread in threads:
            thread.start()
        self._watchdog.start()

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Stop taking frames, cancel those still waiting, and wait up to ``timeout_s`` for
        the workers. A batch already in ``detect()`` still resolves its futures when the
        detector returns, even after this has returned; a hung worker is not waited for."""
        with self._condition:
            self._stopping = True
            waiting = [item for queue in self._queues.values() for item in queue]
            self._queues.clear()
            self._ring.clear()
            self._waiting = 0
            self._condition.notify_all()
            threads = list(self._threads)
        self._stopped.set()
        for item in waiting:
            item.future.cancel()
        deadline = time.monotonic() + timeout_s
        for thread in [*threads, self._watchdog]:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        busy = [thread.name for thread in threads if thread.is_alive()]
        if busy:
            log.warning("batch workers still in detect() after %.1f s: %s", timeout_s, busy)

    def __enter__(self) -> BatchScheduler:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stats(self) -> SchedulerStats:
        with self._condition:
            counts = dict(self._counts)
            pending = self._waiting
            workers = len(self._threads)
            hung_cameras = self._hung_cameras
        return SchedulerStats(
            submitted=counts["submitted"],
            batches=counts["batches"],
            frames=counts["frames"],
            dropped=counts["dropped"],
            failed_batches=counts["failed"],
            pending=pending,
            hangs=counts["hangs"],
            restarts=counts["restarts"],
            workers=workers,
            hung_cameras=hung_cameras,
        )

    def detector_seconds(self) -> dict[str, float]:
        """Seconds of detect() calls per camera since it was first submitted: each call's
        time divided equally among the frames it held (a camera's share of the detector)."""
        with self._condition:
            return dict(self._busy_s)

    def forget(self, camera_id: str) -> None:
        """Drop a removed camera's detector seconds (a call of its frames still running
        does not bring them back; a frame submitted later starts a new count)."""
        with self._condition:
            self._busy_s.pop(camera_id, None)

    def hang_bound_s(self) -> float:
        """How long one ``detect()`` call may run before the watchdog gives up on it."""
        if self._hang_timeout_s is not None:
            return self._hang_timeout_s
        with self._condition:
            latencies = list(self._latencies)
        if not latencies:
            return FIRST_CALL_HANG_S
        return max(MIN_HANG_S, HANG_LATENCY_FACTOR * statistics.median(latencies))

    # -- the watchdog ------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stopped.wait(min(IDLE_POLL_S, self.hang_bound_s() / 4)):
            self.check_hangs()

    def check_hangs(self) -> int:
        """Give up on every ``detect()`` call older than the hang bound: fail its frames,
        replace its worker within the restart budget. Returns how many it gave up on (the
        watchdog thread calls this every :data:`IDLE_POLL_S`)."""
        bound = self.hang_bound_s()
        now = time.monotonic()
        hung: list[tuple[threading.Thread, _Call, threading.Thread | None]] = []
        with self._condition:
            for thread, call in list(self._calls.items()):
                if call.finished or now - call.started <= bound:
                    continue
                call.abandoned = True
                del self._calls[thread]
                self._threads.remove(thread)
                replacement = None
                if not self._stopping and self._budget.try_spend():
                    replacement = self._new_worker()
                    self._threads.append(replacement)
                    self._counts["restarts"] += 1
                self._counts["hangs"] += 1
                self._hung_cameras = _cameras_of(call.batch)
                hung.append((thread, call, replacement))
        for thread, call, replacement in hung:
            cameras = _cameras_of(call.batch)
            log.error(
                "detector hung: detect() of %d frame(s) from camera(s) %s did not return "
                "within %.1f s; worker %s abandoned, %s",
                len(call.batch), ", ".join(cameras), bound, thread.name,
                f"replaced by {replacement.name}" if replacement is not None
                else "not replaced (restart budget spent)",
            )  # fmt: skip
            error = DetectorHangError(
                f"detect() did not return within {bound:.1f} s (cameras {', '.join(cameras)})"
            )
            for item in call.batch:
                if not item.future.done():
                    item.future.set_exception(error)
            if replacement is not None:
                replacement.start()
        return len(hung)

    # -- the workers' side -------------------------------------------------------------------

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if not batch:
                continue
            began = time.monotonic()
            call = _Call(batch, began)
            with self._condition:
                self._calls[me] = call
            outcomes = self._detect(call)
            share = (time.monotonic() - began) / len(batch)
            with self._condition:
                if call.abandoned:
                    # the watchdog failed these frames and replaced this worker
                    log.warning("%s returned after it was abandoned; result discarded", me.name)
                    return
                call.finished = True
                del self._calls[me]
                busy = self._busy_s
                for item in batch:
                    if item.camera_id in busy:  # else forgotten while this call ran
                        busy[item.camera_id] += share
            for item, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    item.future.set_exception(outcome)
                else:
                    item.future.set_result(outcome)

    def _next_batch(self) -> list[_Waiting] | None:
        """The next batch once it is full or a frame is due (it has waited ``max_wait_s``, or
        its own ``wait_s``, or its camera has ``max_pending_per_camera`` frames waiting);
        None when stopping. May be empty when every frame taken had been cancelled."""
        with self._condition:
            while not self._stopping:
                if self._waiting >= self._max_batch:
                    return self._take()
                if self._waiting:
                    due = min(item.due for queue in self._queues.values() for item in queue)
                    left = due - time.monotonic()
                    if left <= 0:
                        return self._take()
                    self._condition.wait(min(left, IDLE_POLL_S))
                else:
                    self._condition.wait(IDLE_POLL_S)
            return None

    def _take(self) -> list[_Waiting]:
        """Round robin over the ring, one frame per camera per turn; the lock is held."""
        batch: list[_Waiting] = []
        while len(batch) < self._max_batch and self._ring:
            camera_id = self._ring.popleft()
            queue = self._queues[camera_id]
            item = queue.popleft()
            self._waiting -= 1
            if queue:
                self._ring.append(camera_id)  # its next frame waits until the others had a turn
            else:
                del self._queues[camera_id]
            # False when the submitter cancelled it: the slot goes to the next camera
            if item.future.set_running_or_notify_cancel():
                batch.append(item)
        if batch:
            self._counts["batches"] += 1
            self._counts["frames"] += len(batch)
        if self._waiting:
            self._condition.notify()  # another worker may start on the rest
        return batch

    def _detect(self, call: _Call) -> list[Detections | Exception]:
        """Each frame's detections or exception; the futures are the caller's to resolve."""
        batch = call.batch
        try:
            return list(self._checked_detect(call, batch))
        except Exception as exc:  # noqa: BLE001 - every failure belongs to the frames' futures
            with self._condition:
                self._counts["failed"] += 1
            if len(batch) == 1:
                return [exc]
            # One camera's odd frame must not fail the others': retry each frame on its own.
            log.debug("batch of %d failed (%s); retrying frame by frame", len(batch), exc)
            outcomes: list[Detections | Exception] = []
            for item in batch:
                try:
                    (result,) = self._checked_detect(call, [item])
                except Exception as single:  # noqa: BLE001 - as above, for this frame alone
                    outcomes.append(single)
                else:
                    outcomes.append(result)
            return outcomes

    def _checked_detect(self, call: _Call, batch: Sequence[_Waiting]) -> list[Detections]:
        started = call.started = time.monotonic()  # each call has the whole bound
        images = [item.image for item in batch]
        scales = [item.scale for item in batch]
        if any(scale is not None for scale in scales):
            results = cast(RegionDetector, self._detector).detect(images, scales=scales)
        else:
            results = self._detector.detect(images)
        with self._condition:
            self._latencies.append(time.monotonic() - started)
        if len(results) != len(batch):
            raise DetectorError(f"detector returned {len(results)} results for {len(batch)} frames")
        return results


def _cameras_of(batch: Sequence[_Waiting]) -> tuple[str, ...]:
    return tuple(sorted({item.camera_id for item in batch}))
