"""Does any person survive anonymization? A stronger, independent detector looks at what
feedtag wrote.

The check is made the way a careful reviewer would make it: run the demo's cameras (the same
footage, rules and media path as `feedtag demo`) through the real engine for a while, with
every thumbnail wanted, then open every image written to disk (snapshots and thumbnails) and
run :class:`StrongCheck` on it: the FP32 model, not the INT8 one the anonymizer runs, on
overlapping tiles enlarged 2x (four times the pixels per person that the anonymizer's 1:1
tiles have), plus the whole image. A person it finds at confidence >= ``FINDING_CONFIDENCE``
whose box lies less than half in covered area is a **miss**: someone stored unblurred.

Run: ``feedtag bench anonymize [--seconds S] [--input-size 320|416] [--json]``. The figures
in docs/vision.md come from it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from PIL import Image as PilImage

from feedtag.bench.demo import demo_cameras
from feedtag.bench.footage import sample_h264
from feedtag.config import validate_config
from feedtag.config.models import DetectorConfig
from feedtag.runtime.detection import build_detector
from feedtag.runtime.node import NodeEngine
from feedtag.vision.anonymize import Anonymized, covered_fraction, tile_windows
from feedtag.vision.decoders import non_max_suppression
from feedtag.vision.detector import Detector

#: a person the check finds at this confidence or more, outside covered area, is a miss
FINDING_CONFIDENCE: Final = 0.5
#: covered share of a found box below which it counts as outside covered area
COVERED_ENOUGH: Final = 0.5
#: the check's tiles: this many image pixels, enlarged to the 416 model input (2x)
CHECK_TILE: Final = 208

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Finding:
    """One person the check found: where, how sure, and how much of it was covered."""

    box: tuple[float, float, float, float]
    confidence: float
    covered: float

    @property
    def missed(self) -> bool:
        return self.covered < COVERED_ENOUGH


class StrongCheck:
    """The FP32 416 model over the whole image and 2x-enlarged overlapping tiles."""

    def __init__(self, detector: Detector) -> None:
        self._detector = detector
        self._person = list(detector.class_names).index("person")

    @classmethod
    def build(cls, models_dir: Path | None = None) -> StrongCheck:
        settings = DetectorConfig(
            input_size=416, precision="fp32", confidence=0.3, models_dir=models_dir
        )
        return cls(build_detector(settings))

    def persons(self, image: Image) -> list[tuple[npt.NDArray[np.float32], float]]:
        """Every person box (image pixels) with its confidence; overlapping duplicates
        from neighbouring tiles are kept (each is scored on its own)."""
        height, width = image.shape[:2]
        windows = [(0, 0, width, height), *tile_windows(width, height, CHECK_TILE)]
        crops = [image[y1:y2, x1:x2] for x1, y1, x2, y2 in windows]
        found = []
        for (x1, y1, _, _), result in zip(windows, self._detector.detect(crops), strict=True):
            for box, confidence, class_id in zip(
                result.xyxy, result.confidence, result.class_id, strict=True
            ):
                if int(class_id) == self._person:
                    shifted = box + np.array([x1, y1, x1, y1], np.float32)
                    found.append((shifted, float(confidence)))
        return found

    def score(
        self, image: Image, covered: npt.NDArray[np.float32], *, unique: bool = False
    ) -> list[Finding]:
        """The persons found at ``FINDING_CONFIDENCE`` or more, each with its covered share.

        By default every box counts, also the same person seen again in an overlapping tile
        (each view is scored on its own: the stricter count); ``unique`` merges those (NMS
        at IoU 0.5), to count people."""
        size = (image.shape[1], image.shape[0])
        found = [(b, c) for b, c in self.persons(image) if c >= FINDING_CONFIDENCE]
        if unique and found:
            boxes = np.array([b for b, _ in found], np.float32)
            scores = np.array([c for _, c in found], np.float32)
            kept = non_max_suppression(boxes, scores, np.zeros(len(found), np.int32), 0.5, 1000)
            found = [found[int(i)] for i in kept]
        return [
            Finding(
                tuple(round(float(v), 1) for v in box),  # type: ignore[arg-type]
                round(confidence, 3),
                round(covered_fraction(box, covered, size), 3),
            )
            for box, confidence in found
        ]


@dataclass
class Written:
    """One image written to disk with the regions the anonymizer covered."""

    path: Path
    boxes: npt.NDArray[np.float32]
    width: int  # of the image the boxes refer to (thumbnails are written scaled down)
    whole: bool


@dataclass
class Report:
    input_size: int
    seconds: float
    images: int = 0
    snapshots: int = 0
    thumbnails: int = 0
    blurred_whole: int = 0
    persons_found: int = 0
    misses: int = 0
    anonymize_ms_per_image: float = 0.0
    missed: list[dict[str, Any]] = field(default_factory=list)


def check_written(check: StrongCheck, written: Sequence[Written]) -> Report:
    """Score every written image; the report's ``seconds``/``input_size`` are left 0."""
    report = Report(input_size=0, seconds=0.0)
    for item in written:
        image = np.asarray(PilImage.open(item.path).convert("RGB"))
        scale = image.shape[1] / item.width
        findings = check.score(image, item.boxes * scale)
        report.images += 1
        report.snapshots += "snapshots" in item.path.parts
        report.thumbnails += "thumbnails" in item.path.parts
        report.blurred_whole += item.whole
        report.persons_found += len(findings)
        for finding in findings:
            if finding.missed:
                report.misses += 1
                report.missed.append({"image": item.path.name, **asdict(finding)})
    return report


