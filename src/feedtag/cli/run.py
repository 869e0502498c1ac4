"""``feedtag run`` and ``feedtag demo``: thin calls of the composition root
(:class:`feedtag.runtime.app.NodeApp`), and the status table they print."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feedtag.cli.common import EXIT_OK, positive, progress
from feedtag.config import FeedtagConfig, load_config, validate_config

if TYPE_CHECKING:
    from feedtag.runtime.app import ApiParts, RayOptions
    from feedtag.runtime.control import EngineSnapshot

log = logging.getLogger("feedtag")


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    ray = None
    if args.engine == "ray":
        from feedtag.runtime.app import RayOptions

        ray = RayOptions(address=args.address, shards=args.shards, shard_cpus=args.shard_cpus)
    return run_engine(config, seconds=args.seconds, as_json=args.json, ray=ray)


def cmd_demo(args: argparse.Namespace) -> int:
    from feedtag.bench.demo import LoopingRtspServer, demo_cameras
    from feedtag.bench.footage import bikes_path, cache_dir, sample_h264, vtest_path

    def show_encoding(done: int, total: int) -> None:
        print(f"\r  encoding {done}/{total} frames", end="", file=sys.stderr, flush=True)

    print("preparing sample footage (encoded once, then cached) ...", file=sys.stderr)
    clips = {
        "vtest-640": sample_h264("vtest", 640, 360, progress=show_encoding),
        "bikes-640": sample_h264("bikes", 640, 360, progress=show_encoding),
        "vtest-1280": sample_h264("vtest", 1280, 720, progress=show_encoding),
    }
    print(file=sys.stderr)
    media_root = clips["vtest-640"].parent
    with contextlib.ExitStack() as stack:
        server = None
        if not args.files and LoopingRtspServer.available():
            server = stack.enter_context(LoopingRtspServer(clips))
        cameras = demo_cameras(clips, server)
        # A fresh random admin token per demo: printed once, kept nowhere.
        admin_token = secrets.token_urlsafe(32)
        api = {"enabled": True, "admin_token": admin_token}
        config = validate_config({"media_root": str(media_root), "cameras": cameras, "api": api})
        how = f"served by a local RTSP server on port {server.port}" if server else "files"
        print(f"feedtag demo: {len(cameras)} live looping feeds of real footage ({how})")
        print(f"  footage:  {vtest_path()} and {bikes_path()}, as H.264 in {media_root}")
        print(f"  cache:    {cache_dir()}")
        print("  each analysed frame is gated, detected (YOLOv3-tiny, built offline on first use)")
        print("  and tracked with anonymous per-camera ids; status every 2 s; Ctrl-C stops.")
        data = config.store.resolved_data_dir()
        print(f"  data:     {data} (feedtag.db, media/thumbnails, media/snapshots; people covered)")
        print("  look:     feedtag events search --since 10m | feedtag events tags --label person")

        def show_dashboard(url: str) -> None:
            print(f"  dashboard: {url}/  (sign in with the admin token below)")
            print(f"  admin token (this run only): {admin_token}", flush=True)

        result = run_engine(
            config, seconds=args.seconds, as_json=False, on_api=show_dashboard, fallback_port=True
        )
        print(f"\nevents, tags and media are in {data}: try `feedtag events search --since 1h`")
        return result


def _before_detector(config: FeedtagConfig) -> None:
    from feedtag.vision.registry import default_models_dir

    if config.detector.model == "default":
        folder = config.detector.models_dir or default_models_dir()
        print(
            f"loading the default detector from {folder} (built on first use, about a minute) ...",
            file=sys.stderr,
            flush=True,
        )


def _api_parts() -> ApiParts:
    """The API layer for the composition root (``runtime`` does not import ``api``)."""
    from feedtag.api.app import (
        admin_credential_present,
        close_app,
        create_app,
        missing_admin_credential,
    )
    from feedtag.runtime.app import ApiParts

    return ApiParts(
        credential_present=admin_credential_present,
        missing_credential=missing_admin_credential,
        create=lambda config, engine, store, catalog: create_app(
            config, engine, store=store, catalog=catalog
        ),
        close=close_app,
    )


def _show_api(url: str) -> None:
    print(f"API and dashboard: {url}/", file=sys.stderr, flush=True)


def run_engine(
    config: FeedtagConfig,
    *,
    seconds: float | None,
    as_json: bool,
    on_api: Callable[[str], None] = _show_api,
    fallback_port: bool = False,
    ray: RayOptions | None = None,
) -> int:
    """Run a node (:class:`~feedtag.runtime.app.NodeApp`) until a signal or ``seconds``,
    printing its status every ``engine.status_interval_s``."""
    from feedtag.runtime.app import NodeApp

    def show(snapshot: EngineSnapshot) -> None:
        _print_statuses(snapshot, as_json)
        _print_event_counts(snapshot, as_json)

    app = NodeApp(
        config, api=_api_parts(), on_api=on_api, fallback_port=fallback_port, progress=progress,
        before_detector=lambda: _before_detector(config), ray=ray,
    )  # fmt: skip
    last = app.run(seconds, show)
    if app.last_stop is not None:
        took, clean = app.last_stop.seconds, app.last_stop.clean
        log.info("stopped in %.1f s%s", took, "" if clean else " (some threads left)")
    _print_statuses(last, as_json)
    return EXIT_OK


def _print_event_counts(snapshot: EngineSnapshot, as_json: bool) -> None:
    stats = snapshot.store
    if stats is None or as_json:  # no store writer: detection is off, there are no events
        return
    health = "reachable" if stats.available else "UNREACHABLE (spooling to disk)"
    print(f"{'':10}store {health}: {stats.written} written, {stats.spool_records} spooled "
          f"({stats.spool_bytes // 1024} KiB), {stats.dropped} dropped")  # fmt: skip
    stage = snapshot.vision_stage
    if stage is not None:
        hung = f" (last: {', '.join(stage.hung_cameras)})" if stage.hung_cameras else ""
        print(f"{'':10}post-processing queue {stage.postprocess_depth}/"
              f"{stage.postprocess_capacity}, {stage.postprocess_dropped} dropped; detector "
              f"hangs {stage.detector_hangs}{hung}, workers {stage.detector_workers}")  # fmt: skip
    for camera in snapshot.cameras:
        if camera.event_counts:
            summary = ", ".join(
                f"{kind} {count}" for kind, count in sorted(camera.event_counts.items())
            )
            print(f"{'':10}events {camera.camera_id}: {summary}")
    sys.stdout.flush()


def _print_statuses(snapshot: EngineSnapshot, as_json: bool) -> None:
    if as_json:
        cameras = []
        for camera in snapshot.cameras:
            record = camera.ingest.to_dict()
            record["vision"] = None if camera.vision is None else camera.vision.to_dict()
            cameras.append(record)
        print(json.dumps({"time": time.time(), "cameras": cameras}), flush=True)
        return
    header = f"{'camera':<16}{'state':<9}{'mode':<10}{'keyint':>7}{'dec/s':>6}{'ana/s':>6}"
    header += f"{'drops':>6}{'recon':>6}{'gated':>7}{'det ms':>7}  objects / reason"
    print(f"\n{time.strftime('%H:%M:%S')}  {header}")
    for camera in snapshot.cameras:
        s, seen = camera.ingest, camera.vision
        keyint = f"{s.keyframe_interval_s:.2f}" if s.keyframe_interval_s is not None else "-"
        drops = sum(s.counters.frames_dropped.values())
        gated = f"{seen.gate_ratio:.0%}" if seen is not None and seen.frames else "-"
        latency = f"{seen.latency_ms:.0f}" if seen is not None and seen.latency_ms else "-"
        detail = s.reason
        if seen is not None and s.state.value == "online":
            objects = " ".join(f"{label}:{count}" for label, count in sorted(seen.counts.items()))
            detail = f"{objects or 'nothing'}; {seen.tracks} track(s)"
        print(
            f"{'':10}{s.camera_id[:15]:<16}{s.state.value:<9}{s.mode.value:<10}{keyint:>7}"
            f"{s.decoded_fps:>6.1f}{s.analysed_fps:>6.1f}{drops:>6}{s.counters.reconnects:>6}"
            f"{gated:>7}{latency:>7}  {detail[:70]}"
        )
    sys.stdout.flush()


def add_run_commands(commands: Any) -> None:
    run = commands.add_parser("run", help="run every configured camera")
    run.add_argument("config", type=Path)
    run.add_argument("--seconds", type=float, default=None, help="stop after this long")
    run.add_argument("--json", action="store_true", help="status as JSON lines")
    run.add_argument(
        "--engine", choices=("local", "ray"), default="local",
        help="local: one process; ray: shards on a Ray cluster (needs PostgreSQL; docs/cluster.md)",
    )  # fmt: skip
    run.add_argument(
        "--address", default=None, help="ray: the cluster to join (default: a local Ray)"
    )
    run.add_argument(
        "--shards", type=positive(int), default=None,
        help="ray: how many shard actors (default: one per engine.cores_per_shard of the "
        "cluster's cores)",
    )  # fmt: skip
    run.add_argument(
        "--shard-cpus", type=positive(float), default=None,
        help="ray: cores per shard (default: engine.cores_per_shard, 1)",
    )  # fmt: skip
    run.set_defaults(func=cmd_run)

    demo = commands.add_parser("demo", help="run live-paced feeds of real sample footage")
    demo.add_argument("--seconds", type=float, default=None, help="stop after this long")
    demo.add_argument("--files", action="store_true", help="read files, not the RTSP server")
    demo.set_defaults(func=cmd_demo)
