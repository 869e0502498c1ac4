"""The vision stage of the node engine: gate, batched detection, tracking, per camera.

:class:`VisionConsumer` is the engine's frame consumer. For each analysed frame it asks the
camera's gate whether the detector must run; if so the frame joins a batch across cameras
(:class:`~feedtag.vision.batching.BatchScheduler`), and when its detections come back the
camera's tracker gives them anonymous track ids. A gated frame carries the last result
forward. Results and counters are kept per camera for status, and handed to ``on_result``
(the rules stage, later).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from feedtag.config.models import CameraConfig, DetectorConfig
from feedtag.core import Detections, Frame, VisionStatus
from feedtag.vision.batching import BatchScheduler
from feedtag.vision.detector import Detector
from feedtag.vision.gate import ChangeGate
from feedtag.vision.tracker import ByteTracker, Tracker

log = logging.getLogger(__name__)

ResultHandler = Callable[[Frame, Detections], None]
#: weight of the newest sample in the detector latency average
LATENCY_SMOOTHING = 0.2
#: a track whose centre moved more than this fraction of the frame width since the last
#: detection is moving: the gate then keeps the detector running (line and speed rules need it)
MOVING_FRACTION = 0.01
#: longest a lossless camera's frame is waited for before the consumer moves on
LOSSLESS_WAIT_S = 60.0
#: the drop reason of a frame the batch scheduler dropped while the detector was busy
DETECTOR_BUSY = "detector_busy"


def tracks_moved(before: Detections, after: Detections, min_shift_px: float) -> bool:
    """Whether any track present in both results moved more than ``min_shift_px``.

    >>> import numpy as np
    >>> def one(x): return Detections(np.array([[x, 0, x + 10, 10]], np.float32),
    ...     np.ones(1, np.float32), np.zeros(1, np.int32), np.array([7], np.int64))
    >>> tracks_moved(one(0), one(2), 5), tracks_moved(one(0), one(20), 5)
    (False, True)
    """
    if before.tracker_id is None or after.tracker_id is None:
        return False
    centres = (before.xyxy[:, :2] + before.xyxy[:, 2:]) / 2
    previous = dict(zip(before.tracker_id.tolist(), centres, strict=True))
    for track_id, box in zip(after.tracker_id.tolist(), after.xyxy, strict=True):
        old = previous.get(track_id) if track_id > 0 else None  # -1: not a track yet
        if old is not None and float(np.hypot(*((box[:2] + box[2:]) / 2 - old))) > min_shift_px:
            return True
    return False


@dataclass
class _CameraVision:
    camera: CameraConfig
    gate: ChangeGate | None
    tracker: Tracker
    keep: npt.NDArray[np.intp] | None  # the class ids to keep; None: all
    lock: threading.Lock = field(default_factory=threading.Lock)
    latest: Detections = field(default_factory=Detections.empty)
    frames: int = 0
    detected: int = 0
    gated: int = 0
    failed: int = 0
    dropped: int = 0
    latency_ms: float | None = None
    moving: bool = False
    lossless: bool = False


class VisionConsumer:
    """Frames in, tracked detections out; thread-safe; one per node."""

    def __init__(
        self,
        detector: Detector,
        settings: DetectorConfig,
        cameras: Sequence[CameraConfig],
        on_result: ResultHandler | None = None,
        tracker_factory: Callable[[DetectorConfig], Tracker] | None = None,
    ) -> None:
        self.detector = detector
        self.settings = settings
        self.on_result = on_result
        self._tracker_factory = tracker_factory or (lambda s: ByteTracker(lost_s=s.track_lost_s))
        self._scheduler = BatchScheduler(
            detector,
            max_batch=settings.max_batch,
            max_wait_s=settings.max_wait_s,
            workers=settings.workers,
        )
        # Copy-on-write, as in NodeEngine: writers replace the dict under ``_lock``; consume
        # (every frame) and statuses read it without the lock.
        self._cameras: dict[str, _CameraVision] = {}
        self._lock = threading.Lock()
        for camera in cameras:
            self.add_camera(camera)

    def add_camera(self, camera: CameraConfig) -> None:
        names = list(self.detector.class_names)
        keep = None
        if camera.classes is not None:
            unknown = sorted(set(camera.classes) - set(names))
            if unknown:
                raise ValueError(f"camera {camera.id}: unknown classes {unknown}")
            keep = np.array([names.index(name) for name in camera.classes], np.intp)
        gate = None
        if camera.gate.enabled:
            gate = ChangeGate(
                camera.gate.pixel_threshold, camera.gate.min_changed_fraction, camera.gate.refresh_s
            )
        state = _CameraVision(camera, gate, self._tracker_factory(self.settings), keep)
        state.lossless = camera.lossless
        with self._lock:
            self._cameras = {**self._cameras, camera.id: state}

    def remove_camera(self, camera_id: str) -> None:
        with self._lock:
            self._cameras = {cid: s for cid, s in self._cameras.items() if cid != camera_id}

    def start(self) -> None:
        self._scheduler.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._scheduler.stop(timeout)

    def consume(self, frame: Frame) -> None:
        state = self._cameras.get(frame.camera_id)
        if state is None:
            return
        with state.lock:
            state.frames += 1
            gate = state.gate
            gated = gate is not None and not gate.decide(frame.image, frame.pts_s, state.moving).run
            if gated:
                state.gated += 1
                latest = state.latest
        if gated:
            self._deliver(frame, latest)
            return
        submitted = time.monotonic()
        future = self._scheduler.submit(frame.camera_id, frame.image)
        future.add_done_callback(lambda done: self._on_detected(state, frame, done, submitted))
        if state.lossless:
            # a file analysed as fast as possible: wait, so that the back-pressure reaches its
            # ingest thread instead of the scheduler dropping frames
            with contextlib.suppress(Exception):
                future.result(timeout=LOSSLESS_WAIT_S)

    def _on_detected(
        self, state: _CameraVision, frame: Frame, done: Future[Detections], submitted: float
    ) -> None:
        if done.cancelled():
            # The scheduler dropped this frame for a newer one of the same camera (or it was
            # still waiting at stop): counted, so that every frame is accounted for.
            with state.lock:
                state.dropped += 1
            return
        try:
            detections = done.result()
        except Exception:
            log.exception("camera %s: detection failed", frame.camera_id)
            with state.lock:
                state.failed += 1
            return
        if state.keep is not None:
            detections = detections.select(np.isin(detections.class_id, state.keep))
        with state.lock:
            tracked = state.tracker.update(detections, frame.pts_s)
            state.moving = tracks_moved(state.latest, tracked, frame.size[0] * MOVING_FRACTION)
            state.latest = tracked
            state.detected += 1
            latency = (time.monotonic() - submitted) * 1000
            state.latency_ms = (
                latency
                if state.latency_ms is None
                else state.latency_ms + LATENCY_SMOOTHING * (latency - state.latency_ms)
            )
        self._deliver(frame, tracked)

    def _deliver(self, frame: Frame, detections: Detections) -> None:
        if self.on_result is None:
            return
        try:
            self.on_result(frame, detections)
        except Exception:
            log.exception("camera %s: result handler failed", frame.camera_id)

    def statuses(self) -> list[VisionStatus]:
        names = list(self.detector.class_names)
        out = []
        for state in self._cameras.values():
            with state.lock:
                latest = state.latest
                counts = Counter(names[int(c)] for c in latest.class_id)
                ids = [] if latest.tracker_id is None else latest.tracker_id.tolist()
                tracks = len({track_id for track_id in ids if track_id > 0})
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
                    )
                )
        return out
