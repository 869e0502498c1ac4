"""The vision stage of the node engine: gate, batched detection, tracking, per camera.

:class:`VisionConsumer` is the engine's frame consumer. Each camera's
:class:`~feedtag.runtime.step.CameraStep` decides whether a frame needs the detector; if so
the frame joins a batch across cameras (:class:`~feedtag.vision.batching.BatchScheduler`, whose
watchdog replaces a worker whose ``detect()`` hangs), and when its detections come back the
same step filters and tracks them. A gated frame carries the last result forward. Every
result then goes through the post-processing stage
(:class:`~feedtag.runtime.postprocess.PostProcessStage`, one thread behind a bounded queue) to
``on_result`` (the rules, media and store), so that no rule or store write runs in a detector
worker. Counters are kept per camera for status.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from time import thread_time

from feedtag.config.models import CameraConfig, DetectorConfig
from feedtag.core import Detections, Frame, VisionStageStatus, VisionStatus
from feedtag.errors import DetectorHangError
from feedtag.ingest.camera import ModelSize
from feedtag.ingest.rate import AdaptiveRate, AnalysisRates
from feedtag.runtime.control import chosen
from feedtag.runtime.cores import detector_batch, detector_workers
from feedtag.runtime.postprocess import PostProcessStage, ResultHandler
from feedtag.runtime.step import MOVING_FRACTION, CameraStep, tracks_moved
from feedtag.vision.batching import BatchScheduler
from feedtag.vision.detector import Detector, picture_size_of
from feedtag.vision.gpu import on_gpu
from feedtag.vision.regions import Crop
from feedtag.vision.tracker import ByteTracker, Tracker

log = logging.getLogger(__name__)

__all__ = ["MOVING_FRACTION", "ResultHandler", "VisionConsumer", "tracks_moved"]

#: weight of the newest sample in the detector latency average
LATENCY_SMOOTHING = 0.2
#: longest a lossless camera's frame is waited for before the consumer moves on
LOSSLESS_WAIT_S = 60.0
#: the drop reason of a frame the batch scheduler dropped while the detector was busy
DETECTOR_BUSY = "detector_busy"
#: of the consumer's stop time, the share the batch scheduler gets; post-processing drains
#: in the rest
SCHEDULER_STOP_SHARE = 0.5
#: a frame waits for batch companions at most this share of its camera's frame interval, so
#: that at light load its result is back before the camera's next frame: a frame the gate
#: carries forward meanwhile would reach post-processing ahead of it (a 1 fps camera may
#: wait 0.5 s, the default ``detector.max_wait_s``; one at the tracking rate, 5 fps, 0.1 s)
WAIT_SHARE_OF_INTERVAL = 0.5


@dataclass
class _CameraVision:
    camera: CameraConfig
    step: CameraStep
    rate: AdaptiveRate | None = None  # its adaptive analysis rate (None: analysis_fps)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: held while a detection result is tracked and handed on, so that results reach the
    #: tracker and post-processing in frame order
    order: threading.Lock = field(default_factory=threading.Lock)
    newest: int = -1  # index of the newest frame whose detections were tracked
    frames: int = 0
    detected: int = 0
    gated: int = 0
    failed: int = 0
    hung: int = 0
    dropped: int = 0
    latency_ms: float | None = None
    #: CPU seconds of this camera's frames outside the detector (gate, region, tracker,
    #: rules; ``VisionStatus.analysis_cpu_s``)
    cpu_s: float = 0.0

    def charge(self, since: float) -> None:
        """Add this thread's CPU from ``since`` (a ``thread_time()``) to the camera's."""
        spent = thread_time() - since
        with self.lock:
            self.cpu_s += spent


@dataclass
class _Pending:
    """A frame handed to the detector: what its result needs when it comes back."""

    state: _CameraVision
    frame: Frame
    crop: Crop | None  # the active region it runs on (None: the whole frame)
    submitted: float  # time.monotonic() at submission
    handled: threading.Event = field(default_factory=threading.Event)


class VisionConsumer:
    """Frames in, tracked detections out; thread-safe; one per node."""

    def __init__(
        self,
        detector: Detector,
        settings: DetectorConfig,
        cameras: Sequence[CameraConfig],
        on_result: ResultHandler | None = None,
        tracker_factory: Callable[[DetectorConfig], Tracker] | None = None,
        *,
        rates: AnalysisRates | None = None,
    ) -> None:
        """``rates``: the cameras' adaptive analysis rates, shared with their ingest, which
        each camera's step feeds (None: fixed rates)."""
        self.detector = detector
        self.rates = rates
        self.settings = settings
        #: called from the post-processing thread with every result, in order per camera
        self.on_result = on_result
        self._tracker_factory = tracker_factory or (lambda s: ByteTracker(lost_s=s.track_lost_s))
        gpu = on_gpu(getattr(detector, "providers", ()))
        self._scheduler = BatchScheduler(
            detector,
            max_batch=detector_batch(settings, gpu=gpu),
            max_wait_s=settings.max_wait_s,
            workers=detector_workers(settings, gpu=gpu),
            hang_timeout_s=settings.hang_timeout_s,
        )
        self._postprocess = PostProcessStage(self._handle)
        # Copy-on-write, as in NodeEngine: writers replace the dict under ``_lock``; consume
        # (every frame) and statuses read it without the lock.
        self._cameras: dict[str, _CameraVision] = {}
        self._lock = threading.Lock()
        for camera in cameras:
            self.add_camera(camera)

    def add_camera(self, camera: CameraConfig) -> None:
        rate = None if self.rates is None else self.rates.for_camera(camera)
        tracker = self._tracker_factory(self.settings)
        step = CameraStep.for_camera(
            camera, self.detector.class_names, tracker, rate, self.detector
        )
        state = _CameraVision(camera, step, rate)
        with self._lock:
            self._cameras = {**self._cameras, camera.id: state}

    def remove_camera(self, camera_id: str) -> None:
        with self._lock:
            self._cameras = {cid: s for cid, s in self._cameras.items() if cid != camera_id}
        self._scheduler.forget(camera_id)

    def start(self) -> None:
        self._postprocess.start()
        self._scheduler.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop detecting, then let post-processing drain what is queued, all within
        ``timeout``."""
        deadline = time.monotonic() + timeout
        self._scheduler.stop(timeout * SCHEDULER_STOP_SHARE)
        self._postprocess.stop(max(0.0, deadline - time.monotonic()))

    def model_size(self) -> ModelSize | None:
        """How the detector scales a whole frame, for ingest to deliver frames at that size
        too (``Frame.model_image``); None when the detector does not say."""
        return picture_size_of(self.detector)

    def consume(self, frame: Frame) -> None:
        state = self._cameras.get(frame.camera_id)
        if state is None:
            return
        began = thread_time()
        carried = state.step.gate(frame)
        with state.lock:
            state.frames += 1
            if carried is not None:
                state.gated += 1
        if carried is not None:
            self._postprocess.put(frame, carried)
            state.charge(began)
            return
        crop = state.step.region(frame)
        pending = _Pending(state, frame, crop, time.monotonic())
        wait_s = _batch_wait_s(state)
        if crop is None:
            future = self._scheduler.submit(frame.camera_id, frame.detector_image, wait_s=wait_s)
        else:
            future = self._scheduler.submit(
                frame.camera_id, crop.cut(frame.image), crop.scale, wait_s=wait_s
            )
        future.add_done_callback(lambda done: self._on_detected(pending, done))
        state.charge(began)
        if state.camera.lossless:
            # a file analysed as fast as possible: wait until the result is handed on, so
            # that the back-pressure reaches its ingest thread instead of the scheduler
            # dropping frames, and the next frame's gate sees this frame's tracks
            pending.handled.wait(LOSSLESS_WAIT_S)

    def _on_detected(self, pending: _Pending, done: Future[Detections]) -> None:
        try:
            self._detected(pending, done)
        finally:
            pending.handled.set()

    def _detected(self, pending: _Pending, done: Future[Detections]) -> None:
        state, frame = pending.state, pending.frame
        if done.cancelled():
            # The scheduler dropped this frame for a newer one of the same camera (or it was
            # still waiting at stop): counted, so that every frame is accounted for.
            with state.lock:
                state.dropped += 1
            return
        error = done.exception()
        if error is not None:
            if not isinstance(error, DetectorHangError):  # the watchdog logged it already
                log.error("camera %s: detection failed", frame.camera_id, exc_info=error)
            with state.lock:
                state.failed += 1
                state.hung += isinstance(error, DetectorHangError)
            return
        with state.order:
            if frame.index < state.newest:
                # Two frames of this camera went in different batches and the newer one's
                # finished first on another worker. Tracking this one now would run the
                # tracker's clock back (it would drop its tracks) and hand the rules an old
                # frame after a newer one: dropped, and counted as such.
                log.debug(
                    "camera %s: frame %d detected after a newer one", frame.camera_id, frame.index
                )
                with state.lock:
                    state.dropped += 1
                return
            state.newest = frame.index
            began = thread_time()
            tracked = state.step.detected(frame, done.result(), pending.crop)
            latency = (time.monotonic() - pending.submitted) * 1000
            state.charge(began)
            with state.lock:
                state.detected += 1
                state.latency_ms = (
                    latency
                    if state.latency_ms is None
                    else state.latency_ms + LATENCY_SMOOTHING * (latency - state.latency_ms)
                )
            # runs in a detector worker: blocks it for at most the stage's put timeout (and
            # a worker with this camera's next result behind it)
            self._postprocess.put(frame, tracked)

    def _handle(self, frame: Frame, detections: Detections) -> None:
        if self.on_result is None:
            return
        began = thread_time()
        self.on_result(frame, detections)
        state = self._cameras.get(frame.camera_id)
        if state is not None:
            state.charge(began)

    def stage_status(self) -> VisionStageStatus:
        """The post-processing queue and the detector watchdog, node-wide."""
        queue = self._postprocess.stats()
        scheduler = self._scheduler.stats()
        return VisionStageStatus(
            postprocess_depth=queue.depth,
            postprocess_capacity=queue.capacity,
            postprocess_handled=queue.handled,
            postprocess_dropped=queue.dropped,
            detector_workers=scheduler.workers,
            detector_hangs=scheduler.hangs,
            detector_restarts=scheduler.restarts,
            detector_hang_bound_s=self._scheduler.hang_bound_s(),
            hung_cameras=scheduler.hung_cameras,
        )

    def statuses(self, camera_ids: Collection[str] | None = None) -> list[VisionStatus]:
        names = list(self.detector.class_names)
        detector_s = self._scheduler.detector_seconds()
        out = []
        for _, state in chosen(self._cameras, camera_ids):
            latest = state.step.latest
            counts = Counter(names[int(c)] for c in latest.class_id)
            ids = [] if latest.tracker_id is None else latest.tracker_id.tolist()
            tracks = len({track_id for track_id in ids if track_id > 0})
            with state.lock:
                out.append(
                    VisionStatus(
                        camera_id=state.camera.id,
                        frames=state.frames,
                        detected=state.detected,
                        gated=state.gated,
                        failed=state.failed,
                        latency_ms=state.latency_ms,
                        counts=dict(counts),
                        tracks=tracks,
                        dropped=state.dropped,
                        hung=state.hung,
                        cropped=state.step.cropped,
                        detector_s=detector_s.get(state.camera.id, 0.0),
                        analysis_cpu_s=state.cpu_s,
                    )
                )
        return out


def _batch_wait_s(state: _CameraVision) -> float:
    """How long a frame of this camera may wait for batch companions (the scheduler caps it
    at ``detector.max_wait_s``): none for a file analysed losslessly, whose reader waits for
    each result before it sends the next frame; otherwise a share of the camera's current
    frame interval (:data:`WAIT_SHARE_OF_INTERVAL`)."""
    if state.camera.lossless:
        return 0.0
    fps = state.camera.analysis_fps if state.rate is None else state.rate.target_fps
    return WAIT_SHARE_OF_INTERVAL / fps  # both rates are above 0 (validated)
