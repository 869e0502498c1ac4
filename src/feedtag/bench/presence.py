"""Presence recall of the cheap path against ungated full-rate analysis, and what it costs.

The pipeline benchmark's goal has two halves: feeds per core, and presence recall >= 0.95
against ungated full-rate analysis. This measures the second, and the CPU that each variant
of the cheap path spends, on the same 640x360 H.264 re-encoding of vtest.avi.

- **Reference**: every frame (25 fps) through the 416 FP32 detector, no gate. A label is
  *present* in a zone during second ``s`` when any frame of that second has a detection of
  it whose ground point (box bottom centre) is in the zone.
- **Variant**: what `feedtag run` does — the analysed frames the ingest produces (keyframes at
  1 fps), the engine's own per-frame step (:class:`~feedtag.runtime.step.CameraStep`: change
  gate with the moving hint, the variant's detector, the tracker; through
  :func:`~feedtag.runtime.detect.detect_stream`, the detector called directly instead of
  batched), and presence rules for the whole frame and for each cell of a 3x3 grid. Second
  ``s`` is *tagged* when a presence segment of that label and zone overlaps ``[s, s + 1)``.
- **Recall** = tagged and present / present, over (label, zone, second); **precision** =
  tagged and present / tagged. Zones make it a real test: vtest always has people somewhere,
  so whole-frame presence alone would be trivially 1.0.
- **Cost**: CPU seconds of the analysis thread per analysed frame (gate, detector, tracker,
  rules: `time.thread_time`, one inference thread), plus the decode CPU per second of video
  measured on a keyframe-only decode loop. Their sum per feed-second gives an *estimate* of
  feeds per core; `feedtag bench ingest --pipeline` measures the real engine (34.7 feeds/core
  for the default variant, which this estimate should land near). Every analysed frame runs
  to completion here (nothing is dropped); the estimate is withheld (``saturated``) when the
  p99 time from a frame to its result reaching the rules is 2 s or more, since such a feed
  could not be analysed live.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal

import av

from feedtag.analytics.engine import CameraAnalyzer
from feedtag.analytics.geometry import ground_points
from feedtag.analytics.rules import Observation
from feedtag.bench.capacity import MAX_P99_LATENCY_S, percentile
from feedtag.bench.footage import quiet_h264, sample_h264, waking_h264
from feedtag.config import validate_config
from feedtag.config.analytics import CameraAnalytics
from feedtag.config.models import DetectorConfig, FeedtagConfig, RegionsConfig
from feedtag.core import Detections, Frame
from feedtag.ingest.camera import ModelSize
from feedtag.ingest.rate import AdaptiveRate
from feedtag.runtime.detect import detect_stream, frames_of
from feedtag.runtime.detection import build_detector
from feedtag.runtime.step import RateFeedback
from feedtag.vision.detector import Detector, picture_size_of
from feedtag.vision.gate import ChangeGate

GRID: Final = 3
LABELS: Final = ("person", "bicycle", "car", "motorcycle", "bus", "truck")
WALL0: Final = 1_800_000_000.0  # wall time of stream time 0
REFERENCE_BATCH: Final = 8

Key = tuple[str, str, int]  # (label, zone, second); zone "all" is the whole frame


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    input_size: int = 416
    precision: str = "int8"
    #: the inference runtime (``detector.backend``); ``auto`` is what ``feedtag run`` picks
    backend: str = "onnxruntime"
    gate: bool = True
    analysis_fps: float = 1.0
    #: the adaptive analysis rate (floor when quiet); the other variants keep analysis_fps
    adaptive: bool = False
    #: active-region inference (the detector on the changed part of the frame); ``auto``
    #: where the runtime makes them pay, as ``feedtag run`` decides
    regions: bool | Literal["auto"] = False
    #: with ``adaptive``: the packet gate at the floor rate (docs/ingest.md)
    packet_gate: bool = True


VARIANTS: Final = {
    v.name: v
    for v in (
        Variant("416-int8"),
        Variant("416-int8-nogate", gate=False),
        Variant("320-int8", input_size=320),
        Variant("320-fp32", input_size=320, precision="fp32"),
        Variant("416-int8-0.5fps", analysis_fps=0.5),
        Variant("320-int8-0.5fps", input_size=320, analysis_fps=0.5),
        Variant("416-int8-adaptive", adaptive=True),
        Variant("416-int8-adaptive-nopacket", adaptive=True, packet_gate=False),
        Variant("416-int8-regions", regions=True),
        Variant("416-int8-adaptive-regions", adaptive=True, regions=True),
        Variant("416-openvino", precision="auto", backend="openvino"),
        Variant(
            "416-openvino-adaptive-regions",
            precision="auto",
            backend="openvino",
            adaptive=True,
            regions=True,
        ),
    )
}


@dataclass(frozen=True, slots=True)
class VariantResult:
    variant: str
    recall: float
    precision: float
    present: int
    tagged: int
    analysed_frames: int
    gated_fraction: float
    analysis_ms_per_frame: float
    decode_ms_per_video_s: float
    cpu_ms_per_feed_s: float
    #: None when the run would not keep up live (p99 frame-to-result latency >= 2 s)
    estimated_feeds_per_core: float | None
    #: frames handled per second of analysis time (detected + gated), frames dropped before
    #: detection (none: every analysed frame runs to completion here), and the p99 time from
    #: a frame to its result reaching the rules
    detected_fps: float = 0.0
    dropped_frames: int = 0
    p99_latency_s: float | None = None
    saturated: bool = False


def grid_zones(cells: int = GRID) -> list[dict[str, Any]]:
    """A ``cells`` x ``cells`` grid of zones named ``r{row}c{col}`` over the whole frame."""
    zones = []
    for row in range(cells):
        for col in range(cells):
            x0, x1, y0, y1 = col / cells, (col + 1) / cells, row / cells, (row + 1) / cells
            polygon = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
            zones.append({"name": f"r{row}c{col}", "polygon": polygon})
    return zones


def cell_of(point: tuple[float, float], cells: int = GRID) -> str:
    """The grid cell of a normalized point (the edge at 1.0 belongs to the last cell)."""
    col = min(int(point[0] * cells), cells - 1)
    row = min(int(point[1] * cells), cells - 1)
    return f"r{row}c{col}"


def bench_camera(
    path: Path, analysis_fps: float, *, adaptive: bool = False, packet_gate: bool = True
) -> FeedtagConfig:
    """The config of the benchmark's one camera: ``path`` read as fast as possible."""
    return validate_config(
        {
            "media_root": str(path.parent),
            "cameras": [{"id": "bench", "url": path.name, "realtime": False,
                         "analysis_fps": analysis_fps,
                         "adaptive": {"enabled": adaptive, "packet_gate": packet_gate}}],
        }
    )  # fmt: skip


