"""The ``feedtag`` command.

Exit codes: 0 success, 1 runtime failure, 2 bad input (config, URL, arguments).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Final

from feedtag import __version__
from feedtag.config import FeedtagConfig, config_json_schema, load_config, validate_config
from feedtag.core import CameraStatus
from feedtag.errors import ConfigError, FeedtagError, SourceError
from feedtag.urls import RedactingFilter, redact

log = logging.getLogger("feedtag")

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2


def setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


# -- commands ---------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    enabled = sum(1 for camera in config.cameras if camera.enabled)
    print(f"{args.config}: OK ({len(config.cameras)} camera(s), {enabled} enabled)")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    print(config_json_schema())
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    return run_engine(config, seconds=args.seconds, as_json=args.json)


def cmd_probe(args: argparse.Namespace) -> int:
    from feedtag.ingest.probe import probe
    from feedtag.ingest.source import OpenOptions
    from feedtag.urls import CameraUrl

    media_root = args.media_root
    if media_root is None and "://" not in args.url:
        media_root = Path(args.url).resolve().parent  # the operator named this file
    try:
        url = CameraUrl.parse(args.url, media_root=media_root)
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


def cmd_bench_ingest(args: argparse.Namespace) -> int:
    from feedtag.bench.footage import sample_h264
    from feedtag.bench.ingest import run_in_child

    source = _bench_source(args.source, args.size, sample_h264)
    results = {}
    for variant in ("engine", "bare"):
        if not args.json:
            print(
                f"running {variant}: {args.feeds} feed(s) of {source.name}, "
                f"{args.seconds:g} s, mode {args.mode} ...",
                file=sys.stderr,
                flush=True,
            )
        results[variant] = run_in_child(variant, source, args.feeds, args.seconds, args.mode)
    engine, bare = results["engine"], results["bare"]
    ratio = engine.feeds_per_core / bare.feeds_per_core if bare.feeds_per_core else 0.0
    if args.json:
        summary = {
            "feeds": engine.feeds,
            "mode": engine.mode,
            "source": source.name,
            "feeds_per_core": engine.feeds_per_core,
            "cpu_s_per_feed_s": engine.cpu_s_per_feed_s,
            "rss_mb_per_feed": engine.rss_mb_per_feed,
            "decoded_fps": engine.decoded_fps,
            "analysed_fps": engine.analysed_fps,
            "bare": bare.to_dict(),
            "engine_vs_bare": round(ratio, 3),
        }
        print(json.dumps(summary))
        return EXIT_OK
    print(f"{'':24}{'engine':>12}{'bare PyAV':>12}")
    for label, key in (
        ("feeds per core", "feeds_per_core"),
        ("CPU s per feed-second", "cpu_s_per_feed_s"),
        ("decoded frames/s", "decoded_fps"),
        ("analysed frames/s", "analysed_fps"),
        ("RSS MB per feed", "rss_mb_per_feed"),
    ):
        print(f"{label:24}{getattr(engine, key):>12}{getattr(bare, key):>12}")
    print(f"engine reaches {ratio:.0%} of the bare loop's feeds per core")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from feedtag.bench.footage import bikes_path, cache_dir, sample_h264, vtest_path

    def progress(done: int, total: int) -> None:
        print(f"\r  encoding {done}/{total} frames", end="", file=sys.stderr, flush=True)

    print("preparing sample footage (encoded once, then cached) ...", file=sys.stderr)
    clips = {
        "vtest-640": sample_h264("vtest", 640, 360, progress=progress),
        "bikes-640": sample_h264("bikes", 640, 360, progress=progress),
        "vtest-1280": sample_h264("vtest", 1280, 720, progress=progress),
    }
    print(file=sys.stderr)
    cameras: list[dict[str, Any]] = [
        {"id": name, "url": path.name, "loop": True, "realtime": True}
        for name, path in clips.items()
    ]
    # A fourth camera shows the other decode mode: 5 analysed fps with a keyframe each second
    # means every frame is decoded and sampled.
    cameras.append(
        {"id": "vtest-640-5fps", "url": clips["vtest-640"].name, "loop": True, "analysis_fps": 5.0}
    )
    media_root = clips["vtest-640"].parent
    config = validate_config({"media_root": str(media_root), "cameras": cameras})
    print(f"feedtag demo: {len(cameras)} live-paced looping feeds of real footage")
    print(f"  footage:  {vtest_path()} and {bikes_path()}, re-encoded as H.264 in {media_root}")
    print(f"  cache:    {cache_dir()}")
    print("  status below every 2 s; Ctrl-C stops. (Detection, events and the dashboard come")
    print("  with later releases; for now this shows live ingest.)")
    return run_engine(config, seconds=args.seconds, as_json=False)


# -- helpers ----------------------------------------------------------------------------


def run_engine(config: FeedtagConfig, *, seconds: float | None, as_json: bool) -> int:
    from feedtag.runtime.node import NodeEngine

    engine = NodeEngine(config)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    engine.start()
    started = time.monotonic()
    try:
        while not stop.wait(config.engine.status_interval_s):
            _print_statuses(engine.statuses(), as_json)
            if seconds is not None and time.monotonic() - started >= seconds:
                break
    finally:
        began = time.monotonic()
        clean = engine.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info(
            "stopped in %.1f s%s", time.monotonic() - began, "" if clean else " (some threads left)"
        )
    _print_statuses(engine.statuses(), as_json)
    return EXIT_OK


def _print_statuses(statuses: list[CameraStatus], as_json: bool) -> None:
    if as_json:
        print(
            json.dumps({"time": time.time(), "cameras": [s.to_dict() for s in statuses]}),
            flush=True,
        )
        return
    header = f"{'camera':<18}{'state':<11}{'mode':<11}{'keyint':>7}{'dec/s':>7}{'ana/s':>7}"
    print(f"\n{time.strftime('%H:%M:%S')}  {header}{'drops':>7}{'reconn':>7}  reason", flush=False)
    for s in statuses:
        keyint = f"{s.keyframe_interval_s:.2f}" if s.keyframe_interval_s is not None else "-"
        drops = sum(s.counters.frames_dropped.values())
        print(
            f"{'':10}{s.camera_id[:17]:<18}{s.state.value:<11}{s.mode.value:<11}{keyint:>7}"
            f"{s.decoded_fps:>7.1f}{s.analysed_fps:>7.1f}{drops:>7}{s.counters.reconnects:>7}"
            f"  {s.reason[:60]}"
        )
    sys.stdout.flush()


def _bench_source(source: str, size: str, sample: Any) -> Path:
    if source in ("vtest", "bikes"):
        width, _, height = size.partition("x")
        return Path(sample(source, int(width), int(height)))
    path = Path(source)
    if not path.is_file():
        raise ConfigError(
            [("--source", f"{source!r} is neither a sample name nor a file")], "bench"
        )
    return path.resolve()


def _size(text: str) -> str:
    width, sep, height = text.partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}")
    return text


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedtag", description="Many live camera feeds in, searchable tags and events out."
    )
    parser.add_argument("--version", action="version", version=f"feedtag {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="validate a config file")
    check.add_argument("config", type=Path)
    check.set_defaults(func=cmd_check)

    schema = commands.add_parser("schema", help="print the config file's JSON schema")
    schema.set_defaults(func=cmd_schema)

    run = commands.add_parser("run", help="run every configured camera")
    run.add_argument("config", type=Path)
    run.add_argument("--seconds", type=float, default=None, help="stop after this long")
    run.add_argument("--json", action="store_true", help="status as JSON lines")
    run.set_defaults(func=cmd_run)

    demo = commands.add_parser("demo", help="run live-paced feeds of real sample footage")
    demo.add_argument("--seconds", type=float, default=None, help="stop after this long")
    demo.set_defaults(func=cmd_demo)

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

    bench = commands.add_parser("bench", help="benchmarks")
    bench_kinds = bench.add_subparsers(dest="bench", required=True, metavar="KIND")
    ingest = bench_kinds.add_parser("ingest", help="live-paced feeds through the ingest path")
    ingest.add_argument(
        "--source", default="vtest", help="'vtest', 'bikes' (re-encoded to H.264) or a video file"
    )
    ingest.add_argument("--size", type=_size, default="640x360", help="for sample sources")
    ingest.add_argument("--feeds", type=_positive(int), default=50)
    ingest.add_argument("--seconds", type=_positive(float), default=20.0)
    ingest.add_argument("--mode", choices=["keyframes", "all"], default="keyframes")
    ingest.add_argument("--json", action="store_true")
    ingest.set_defaults(func=cmd_bench_ingest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        result: int = args.func(args)
        return result
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FeedtagError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
