"""Accuracy measurements that need real footage and the real detector: the gate's cost in
presence recall, and the detector against the hand-checked ground truth."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import av
import numpy as np

from feedtag.bench.footage import crop_window, fit_frame
from feedtag.config import validate_config
from feedtag.core import Detections, Frame
from feedtag.runtime.detect import detect_stream, frames_of, presence
from feedtag.vision.decoders import pairwise_iou
from feedtag.vision.detector import Detector
from feedtag.vision.gate import ChangeGate


@dataclass(frozen=True, slots=True)
class GateReport:
    frames: int
    gated: int
    presence_recall: float  # of (frame, label, count) items of the ungated run
    exact_frames: int  # frames whose presence equals the ungated run's

    @property
    def gated_fraction(self) -> float:
        return self.gated / self.frames if self.frames else 0.0


def analysed_frames(path: Path, analysis_fps: float = 1.0) -> list[Frame]:
    """Every analysed frame of a local file, as the ingest path produces them."""
    config = validate_config(
        {
            "media_root": str(path.parent),
            "cameras": [{"id": path.stem, "url": path.name, "realtime": False,
                         "analysis_fps": analysis_fps}],
        }
    )  # fmt: skip
    return list(frames_of(config.cameras[0], config, threading.Event()))


def gate_report(
    detector: Detector, frames: Sequence[Frame], gate: ChangeGate, track_lost_s: float = 4.0
) -> GateReport:
    """Run the frames gated and ungated; compare per-frame presence (label, count)."""
    names = list(detector.class_names)
    ungated = detect_stream(iter(frames), detector, gate=None, track_lost_s=track_lost_s)
    full = [presence(result.detections, names) for result in ungated]
    gated_results = list(
        detect_stream(iter(frames), detector, gate=gate, track_lost_s=track_lost_s)
    )
    found = total = exact = 0
    for reference, result in zip(full, gated_results, strict=True):
        seen = presence(result.detections, names)
        total += sum(reference.values())
        found += sum(min(count, seen.get(label, 0)) for label, count in reference.items())
        exact += seen == reference
    return GateReport(
        frames=len(frames),
        gated=sum(r.gated for r in gated_results),
        presence_recall=found / total if total else 1.0,
        exact_frames=exact,
    )


@dataclass(frozen=True, slots=True)
class GroundTruthScore:
    label: str
    truth: int  # non-difficult objects
    found: int  # of those, matched by a detection
    detections: int  # detections not matched to a difficult object
    correct: int  # of those, matched to a non-difficult object

    @property
    def recall(self) -> float:
        return self.found / self.truth if self.truth else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.detections if self.detections else 1.0


def score_ground_truth(
    detector: Detector,
    video: Path,
    truth_file: Path,
    labels: Sequence[str],
    iou: float = 0.5,
    *,
    size: tuple[int, int] | None = None,
) -> dict[str, GroundTruthScore]:
    """Detector recall and precision per label against hand-checked boxes.

    Greedy one-to-one matching by IoU, best first, same label (or one of an object's
    ``alt_labels``); objects marked ``difficult`` count neither way: a detection matched to
    one is ignored, and missing one is no miss. With ``size``, each frame is first fitted to
    that size as the sample clips are (:func:`~feedtag.bench.footage.fit_frame`) and the
    boxes follow it (:func:`boxes_in_crop`).
    """
    truth = json.loads(truth_file.read_text())
    wanted = {int(frame["index"]): frame["objects"] for frame in truth["frames"]}
    names = list(detector.class_names)
    totals = {label: [0, 0, 0, 0] for label in labels}
    with av.open(str(video)) as container:
        for index, decoded in enumerate(container.decode(video=0)):
            if index not in wanted:
                continue
            objects, picture = wanted[index], decoded
            if size is not None:
                objects = boxes_in_crop(objects, (decoded.width, decoded.height), size)
                picture = fit_frame(decoded, *size, pixel_format="rgb24")
            image = picture.to_ndarray(format="rgb24")
            found = detector.detect([np.ascontiguousarray(image, dtype=np.uint8)])[0]
            for label in labels:
                counts = _match_frame(found, names, objects, label, iou)
                totals[label] = [a + b for a, b in zip(totals[label], counts, strict=True)]
            if index >= max(wanted):
                break
    return {label: GroundTruthScore(label, *totals[label]) for label in labels}


#: a hand-checked object cut by the crop of a sample clip stays sure while at least this
#: share of its box remains in view; below it, it becomes difficult (tests/data/README.md)
MIN_KEPT_SHARE: Final = 0.5


def boxes_in_crop(
    objects: list[dict[str, Any]], source_size: tuple[int, int], size: tuple[int, int]
) -> list[dict[str, Any]]:
    """Hand-checked objects of a ``source_size`` frame, in the pixels of its fitted
    ``size`` version (:func:`~feedtag.bench.footage.crop_window`): boxes wholly outside the
    crop leave, boxes it cuts are clipped to it, and an object with less than
    :data:`MIN_KEPT_SHARE` of its box left becomes difficult.

    >>> person = {"label": "person", "box": [96, 48, 144, 168], "difficult": False}
    >>> boxes_in_crop([person], (768, 576), (640, 360))  # rows 48-71 cut: 80% kept
    [{'label': 'person', 'box': [80.0, 0.0, 120.0, 80.0], 'difficult': False}]
    """
    window = crop_window(*source_size, *size)
    scale = size[0] / window.width
    right, bottom = window.left + window.width, window.top + window.height
    placed = []
    for item in objects:
        x1, y1, x2, y2 = item["box"]
        kept = [max(x1, window.left), max(y1, window.top), min(x2, right), min(y2, bottom)]
        kept_area = max(0, kept[2] - kept[0]) * max(0, kept[3] - kept[1])
        if kept_area == 0:
            continue
        share = kept_area / max(1e-9, (x2 - x1) * (y2 - y1))
        box = [
            (kept[0] - window.left) * scale, (kept[1] - window.top) * scale,
            (kept[2] - window.left) * scale, (kept[3] - window.top) * scale,
        ]  # fmt: skip
        difficult = bool(item.get("difficult")) or share < MIN_KEPT_SHARE
        placed.append({**item, "box": box, "difficult": difficult})
    return placed


def _match_frame(
    found: Detections, names: Sequence[str], objects: list[dict[str, Any]], label: str, iou: float
) -> tuple[int, int, int, int]:
    relevant = [o for o in objects if label == o["label"] or label in o.get("alt_labels", ())]
    boxes = np.array([o["box"] for o in relevant], np.float32).reshape(-1, 4)
    difficult = np.array([bool(o.get("difficult")) for o in relevant], bool)
    mine = found.xyxy[np.array([names[int(c)] == label for c in found.class_id], bool)]
    overlaps = pairwise_iou(mine, boxes)
    matched_truth: set[int] = set()
    matched_detection: dict[int, int] = {}
    for flat in np.argsort(-overlaps, axis=None):
        d, t = np.unravel_index(flat, overlaps.shape)
        if overlaps[d, t] < iou:
            break
        if int(d) in matched_detection or int(t) in matched_truth:
            continue
        matched_detection[int(d)] = int(t)
        matched_truth.add(int(t))
    truth = int((~difficult).sum())
    hit = sum(1 for t in matched_truth if not difficult[t])
    on_difficult = sum(1 for t in matched_detection.values() if difficult[t])
    return truth, hit, len(mine) - on_difficult, hit
