"""Accuracy measurements that need real footage and the real detector: the gate's cost in
presence recall, and the detector against the hand-checked ground truth."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from feedtag.config import validate_config
from feedtag.core import Frame
from feedtag.runtime.detect import detect_stream, frames_of, presence
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
