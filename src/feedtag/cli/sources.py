"""``feedtag probe``, ``feedtag detect`` and ``feedtag models``: one camera or file, and
the detector models."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feedtag.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    as_given,
    file_problem,
    names_a_file,
    positive,
    progress,
)
from feedtag.config import CameraConfig, validate_config
from feedtag.errors import SourceError

if TYPE_CHECKING:
    from feedtag.runtime.detect import FrameResult


def cmd_probe(args: argparse.Namespace) -> int:
    from feedtag.ingest.probe import probe
    from feedtag.ingest.source import OpenOptions
    from feedtag.urls import CameraUrl

    raw, media_root = args.url, args.media_root
    if media_root is None and names_a_file(raw):
        problem = file_problem(raw)
        if problem is not None:
            print(f"error: {as_given(raw)}: {problem}", file=sys.stderr)
            return EXIT_USAGE
        path = Path(raw).resolve()  # the operator named this file; resolved once, here
        raw, media_root = str(path), path.parent
    try:
        url = CameraUrl.parse(raw, media_root=media_root)
    except SourceError as exc:
        print(f"error: url: {exc}", file=sys.stderr)
        return EXIT_USAGE
    options = OpenOptions(args.timeout, args.timeout, args.rtsp_transport)
    result = probe(url, options, max_seconds=args.seconds)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        for key, value in result.to_dict().items():
            print(f"{key:>20}: {'-' if value is None else value}")
    return EXIT_OK


def cmd_models_build(args: argparse.Namespace) -> int:
    from feedtag.vision.models import build_default_model, default_models_dir

    folder = args.models_dir or default_models_dir()
    print(f"building the default detector into {folder} (offline) ...", file=sys.stderr)
    started = time.monotonic()
    info = build_default_model(folder, progress=progress)
    print(f"built {info.name} in {time.monotonic() - started:.0f} s: {info.path}")
    return EXIT_OK


def cmd_models_list(args: argparse.Namespace) -> int:
    from feedtag.vision.models import default_models_dir, list_models

    folder = args.models_dir or default_models_dir()
    models = list_models(folder)
    if args.json:
        print(json.dumps([dict(info.manifest) for info in models]))
        return EXIT_OK
    if not models:
        print(f"no models in {folder}; `feedtag models build` makes the default one")
    for info in models:
        print(
            f"{info.name:<32} {info.precision:<5} {info.input_size:>4}  {len(info.class_names)} "
            f"classes  {info.path}"
        )
    return EXIT_OK


def cmd_detect(args: argparse.Namespace) -> int:
    target = args.url
    is_file = names_a_file(target)
    camera: dict[str, Any] = {"id": "detect", "url": target, "analysis_fps": args.analysis_fps}
    data: dict[str, Any] = {"cameras": [camera]}
    if is_file:
        problem = file_problem(target)
        if problem is not None:
            print(f"error: {as_given(target)}: {problem}", file=sys.stderr)
            return EXIT_USAGE
        # Resolved once: a relative URL under a media root resolves against that root, so
        # "clips/a.mp4" with the root clips/ used to become clips/clips/a.mp4.
        path = Path(target).resolve()
        camera["url"], data["media_root"] = str(path), str(path.parent)  # the operator named it
        camera["realtime"] = False
    if args.model is not None:
        data["detector"] = {
            "model": str(args.model),
            "layout": args.layout,
            "class_names": args.class_names.split(",") if args.class_names else None,
        }
    config = validate_config(data, source="arguments")
    if is_file:
        problem = _open_problem(config.cameras[0])  # before the detector, which may be built
        if problem is not None:
            print(f"error: {as_given(target)}: {problem}", file=sys.stderr)
            return EXIT_USAGE
    # Imported only now: numpy, PyAV and ONNX Runtime take seconds; a typo should not.
    from feedtag.runtime.detect import detect_stream, frames_of
    from feedtag.runtime.detection import build_detector
    from feedtag.vision.detector import picture_size_of
    from feedtag.vision.gate import ChangeGate

    settings = config.detector
    if settings.model == "default":
        print("loading the default detector (built on first use) ...", file=sys.stderr)
    detector = build_detector(settings, progress)
    gate = None if args.no_gate else ChangeGate()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    results = detect_stream(
        frames_of(config.cameras[0], config, stop, model_size=picture_size_of(detector)),
        detector,
        gate=gate,
        track_lost_s=settings.track_lost_s,
        max_frames=args.max_frames,
        save_dir=args.save_annotated,
        regions=config.cameras[0].gate.regions,
    )
    try:
        _print_results(results, args.json)
    except SourceError as exc:
        if not is_file:
            raise
        print(f"error: {as_given(target)}: {exc.message}", file=sys.stderr)  # a broken file
        return EXIT_USAGE
    if args.save_annotated is not None:
        print(f"anonymized annotated frames in {args.save_annotated}", file=sys.stderr)
    return EXIT_OK


def _print_results(results: Iterable[FrameResult], as_json: bool) -> None:
    for result in results:
        if as_json:
            print(json.dumps(result.to_dict()), flush=True)
            continue
        found = ", ".join(
            f"{d['label']}{'#' + str(d['track_id']) if d['track_id'] else ''} {d['confidence']:.2f}"
            for d in result.to_dict()["detections"]
        )
        mark = " (gated: carried forward)" if result.gated else ""
        print(
            f"frame {result.frame_index:>5}  t={result.t_s:8.2f}s  {found or '-'}{mark}", flush=True
        )


def _open_problem(camera: CameraConfig) -> str | None:
    """Why FFmpeg cannot open ``camera``'s file (not a video, no video stream), or None."""
    from feedtag.ingest.source import OpenOptions, open_source

    options = OpenOptions(camera.open_timeout_s, camera.read_timeout_s, camera.rtsp_transport)
    try:
        with open_source(camera.url, options):
            return None
    except SourceError as exc:
        return exc.message