def frames(
    path: Path,
    analysis_fps: float,
    rate: AdaptiveRate | None = None,
    model_size: ModelSize | None = None,
    *,
    packet_gate: bool = True,
) -> Iterator[Frame]:
    """The analysed frames of a file as the ingest produces them, every one of them
    (sampled by ``rate`` when given, with its packet gate unless ``packet_gate`` is False;
    also at the detector's scale with ``model_size``)."""
    config = bench_camera(path, analysis_fps, adaptive=rate is not None, packet_gate=packet_gate)
    return frames_of(config.cameras[0], config, threading.Event(), rate, model_size)


def _keys(
    detections: Detections, names: Sequence[str], size: tuple[int, int], second: int
) -> set[Key]:
    keys: set[Key] = set()
    points = ground_points(detections.xyxy, size)
    for class_id, point in zip(detections.class_id.tolist(), points, strict=True):
        label = names[class_id]
        if label in LABELS:
            keys.add((label, "all", second))
            keys.add((label, cell_of((float(point[0]), float(point[1]))), second))
    return keys


def reference_presence(path: Path, detector: Detector) -> set[Key]:
    """(label, zone, second) present in any frame of that second, every frame detected."""
    names = list(detector.class_names)
    present: set[Key] = set()
    batch: list[Frame] = []

    def flush() -> None:
        for frame, found in zip(batch, detector.detect([f.image for f in batch]), strict=True):
            present.update(_keys(found, names, frame.size, int(frame.pts_s)))
        batch.clear()

    for frame in frames(path, analysis_fps=25.0):
        batch.append(frame)
        if len(batch) == REFERENCE_BATCH:
            flush()
    if batch:
        flush()
    return present