def run(
    seconds: float,
    input_size: int = 416,
    models_dir: Path | None = None,
    say: Callable[[str], None] = lambda text: None,
) -> Report:
    """The demo's cameras for ``seconds`` with every thumbnail wanted, then the check."""
    clips = {
        "vtest-640": sample_h264("vtest", 640, 360),
        "bikes-640": sample_h264("bikes", 640, 360),
        "vtest-1280": sample_h264("vtest", 1280, 720),
    }
    written: list[Written] = []
    lock = threading.Lock()

    def record(path: Path, image: Anonymized) -> None:
        with lock:
            written.append(Written(path, image.boxes.copy(), image.image.shape[1], image.whole))

    with tempfile.TemporaryDirectory(prefix="feedtag-anonymize-") as data_dir:
        config = validate_config(
            {
                "media_root": str(clips["vtest-640"].parent),
                "cameras": demo_cameras(clips, None),
                "detector": {"input_size": input_size, "models_dir": models_dir},
                "store": {"data_dir": data_dir, "thumbnail_interval_s": 2.0},
            }
        )
        say(f"running the demo's {len(config.cameras)} cameras for {seconds:g} s ...")
        engine = NodeEngine.from_config(config)
        if engine.store is None or engine.events is None:
            raise RuntimeError("the demo configuration runs no detector")
        media = engine.store.media
        media.observers.append(record)
        anonymizer = engine.events.anonymizer
        engine.start()
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for camera in config.cameras:
                    media.want_thumbnail(camera.id)
                time.sleep(0.5)
        finally:
            engine.stop()
        say(f"checking {len(written)} written images with the stronger detector ...")
        report = check_written(StrongCheck.build(models_dir), written)
        report.input_size, report.seconds = input_size, seconds
        report.anonymize_ms_per_image = round(anonymizer.ms_per_image, 1)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="feedtag bench anonymize",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--input-size", type=int, choices=(320, 416), default=416)
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    def say(text: str) -> None:
        if not args.json:
            print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)  # noqa: T201

    report = run(args.seconds, args.input_size, args.models_dir, say)
    if args.json:
        print(json.dumps(asdict(report)))  # noqa: T201
        return 0
    print(  # noqa: T201
        f"analysis at {report.input_size}, {report.seconds:g} s: {report.images} images written"
        f" ({report.snapshots} snapshots, {report.thumbnails} thumbnails,"
        f" {report.blurred_whole} blurred whole); the check found {report.persons_found}"
        f" person(s) at >= {FINDING_CONFIDENCE}, {report.misses} outside covered area;"
        f" anonymizing took {report.anonymize_ms_per_image} ms per image"
    )
    for miss in report.missed:
        print(f"  miss: {miss}")  # noqa: T201
    return 1 if report.misses else 0


if __name__ == "__main__":
    raise SystemExit(main())
