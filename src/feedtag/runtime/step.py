"""The per-frame vision step of one camera: gate, detector, class filter, tracker, moving hint.

:class:`CameraStep` is the one place these run, for the node engine
(:class:`~feedtag.runtime.vision.VisionConsumer`), ``feedtag detect`` and the presence
benchmark alike, so that what is measured is what runs. Its two halves meet around the
detector: :meth:`CameraStep.gate` decides whether a frame needs it (or returns the result
carried forward), :meth:`CameraStep.detected` filters the detector's output to the camera's
classes, gives it anonymous track ids and updates the moving hint that the next gate decision
reads. Both halves feed the camera's adaptive analysis rate (:mod:`feedtag.ingest.rate`),
when it has one: a frame the gate carries forward is quiet; after a detection, the step says
whether an object appeared (by boxes: a change of light that made the gate run is not
activity), whether a track moved and whether one moved near a line, direction or speed rule
(:mod:`feedtag.analytics.motion`). The engine calls the halves on either side of its batch
scheduler; a synchronous caller uses :meth:`CameraStep.run` with a ``detect`` function.

>>> import numpy as np
>>> from feedtag.core import Frame
>>> from feedtag.vision.tracker import ByteTracker
>>> step = CameraStep(gate=None, tracker=ByteTracker(lost_s=4.0))
>>> frame = Frame("door", 0, 0.0, 0.0, np.zeros((36, 64, 3), np.uint8))
>>> result, gated = step.run(frame, lambda image: Detections.empty())
>>> len(result), gated
(0, False)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from feedtag.analytics.geometry import box_iou
from feedtag.analytics.motion import MotionRegions
from feedtag.config.models import CameraConfig, RegionsConfig
from feedtag.core import Detections, Frame
from feedtag.ingest.rate import AdaptiveRate
from feedtag.vision.detector import Image, RegionDetector
from feedtag.vision.gate import ChangeGate, GateDecision
from feedtag.vision.regions import Crop, RegionPlanner, heading
from feedtag.vision.tracker import Tracker

#: a detection that overlaps no detection of its class in the result before by at least this
#: much is an object that appeared
APPEARED_MAX_IOU: Final = 0.3
#: a track whose centre moved more than this fraction of the frame width since the last
#: detection is moving: the gate then keeps the detector running (line and speed rules need it)
MOVING_FRACTION: Final = 0.01


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


def objects_appeared(
    before: Detections, after: Detections, min_iou: float = APPEARED_MAX_IOU
) -> bool:
    """Whether ``after`` holds an object ``before`` did not: a detection that overlaps no
    earlier detection of its class by ``min_iou``. By boxes, not track ids: a person standing
    still through the gate's refresh interval gets a new track id (the old track was lost
    meanwhile) but has not appeared.

    >>> import numpy as np
    >>> def boxes(*xs): return Detections(np.array([[x, 0, x + 10, 10] for x in xs],
    ...     np.float32).reshape(-1, 4), np.ones(len(xs), np.float32), np.zeros(len(xs), np.int32))
    >>> objects_appeared(boxes(0), boxes(1)), objects_appeared(boxes(0), boxes(1, 50))
    (False, True)
    """
    for box, class_id in zip(after.xyxy, after.class_id.tolist(), strict=True):
        same = before.xyxy[before.class_id == class_id]
        if not any(box_iou(box, old) >= min_iou for old in same):
            return True
    return False


def has_tracks(detections: Detections) -> bool:
    """Whether any detection is a confirmed track (ids below 1 are not tracks yet)."""
    return detections.tracker_id is not None and bool(np.any(detections.tracker_id > 0))


@dataclass(frozen=True, slots=True)
class RateFeedback:
    """What a step tells its camera's adaptive rate: the controller, and the camera's motion
    rule regions with the detector's class names (to know a track's label)."""

    rate: AdaptiveRate
    regions: MotionRegions
    class_names: Sequence[str]

    @classmethod
    def for_camera(
        cls, camera: CameraConfig, rate: AdaptiveRate, class_names: Sequence[str]
    ) -> RateFeedback:
        regions = MotionRegions.from_analytics(camera.analytics, camera.adaptive.rule_margin)
        return cls(rate, regions, list(class_names))

    def moved_near_rule(
        self, before: Detections, after: Detections, frame_size: tuple[int, int]
    ) -> bool:
        """Whether a track near a motion rule moved since ``before``."""
        if not self.regions or not has_tracks(after):
            return False
        near = self.regions.near_mask(after, self.class_names, frame_size)
        if not near.any():
            return False
        return tracks_moved(before, after.select(near), frame_size[0] * MOVING_FRACTION)


def class_filter(
    camera_id: str, wanted: Sequence[str] | None, names: Sequence[str]
) -> npt.NDArray[np.intp] | None:
    """The class ids a camera keeps (None: all); unknown names are refused by camera."""
    if wanted is None:
        return None
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise ValueError(f"camera {camera_id}: unknown classes {unknown}")
    return np.array([list(names).index(name) for name in wanted], np.intp)


def regions_wanted(settings: RegionsConfig, regions_pay: bool) -> bool:
    """Whether a camera runs active regions: as its ``gate.regions.enabled`` says, or for
    ``auto`` where the detector's runtime makes them pay.

    >>> regions_wanted(RegionsConfig(), True), regions_wanted(RegionsConfig(), False)
    (True, False)
    >>> regions_wanted(RegionsConfig(enabled=True), False)
    True
    """
    return regions_pay if settings.enabled == "auto" else settings.enabled


def region_planner(settings: RegionsConfig, detector: object) -> RegionPlanner | None:
    """The active-region planner ``settings`` ask for on ``detector``, or None (whole
    frames): the detector cannot run regions (no :class:`RegionDetector`, or a fixed input),
    or the settings turn them off (:func:`regions_wanted`)."""
    if not isinstance(detector, RegionDetector):
        return None
    grid = detector.region_grid()
    if grid is None or not regions_wanted(settings, detector.regions_pay):
        return None
    return RegionPlanner(
        grid, full_every_s=settings.full_every_s, max_area=settings.max_area, margin=settings.margin
    )


class CameraStep:
    """One camera's gate, class filter, tracker and moving hint; thread-safe."""

    def __init__(
        self,
        gate: ChangeGate | None,
        tracker: Tracker,
        keep: npt.NDArray[np.intp] | None = None,
        feedback: RateFeedback | None = None,
        regions: RegionPlanner | None = None,
    ) -> None:
        self._gate = gate
        self._regions = regions if gate is not None else None
        self._decision: GateDecision | None = None
        self._moved = Detections.empty()  # tracks that moved, grown to where they head
        self._feedback = feedback
        self._tracker = tracker
        self._keep = keep
        self._lock = threading.Lock()
        self._latest = Detections.empty()
        self._moving = False

    @classmethod
    def for_camera(
        cls,
        camera: CameraConfig,
        class_names: Sequence[str],
        tracker: Tracker,
        rate: AdaptiveRate | None = None,
        detector: object = None,
    ) -> CameraStep:
        """The step a camera's settings ask for (its gate, active regions and classes),
        feeding ``rate`` when given. ``detector``: the one its frames go to, which decides
        with the settings whether active regions run (:func:`region_planner`); None: whole
        frames."""
        settings = camera.gate
        gate = regions = None
        if settings.enabled:
            gate = ChangeGate(
                settings.pixel_threshold, settings.min_changed_fraction, settings.refresh_s
            )
            regions = region_planner(settings.regions, detector)
        feedback = None
        if rate is not None and rate.adapts:
            feedback = RateFeedback.for_camera(camera, rate, class_names)
        keep = class_filter(camera.id, camera.classes, class_names)
        return cls(gate, tracker, keep, feedback, regions)

    @property
    def cropped(self) -> int:
        """Detector runs on an active region rather than the whole frame, so far."""
        return 0 if self._regions is None else self._regions.crops

    @property
    def latest(self) -> Detections:
        """The latest tracked result (what a gated frame carries forward)."""
        return self._latest

    def gate(self, frame: Frame) -> Detections | None:
        """The result carried forward when the gate lets ``frame`` pass without the
        detector; None when the detector must run on it."""
        with self._lock:
            if self._gate is None:
                return None
            # a repeated picture (the packet gate found nothing changed): carried forward
            # without a look
            decision = (
                None if frame.repeat else self._gate.decide(frame.image, frame.pts_s, self._moving)
            )
            self._decision = decision
            if decision is not None and decision.run:
                return None
            if self._feedback is not None:
                # carried forward: nothing changed and no track moved
                self._feedback.rate.observe(frame.pts_s, appeared=False, moving_tracks=False)
            return self._latest

    def region(self, frame: Frame) -> Crop | None:
        """The part of ``frame`` the detector runs on, after :meth:`gate` let it through:
        an active region (:mod:`feedtag.vision.regions`), or None for the whole frame."""
        with self._lock:
            decision, self._decision = self._decision, None
            if self._regions is None or decision is None:
                return None
            return self._regions.plan(
                frame.pts_s,
                decision.reason,
                decision.changed,
                frame.size,
                before=self._latest,
                moved=self._moved,
            )

    def detected(
        self, frame: Frame, detections: Detections, crop: Crop | None = None
    ) -> Detections:
        """The detector's result for ``frame`` (found in ``frame.detector_image``; or in
        ``crop`` of ``frame.image`` when given, and what lies outside the crop is carried
        forward), filtered to the camera's classes and tracked; it becomes the result
        carried forward."""
        if crop is None:
            detections = frame.to_image_pixels(detections)
        if self._keep is not None:
            detections = detections.select(np.isin(detections.class_id, self._keep))
        with self._lock:
            if crop is not None:
                detections = crop.merge(crop.to_frame(detections), self._latest, frame.size)
            tracked = self._tracker.update(detections, frame.pts_s)
            shift = frame.size[0] * MOVING_FRACTION
            if self._regions is None:
                self._moving = tracks_moved(self._latest, tracked, shift)
            else:
                # the tracks that moved, where they head: the same test, done once
                self._moved = heading(self._latest, tracked, shift)
                self._moving = len(self._moved) > 0
            feedback = self._feedback
            if feedback is not None:
                feedback.rate.observe(
                    frame.pts_s,
                    appeared=objects_appeared(self._latest, tracked),
                    moving_tracks=self._moving,
                    near_rule_motion=self._moving
                    and feedback.moved_near_rule(self._latest, tracked, frame.size),
                )
            self._latest = tracked
        return tracked

    def run(
        self,
        frame: Frame,
        detect: Callable[[Image], Detections],
        detect_region: Callable[[Image, float], Detections] | None = None,
    ) -> tuple[Detections, bool]:
        """The whole step with a synchronous ``detect``: (tracked result, whether gated).
        ``detect_region`` runs an active region at its scale; without it, whole frames."""
        carried = self.gate(frame)
        if carried is not None:
            return carried, True
        crop = self.region(frame) if detect_region is not None else None
        if detect_region is None or crop is None:
            return self.detected(frame, detect(frame.detector_image)), False
        return self.detected(frame, detect_region(crop.cut(frame.image), crop.scale), crop), False