@dataclass(frozen=True, slots=True)
class VariantRun:
    """What the variant tagged, and what the analysis of its frames took."""

    tagged: set[Key]
    analysed: int
    gated: int
    cpu_s: float
    #: wall time of each frame's analysis (gate, detector, tracker, rules)
    latencies_s: list[float]


def variant_presence(path: Path, detector: Detector, variant: Variant) -> VariantRun:
    """What the variant tags, and the analysis thread's CPU."""
    names = list(detector.class_names)
    analytics = CameraAnalytics.model_validate(
        {
            "zones": grid_zones(),
            "rules": [{"kind": "presence", "labels": list(LABELS)}]
            + [
                {"kind": "presence", "labels": list(LABELS), "zone": zone["name"]}
                for zone in grid_zones()
            ],
        }
    )
    analyzer = CameraAnalyzer("bench", analytics)
    rate = feedback = None
    if variant.adaptive:
        camera = bench_camera(path, variant.analysis_fps, adaptive=True).cameras[0]
        rate = AdaptiveRate.for_camera(camera)
        feedback = RateFeedback.for_camera(camera, rate, names)
    results = detect_stream(
        frames(
            path,
            variant.analysis_fps,
            rate,
            picture_size_of(detector),
            packet_gate=variant.packet_gate,
        ),
        detector,
        gate=ChangeGate() if variant.gate else None,
        track_lost_s=DetectorConfig().track_lost_s,
        feedback=feedback,
        regions=RegionsConfig(enabled=variant.regions) if variant.regions else None,
    )
    segments = []
    analysed = gated = 0
    cpu = 0.0
    end_s = 0.0
    latencies: list[float] = []
    while True:
        # the analysis thread's CPU: gate, detector, tracker (in the generator) and rules
        started, wall_started = time.thread_time(), time.perf_counter()
        result = next(results, None)
        if result is None:
            break
        observation = Observation(
            "bench", result.t_s, WALL0 + result.t_s, result.detections, names, result.frame_size
        )
        segments += analyzer.update(observation).segments
        cpu += time.thread_time() - started
        latencies.append(time.perf_counter() - wall_started)
        analysed += 1
        gated += result.gated
        end_s = result.t_s
    segments += analyzer.close(WALL0 + end_s).segments
    tagged: set[Key] = set()
    for segment in segments:
        start = segment.started_at - WALL0
        end = (segment.ended_at if segment.ended_at is not None else WALL0 + end_s) - WALL0
        for second in range(int(start), int(end) + 1):
            tagged.add((segment.label, segment.zone or "all", second))
    return VariantRun(tagged, analysed, gated, cpu, latencies)


