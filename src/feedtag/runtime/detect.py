"""``feedtag detect``: decode, gate, detect and track one file or stream, frame by frame.

Frames are read through the real ingest path (policy, timeouts, redaction); each analysed
frame goes through the engine's own per-frame step (:mod:`feedtag.runtime.step`) with the
detector called synchronously, so the output is deterministic for a file. Annotated images
are anonymized before anything is drawn on them.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from PIL import Image, ImageDraw

from feedtag.config.models import CameraConfig, FeedtagConfig, RegionsConfig
from feedtag.core import CameraState, CameraStatus, Detections, Frame
from feedtag.errors import SourceError
from feedtag.files import write_atomic
from feedtag.ingest.camera import CameraIngest, ModelSize
from feedtag.ingest.handoff import FrameQueue
from feedtag.ingest.rate import AdaptiveRate
from feedtag.runtime.step import CameraStep, RateFeedback, region_planner
from feedtag.vision.anonymize import Anonymized, Anonymizer, RecentPersons, person_boxes
from feedtag.vision.detector import Detector, RegionDetector
from feedtag.vision.detector import Image as FrameImage
from feedtag.vision.gate import ChangeGate
from feedtag.vision.tracker import ByteTracker

#: colours per class id, cycled (RGB)
PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180))


@dataclass(frozen=True, slots=True)
class FrameResult:
    frame_index: int
    t_s: float
    gated: bool
    detections: Detections
    class_names: Sequence[str]
    frame_size: tuple[int, int]  # (width, height) of the analysed frame

    def to_dict(self) -> dict[str, Any]:
        ids = self.detections.tracker_id
        return {
            "frame": self.frame_index,
            "t_s": round(self.t_s, 3),
            "gated": self.gated,
            "detections": [
                {
                    "label": self.class_names[int(class_id)],
                    "confidence": round(float(confidence), 3),
                    "box": [round(float(v), 1) for v in box],
                    "track_id": None if ids is None or ids[i] < 0 else int(ids[i]),
                }
                for i, (box, confidence, class_id) in enumerate(
                    zip(
                        self.detections.xyxy,
                        self.detections.confidence,
                        self.detections.class_id,
                        strict=True,
                    )
                )
            ],
        }


def frames_of(
    camera: CameraConfig,
    config: FeedtagConfig,
    stop: threading.Event,
    rate: AdaptiveRate | None = None,
    model_size: ModelSize | None = None,
) -> Iterator[Frame]:
    """Every analysed frame of one camera, in order, until the source ends or ``stop``. A
    file read as fast as possible (``realtime: false``) loses none: its ingest waits for the
    consumer instead of dropping frames.

    A file that fails to open or read raises :class:`SourceError` instead of being retried:
    it fails the same way again (``feedtag detect`` on a broken file used to retry forever).
    ``rate``: the adaptive analysis rate the ingest samples by (None: ``analysis_fps``).
    ``model_size``: frames also come at the detector's scale (``Frame.model_image``, see
    :class:`~feedtag.ingest.camera.CameraIngest`).
    """
    # With an adaptive rate the ingest may not run ahead: its rate follows what analysis saw
    # of the frame before, and 32 frames queued at 1 fps are half a minute of stale rate.
    size = 1 if rate is not None else 32 if camera.lossless else 4
    queue = FrameQueue(maxsize=size, lossless=camera.lossless)
    ingest = CameraIngest(camera, config.reconnect, queue, rate=rate, model_size=model_size)
    ingest.start()
    try:
        while not stop.is_set():
            frame = queue.get(timeout=0.2)
            if frame is not None:
                yield frame
                continue
            status = ingest.status()
            if status.state is CameraState.STOPPED:
                yield from iter(queue.get_nowait, None)
                return
            if camera.url.is_file and status.state is CameraState.OFFLINE:
                raise _file_failure(status)
    finally:
        ingest.stop()
        ingest.join()


def _file_failure(status: CameraStatus) -> SourceError:
    # The status holds the error's text; its message is that text without the " (url)".
    return SourceError(status.reason.removesuffix(f" ({status.url})"), status.url)


def detect_stream(
    frames: Iterator[Frame],
    detector: Detector,
    *,
    gate: ChangeGate | None,
    track_lost_s: float,
    max_frames: int | None = None,
    save_dir: Path | None = None,
    anonymizer: Anonymizer | None = None,
    feedback: RateFeedback | None = None,
    regions: RegionsConfig | None = None,
) -> Iterator[FrameResult]:
    """Run each frame through the engine's per-frame step (:class:`CameraStep`: gate,
    detector, tracker, moving hint) with the detector called directly; optionally save
    anonymized annotated JPEGs (without an ``anonymizer`` that can find people, they are
    blurred whole). ``feedback``: the adaptive rate the step feeds (the one its frames'
    ingest samples by). ``regions``: with a gate and a detector that can, run active regions
    as these settings say (:mod:`feedtag.vision.regions`; ``enabled: auto`` where the
    detector's runtime makes them pay); None: whole frames."""
    detect_region = None
    planner = None if regions is None else region_planner(regions, detector)
    if planner is not None:
        region_detector = cast(RegionDetector, detector)

        def detect_region(image: FrameImage, scale: float) -> Detections:
            return region_detector.detect([image], scales=[scale])[0]

    tracker = ByteTracker(lost_s=track_lost_s)
    step = CameraStep(gate, tracker, feedback=feedback, regions=planner)
    names = list(detector.class_names)
    cover = anonymizer if anonymizer is not None else Anonymizer(None)
    recent = RecentPersons()
    for count, frame in enumerate(frames):
        if max_frames is not None and count >= max_frames:
            return
        latest, gated = step.run(frame, lambda image: detector.detect([image])[0], detect_region)
        if not gated:
            recent.observe(latest, names, frame.pts_s)
        if save_dir is not None:
            known = np.concatenate([person_boxes(latest, names), recent.predicted(frame.pts_s)])
            save_annotated(
                frame, latest, names, save_dir / f"{frame.camera_id}_{frame.index:06d}.jpg",
                cover.anonymize(frame.image, known),
            )  # fmt: skip
        yield FrameResult(frame.index, frame.pts_s, gated, latest, names, frame.size)


def save_annotated(
    frame: Frame, detections: Detections, names: Sequence[str], path: Path, covered: Anonymized
) -> None:
    """Draw boxes and labels on the anonymized frame, then write a JPEG atomically."""
    image = Image.fromarray(covered.image)
    draw = ImageDraw.Draw(image)
    ids = detections.tracker_id
    for i, (box, class_id) in enumerate(zip(detections.xyxy, detections.class_id, strict=True)):
        colour = PALETTE[int(class_id) % len(PALETTE)]
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=2)
        label = names[int(class_id)]
        if ids is not None and ids[i] > 0:
            label += f" #{int(ids[i])}"
        draw.text((x1 + 2, max(0.0, y1 - 11)), label, fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    write_atomic(path, buffer.getvalue())


def presence(detections: Detections, names: Sequence[str]) -> dict[str, int]:
    """Per-label counts: what "presence" means for gate and tag recall."""
    labels, counts = np.unique(detections.class_id, return_counts=True)
    return {names[int(label)]: int(count) for label, count in zip(labels, counts, strict=True)}
