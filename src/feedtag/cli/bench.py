"""``feedtag bench``: ingest, detector, presence and anonymization benchmarks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from feedtag.cli.common import EXIT_OK, positive
from feedtag.errors import ConfigError


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
        results[variant] = run_in_child(
            variant, source, args.feeds, args.seconds, args.mode, pipeline=args.pipeline
        )
    engine, bare = results["engine"], results["bare"]
    ratio = engine.feeds_per_core / bare.feeds_per_core if bare.feeds_per_core else 0.0
    if args.json:
        summary = {
            "feeds": engine.feeds,
            "mode": engine.mode,
            "pipeline": args.pipeline,
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


def cmd_bench_detect(args: argparse.Namespace) -> int:
    from feedtag.bench.detect import run_bench

    def say(step: str) -> None:
        if not args.json:
            print(f"measuring {step} ...", file=sys.stderr, flush=True)

    rows = run_bench(args.seconds, say)
    if args.json:
        print(json.dumps([row.to_dict() for row in rows]))
        return EXIT_OK
    print(
        f"{'backend':<16}{'precision':<10}{'frame':>8}{'input':>8}{'batch':>6}{'ms/frame':>10}"
        f"{'model ms':>10}{'outside ms':>11}{'frames/s/core':>15}"
    )
    for row in rows:
        print(
            f"{row.backend:<16}{row.precision:<10}{row.frame:>8}{row.input_shape:>8}{row.batch:>6}"
            f"{row.ms_per_frame:>10}{row.model_ms_per_frame:>10}"
            f"{row.outside_model_ms_per_frame:>11}{row.frames_per_s_per_core:>15}"
        )
    return EXIT_OK


def cmd_bench_anonymize(args: argparse.Namespace) -> int:
    from feedtag.bench import anonymize

    argv = ["--seconds", str(args.seconds), "--input-size", str(args.input_size)]
    return anonymize.main([*argv, "--json"] if args.json else argv)


def cmd_bench_presence(args: argparse.Namespace) -> int:
    from feedtag.bench import presence

    argv = ["--json"] if args.json else []
    if args.variants:
        argv += ["--variants", args.variants]
    return presence.main(argv)


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


def add_bench_commands(commands: Any) -> None:
    bench = commands.add_parser("bench", help="benchmarks")
    bench_kinds = bench.add_subparsers(dest="bench", required=True, metavar="KIND")
    ingest = bench_kinds.add_parser("ingest", help="live-paced feeds through the ingest path")
    ingest.add_argument(
        "--source", default="vtest", help="'vtest', 'bikes' (re-encoded to H.264) or a video file"
    )
    ingest.add_argument("--size", type=_size, default="640x360", help="for sample sources")
    ingest.add_argument("--feeds", type=positive(int), default=50)
    ingest.add_argument("--seconds", type=positive(float), default=20.0)
    ingest.add_argument("--mode", choices=["keyframes", "all"], default="keyframes")
    ingest.add_argument("--json", action="store_true")
    ingest.add_argument(
        "--pipeline",
        action="store_true",
        help="include gate, detector and tracker (the whole analysis path)",
    )
    ingest.set_defaults(func=cmd_bench_ingest)
    detect = bench_kinds.add_parser("detect", help="detector cost per backend, precision, size")
    detect.add_argument("--seconds", type=positive(float), default=5.0, help="per measurement")
    detect.add_argument("--json", action="store_true")
    detect.set_defaults(func=cmd_bench_detect)
    presence = bench_kinds.add_parser(
        "presence", help="presence recall of the cheap path vs ungated full-rate analysis"
    )
    presence.add_argument(
        "--variants", default=None, help="comma-separated variant names (default: all)"
    )
    presence.add_argument("--json", action="store_true")
    presence.set_defaults(func=cmd_bench_presence)
    anonymize = bench_kinds.add_parser(
        "anonymize",
        help="a stronger detector looks for people left unblurred in the images written",
    )
    anonymize.add_argument("--seconds", type=float, default=60.0)
    anonymize.add_argument("--input-size", type=int, choices=(320, 416), default=416)
    anonymize.add_argument("--json", action="store_true")
    anonymize.set_defaults(func=cmd_bench_anonymize)
