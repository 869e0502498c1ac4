"""``feedtag bench``: ingest, detector, presence, anonymization and control-plane benchmarks."""

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
    found = _search_ingest(args, source) if args.search and args.pipeline else None
    engine_fpc, bare_fpc = engine.feeds_per_core, bare.feeds_per_core
    ratio = engine_fpc / bare_fpc if engine_fpc is not None and bare_fpc else None
    if args.json:
        summary = {
            "feeds": engine.feeds,
            "mode": engine.mode,
            "pipeline": args.pipeline,
            "source": source.name,
            **{key: getattr(engine, key) for key in INGEST_FIELDS},
            **({"search": found} if found is not None else {}),
            "bare": bare.to_dict(),
            "engine_vs_bare": None if ratio is None else round(ratio, 3),
        }
        print(json.dumps(summary))
        return EXIT_OK
    print(f"{'':24}{'engine':>12}{'bare PyAV':>12}")
    for key in INGEST_FIELDS:
        print(f"{key:24}{_cell(getattr(engine, key)):>12}{_cell(getattr(bare, key)):>12}")
    if engine.saturated:
        print("the detector did not keep up: no feeds per core for this feed count")
    if found is not None:
        print(f"search: {found['feeds']} feeds keep up ({found['feeds_per_core']} feeds/core)")
    if ratio is not None:
        print(f"engine reaches {ratio:.0%} of the bare loop's feeds per core")
    return EXIT_OK


INGEST_FIELDS = (
    "feeds_per_core", "saturated", "cpu_s_per_feed_s", "rss_mb_per_feed", "decoded_fps",
    "analysed_fps", "detected_fps", "dropped_fps", "handled_fraction", "p99_latency_s",
)  # fmt: skip


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _search_ingest(args: argparse.Namespace, source: Path) -> dict[str, Any]:
    """The largest feed count whose engine run keeps up, and that run's figures."""
    from feedtag.bench.capacity import search_capacity
    from feedtag.bench.ingest import IngestBenchResult, run_in_child

    runs: dict[int, IngestBenchResult] = {}

    def measure(feeds: int) -> IngestBenchResult:
        runs[feeds] = run_in_child("engine", source, feeds, args.seconds, args.mode, pipeline=True)
        return runs[feeds]

    feeds = search_capacity(measure, args.feeds)
    best = runs.get(feeds)
    return {
        "feeds": feeds,
        "feeds_per_core": None if best is None else best.feeds_per_core,
        "runs": {str(n): run.to_dict() for n, run in sorted(runs.items())},
    }


def cmd_bench_compare(args: argparse.Namespace) -> int:
    from feedtag.bench import compare

    argv = ["--seconds", str(args.seconds), "--rounds", str(args.rounds)]
    argv += ["--json"] if args.json else []
    argv += ["--quick"] if args.quick else []
    argv += ["--fixed-rate"] if args.fixed_rate else []
    argv += ["--whole-frames"] if args.whole_frames else []
    if args.workloads:
        argv += ["--workloads", args.workloads]
    return compare.main(argv)


def cmd_bench_control_plane(args: argparse.Namespace) -> int:
    from feedtag.bench import control_plane

    argv = ["--shards", str(args.shards)]
    argv += ["--json"] if args.json else []
    argv += ["--quick"] if args.quick else []
    argv += ["--cameras", args.cameras] if args.cameras else []
    argv += ["--output", args.output] if args.output else []
    return control_plane.main(argv)


def batch_list(text: str) -> tuple[int, ...]:
    """``--batches``: comma-separated batch sizes, 1 to 256 each.

    >>> batch_list("1, 8,64")
    (1, 8, 64)
    """
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not sizes or not all(1 <= size <= 256 for size in sizes):
        raise argparse.ArgumentTypeError(f"batch sizes must be 1 to 256, got {text!r}")
    return sizes