def add_probe_command(commands: Any) -> None:
    probe = commands.add_parser("probe", help="what a camera sends: codec, size, fps, GOP")
    probe.add_argument("url")
    probe.add_argument("--json", action="store_true")
    probe.add_argument("--seconds", type=float, default=5.0, help="read at most this long")
    probe.add_argument("--timeout", type=float, default=10.0, help="open/read timeout, s")
    probe.add_argument("--rtsp-transport", choices=["tcp", "udp"], default="tcp")
    probe.add_argument(
        "--media-root",
        type=Path,
        default=None,
        help="local files must be under this (default: the file's folder)",
    )
    probe.set_defaults(func=cmd_probe)


def add_vision_commands(commands: Any) -> None:
    models = commands.add_parser("models", help="detector models: build, list")
    model_commands = models.add_subparsers(dest="models", required=True, metavar="ACTION")
    build = model_commands.add_parser("build", help="build the default detector, offline")
    build.add_argument("--models-dir", type=Path, default=None)
    build.set_defaults(func=cmd_models_build)
    listing = model_commands.add_parser("list", help="the models in the models directory")
    listing.add_argument("--models-dir", type=Path, default=None)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_models_list)

    detect = commands.add_parser("detect", help="detect and track in a file or stream")
    detect.add_argument("url", help="a video file or a camera URL")
    detect.add_argument("--json", action="store_true", help="one JSON object per frame")
    detect.add_argument(
        "--save-annotated",
        type=Path,
        default=None,
        metavar="DIR",
        help="write anonymized annotated JPEGs here",
    )
    detect.add_argument("--max-frames", type=positive(int), default=None)
    detect.add_argument("--analysis-fps", type=positive(float), default=1.0)
    detect.add_argument("--no-gate", action="store_true", help="run the detector on every frame")
    detect.add_argument("--model", type=Path, default=None, help="a user ONNX model")
    detect.add_argument(
        "--layout",
        default="yolo-decoded",
        choices=["yolo-decoded", "yolov8", "yolox", "yolox-decoded"],
    )
    detect.add_argument("--class-names", default=None, help="comma-separated, for --model")
    detect.set_defaults(func=cmd_detect)