def video_duration_s(path: Path) -> float:
    """The length of the clip's video stream in seconds."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return max(float(stream.duration * stream.time_base), 1.0)
        return max((container.duration or 0) / av.time_base, 1.0)


def decode_ms_per_video_s(path: Path) -> float:
    """CPU of a keyframe-only decode of the whole file, per second of video."""
    started = time.thread_time()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        stream.codec_context.skip_frame = "NONKEY"
        seconds = 0.0
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            seconds = float(frame.time or 0.0)
    return (time.thread_time() - started) * 1000 / max(seconds, 1.0)


def run(
    path: Path,
    variants: Sequence[Variant],
    models_dir: Path | None = None,
    progress: Any = None,
) -> tuple[int, list[VariantResult]]:
    """Measure every variant against one reference run; returns (present keys, results)."""
    say = progress or (lambda text: None)
    say("reference: every frame through 416 FP32, no gate ...")
    reference_detector = build_detector(
        DetectorConfig(
            input_size=416, precision="fp32", backend="onnxruntime", models_dir=models_dir
        )
    )
    present = reference_presence(path, reference_detector)
    decode_ms = decode_ms_per_video_s(path)
    results = []
    for variant in variants:
        say(f"variant {variant.name} ...")
        settings = DetectorConfig(
            input_size=variant.input_size,
            precision=variant.precision,
            backend=variant.backend,
            models_dir=models_dir,
        )
        detector = build_detector(settings)
        measured = variant_presence(path, detector, variant)
        tagged, analysed, gated = measured.tagged, measured.analysed, measured.gated
        hit = len(present & tagged)
        analysis_ms = measured.cpu_s * 1000 / max(analysed, 1)
        per_feed_s = decode_ms + analysis_ms * variant.analysis_fps
        if variant.adaptive:
            # the rate varies: the frames analysed per second of video as measured, each one
            # keyframe decode (presence rules only: never the tracking rate, so keyframes
            # only on a 1 s GOP) and one analysis
            per_feed_s = (decode_ms + analysis_ms) * analysed / video_duration_s(path)
        p99 = percentile(measured.latencies_s, 99)
        kept_up = p99 is not None and p99 < MAX_P99_LATENCY_S
        results.append(
            VariantResult(
                variant=variant.name,
                recall=round(hit / len(present), 3) if present else 1.0,
                precision=round(hit / len(tagged), 3) if tagged else 1.0,
                present=len(present),
                tagged=len(tagged),
                analysed_frames=analysed,
                gated_fraction=round(gated / max(analysed, 1), 3),
                analysis_ms_per_frame=round(analysis_ms, 2),
                decode_ms_per_video_s=round(decode_ms, 2),
                cpu_ms_per_feed_s=round(per_feed_s, 2),
                estimated_feeds_per_core=round(1000 / per_feed_s, 1) if kept_up else None,
                detected_fps=round(analysed / max(measured.cpu_s, 1e-9), 1),
                dropped_frames=0,
                p99_latency_s=None if p99 is None else round(p99, 3),
                saturated=not kept_up,
            )
        )
    return len(present), results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="feedtag bench presence",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, of: {', '.join(VARIANTS)}",
    )
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument(
        "--footage",
        choices=("vtest", "bikes", "quiet", "waking"),
        default="vtest",
        help="vtest (busy, the default), bikes.mp4, the quiet still-frame feed, or the "
        "waking feed (quiet, then people walk into part of the view; bench/footage.py)",
    )
    parser.add_argument(
        "--seconds", type=int, default=None, help="only the first seconds of the footage"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    unknown = [name for name in args.variants.split(",") if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(unknown)}")
    variants = [VARIANTS[name] for name in args.variants.split(",")]
    if args.footage == "quiet":
        path = quiet_h264(640, 360, seconds=args.seconds or 60)
    elif args.footage == "waking":
        path = waking_h264(640, 360)
    else:
        path = sample_h264(args.footage, 640, 360, seconds=args.seconds)

    def say(text: str) -> None:
        if not args.json:
            print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)  # noqa: T201

    present, results = run(path, variants, args.models_dir, say)
    if args.json:
        print(json.dumps({"present": present, "results": [asdict(r) for r in results]}))  # noqa: T201
        return 0
    header = f"{'variant':<26}{'recall':>7}{'prec':>7}{'gated':>7}{'ms/frame':>9}"
    header += f"{'decode ms/s':>12}{'CPU ms/feed-s':>14}{'est feeds/core':>15}"
    print(header)  # noqa: T201
    for r in results:
        print(  # noqa: T201
            f"{r.variant:<26}{r.recall:>7.3f}{r.precision:>7.3f}{r.gated_fraction:>7.0%}"
            f"{r.analysis_ms_per_frame:>9.1f}{r.decode_ms_per_video_s:>12.1f}"
            f"{r.cpu_ms_per_feed_s:>14.1f}{_figure(r.estimated_feeds_per_core):>15}"
        )
    return 0


def _figure(value: float | None) -> str:
    return "saturated" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    raise SystemExit(main())