def cmd_bench_detect(args: argparse.Namespace) -> int:
    from feedtag.bench.detect import BATCHES, GPU_BATCHES, run_bench, run_gpu_bench

    def say(step: str) -> None:
        if not args.json:
            print(f"measuring {step} ...", file=sys.stderr, flush=True)

    if args.gpu:
        rows = run_gpu_bench(args.seconds, say, args.batches or GPU_BATCHES)
    else:
        rows = run_bench(args.seconds, say, args.batches or BATCHES)
    if args.json:
        print(json.dumps([row.to_dict() for row in rows]))
        return EXIT_OK
    print(
        f"{'backend':<16}{'precision':<10}{'frame':>8}{'input':>8}{'batch':>6}{'ms/frame':>10}"
        f"{'model ms':>10}{'outside ms':>11}{'frames/s/core':>15}{'frames/s':>10}"
    )
    for row in rows:
        print(
            f"{row.backend:<16}{row.precision:<10}{row.frame:>8}{row.input_shape:>8}{row.batch:>6}"
            f"{row.ms_per_frame:>10}{row.model_ms_per_frame:>10}"
            f"{row.outside_model_ms_per_frame:>11}{row.frames_per_s_per_core:>15}"
            f"{row.frames_per_s:>10}"
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
    argv += ["--footage", args.footage]
    if args.seconds is not None:
        argv += ["--seconds", str(args.seconds)]
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
    ingest.add_argument(
        "--search",
        action="store_true",
        help="with --pipeline: search for the largest feed count that keeps up "
        "(galloping from --feeds, then bisection; one child run per step)",
    )
    ingest.set_defaults(func=cmd_bench_ingest)
    compare = bench_kinds.add_parser(
        "compare",
        help="feedtag, an NVR-style PyAV + ONNX Runtime loop and the decode+inference limit, "
        "on the same streams",
    )
    compare.add_argument("--seconds", type=positive(float), default=20.0, help="per run")
    compare.add_argument("--workloads", default=None, help="comma-separated: W1,W2,fleet")
    compare.add_argument("--quick", action="store_true", help="few feeds, short clips (tests)")
    compare.add_argument(
        "--rounds",
        type=positive(int),
        default=1,
        help="measure each workload this many times, the variants in turn, and report each "
        "variant's median round (CPU speed drifts between runs)",
    )
    compare.add_argument("--json", action="store_true")
    compare.add_argument(
        "--fixed-rate",
        action="store_true",
        help="feedtag's cameras analyse at analysis_fps all the time (adaptive rate off)",
    )
    compare.add_argument(
        "--whole-frames",
        action="store_true",
        help="feedtag's detector always runs on whole frames (active regions off)",
    )
    compare.set_defaults(func=cmd_bench_compare)
    plane = bench_kinds.add_parser(
        "control-plane",
        help="the Ray engine's coordinator, reconcile and failover with thousands of "
        "status-only simulated cameras (local Ray and a throwaway PostgreSQL)",
    )
    plane.add_argument("--cameras", default=None, help="comma-separated counts (1000,3000,10000)")
    plane.add_argument("--shards", type=positive(int), default=4)
    plane.add_argument("--quick", action="store_true", help="200 cameras (a smoke test)")
    plane.add_argument("--output", default=None, help="also write the rows to this JSON file")
    plane.add_argument("--json", action="store_true")
    plane.set_defaults(func=cmd_bench_control_plane)
    detect = bench_kinds.add_parser("detect", help="detector cost per backend, precision, size")
    detect.add_argument("--seconds", type=positive(float), default=5.0, help="per measurement")
    detect.add_argument(
        "--batches",
        type=batch_list,
        help="comma-separated frames per call (default: 1,8; with --gpu 1,2,4,8,16,32,64)",
    )
    detect.add_argument(
        "--gpu",
        action="store_true",
        help="the default model on each GPU execution provider that works here",
    )
    detect.add_argument("--json", action="store_true")
    detect.set_defaults(func=cmd_bench_detect)
    presence = bench_kinds.add_parser(
        "presence", help="presence recall of the cheap path vs ungated full-rate analysis"
    )
    presence.add_argument(
        "--variants", default=None, help="comma-separated variant names (default: all)"
    )
    presence.add_argument("--json", action="store_true")
    presence.add_argument(
        "--footage",
        choices=("vtest", "bikes", "quiet", "waking"),
        default="vtest",
        help="busy (vtest, bikes), still (quiet) or still until people walk in (waking)",
    )
    presence.add_argument(
        "--seconds", type=positive(int), default=None, help="only the first seconds of it"
    )
    presence.set_defaults(func=cmd_bench_presence)
    anonymize = bench_kinds.add_parser(
        "anonymize",
        help="a stronger detector looks for people left unblurred in the images written",
    )
    anonymize.add_argument("--seconds", type=float, default=60.0)
    anonymize.add_argument("--input-size", type=int, choices=(320, 416), default=416)
    anonymize.add_argument("--json", action="store_true")
    anonymize.set_defaults(func=cmd_bench_anonymize)
