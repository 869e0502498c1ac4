"""The ``feedtag`` command.

Exit codes: 0 success, 1 runtime failure, 2 bad input (config, URL, arguments).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import signal
import stat
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

from feedtag import __version__
from feedtag.config import (
    CameraConfig,
    FeedtagConfig,
    config_json_schema,
    load_config,
    validate_config,
)
from feedtag.core import CameraStatus, EventKind, VisionStatus
from feedtag.errors import ConfigError, FeedtagError, SourceError
from feedtag.urls import RedactingFilter, redact, scheme_of, url_text_problem

if TYPE_CHECKING:
    from feedtag.runtime.detect import FrameResult

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
    # Alembic announces every plugin and migration step at INFO: noise in a status screen.
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)


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

    raw, media_root = args.url, args.media_root
    if media_root is None and _names_a_file(raw):
        problem = _file_problem(raw)
        if problem is not None:
            print(f"error: {_as_given(raw)}: {problem}", file=sys.stderr)
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


def cmd_models_build(args: argparse.Namespace) -> int:
    from feedtag.vision.models import build_default_model, default_models_dir

    folder = args.models_dir or default_models_dir()
    print(f"building the default detector into {folder} (offline) ...", file=sys.stderr)
    started = time.monotonic()
    info = build_default_model(folder, progress=_progress)
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
    is_file = _names_a_file(target)
    camera: dict[str, Any] = {"id": "detect", "url": target, "analysis_fps": args.analysis_fps}
    data: dict[str, Any] = {"cameras": [camera]}
    if is_file:
        problem = _file_problem(target)
        if problem is not None:
            print(f"error: {_as_given(target)}: {problem}", file=sys.stderr)
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
            print(f"error: {_as_given(target)}: {problem}", file=sys.stderr)
            return EXIT_USAGE
    # Imported only now: numpy, PyAV and ONNX Runtime take seconds; a typo should not.
    from feedtag.runtime.detect import detect_stream, frames_of
    from feedtag.runtime.detection import build_detector
    from feedtag.vision.gate import ChangeGate

    settings = config.detector
    if settings.model == "default":
        print("loading the default detector (built on first use) ...", file=sys.stderr)
    detector = build_detector(settings, _progress)
    gate = None if args.no_gate else ChangeGate()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    results = detect_stream(
        frames_of(config.cameras[0], config, stop),
        detector,
        gate=gate,
        track_lost_s=settings.track_lost_s,
        max_frames=args.max_frames,
        save_dir=args.save_annotated,
    )
    try:
        _print_results(results, args.json)
    except SourceError as exc:
        if not is_file:
            raise
        print(f"error: {_as_given(target)}: {exc.message}", file=sys.stderr)  # a broken file
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


def _as_given(path: str) -> str:
    """A path as the operator typed it; quoted when it holds what a terminal would act on."""
    return path if path.isprintable() else repr(path)


def _names_a_file(target: str) -> bool:
    """Whether ``target`` is a local path to check and resolve here; a URL, or text that
    cannot be one ("-i x"), is left to :class:`~feedtag.urls.CameraUrl` to judge."""
    return scheme_of(target) is None and url_text_problem(target) is None


def _file_problem(path: str) -> str | None:
    """Why the local file ``path`` cannot be read, or None. Checked before anything is
    opened: a missing file used to be retried like an offline camera, forever."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return exc.strerror or "cannot be read"
    if stat.S_ISDIR(mode):
        return "Is a directory"
    if not stat.S_ISREG(mode):
        return "Not a regular file"
    if not os.access(path, os.R_OK):
        return "Permission denied"
    return None


def _open_problem(camera: CameraConfig) -> str | None:
    """Why FFmpeg cannot open ``camera``'s file (not a video, no video stream), or None."""
    from feedtag.ingest.source import OpenOptions, open_source

    options = OpenOptions(camera.open_timeout_s, camera.read_timeout_s, camera.rtsp_transport)
    try:
        with open_source(camera.url, options):
            return None
    except SourceError as exc:
        return exc.message


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
        f"{'backend':<16}{'precision':<10}{'size':>5}{'batch':>6}{'ms/frame':>10}"
        f"{'frames/s/core':>15}"
    )
    for row in rows:
        print(
            f"{row.backend:<16}{row.precision:<10}{row.input_size:>5}{row.batch:>6}"
            f"{row.ms_per_frame:>10}{row.frames_per_s_per_core:>15}"
        )
    return EXIT_OK


def _store_engine(args: argparse.Namespace) -> Any:
    """The store ``--config`` names (else the default one), migrated to the current schema."""
    from feedtag.config.models import StoreConfig
    from feedtag.runtime.queries import open_engine

    settings = StoreConfig() if args.config is None else load_config(args.config).store
    return open_engine(settings)


def _times(args: argparse.Namespace) -> tuple[float | None, float | None]:
    from feedtag.runtime.queries import parse_time

    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except ValueError as exc:
        raise ConfigError([("--since/--until", str(exc))], "arguments") from None
    return since, until


def _print_rows(rows: list[dict[str, Any]], columns: list[str]) -> None:
    print("  ".join(f"{c:<20}" for c in columns))
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            if isinstance(value, float) and column.endswith(("_at", "start")):
                value = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
            cells.append(f"{'-' if value is None else str(value)[:20]:<20}")
        print("  ".join(cells))


def cmd_events_search(args: argparse.Namespace) -> int:
    from feedtag.runtime.queries import events_page

    since, until = _times(args)
    engine = _store_engine(args)
    try:
        page = events_page(
            engine, cameras=args.camera, kinds=args.kind, labels=args.label, zones=args.zone,
            since=since, until=until, limit=args.limit, cursor=args.cursor,
        )  # fmt: skip
    except ValueError as exc:
        raise ConfigError([("arguments", str(exc))], "arguments") from None
    if args.json:
        print(json.dumps(page))
    else:
        _print_rows(
            page["items"], ["started_at", "camera_id", "kind", "label", "zone", "track_ids"]
        )
        if page["next_cursor"]:
            print(f"more: --cursor {page['next_cursor']}")
    return EXIT_OK


def cmd_events_tags(args: argparse.Namespace) -> int:
    from feedtag.runtime.queries import tags_page

    since, until = _times(args)
    engine = _store_engine(args)
    page = tags_page(
        engine, label=args.label, min_count=args.min_count, cameras=args.camera, zone=args.zone,
        since=since, until=until, limit=args.limit, cursor=args.cursor,
    )  # fmt: skip
    if args.json:
        print(json.dumps(page))
    else:
        _print_rows(
            page["items"], ["started_at", "ended_at", "camera_id", "label", "zone", "max_count"]
        )
    return EXIT_OK


def cmd_events_stats(args: argparse.Namespace) -> int:
    from feedtag.runtime.queries import event_counts, parse_duration

    since, until = _times(args)
    try:
        bucket_s = parse_duration(args.bucket)
    except ValueError as exc:
        raise ConfigError([("--bucket", str(exc))], "arguments") from None
    engine = _store_engine(args)
    rows = event_counts(
        engine, since=since if since is not None else time.time() - 86400,
        until=until if until is not None else time.time() + 1, bucket_s=bucket_s,
        cameras=args.camera, kinds=args.kind, labels=args.label,
    )  # fmt: skip
    if args.json:
        print(json.dumps(rows))
    else:
        _print_rows(rows, ["bucket_start", "camera_id", "label", "count"])
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from feedtag.bench.demo import LoopingRtspServer, demo_cameras
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


def cmd_tokens_create(args: argparse.Namespace) -> int:
    from feedtag.store.tokens import Role, create_token

    cameras = args.camera or None
    token, record = create_token(_store_engine(args), args.name, Role(args.role), cameras)
    if args.json:
        print(json.dumps({**record.to_dict(), "token": token}))
        return EXIT_OK
    scope = "every camera" if cameras is None else ", ".join(sorted(cameras))
    print(f"created {record.role.value} token {record.token_id} ({record.name!r}, {scope}).")
    print("The token is shown this once; it is stored only as a hash:", file=sys.stderr)
    print(token)
    return EXIT_OK


def cmd_tokens_list(args: argparse.Namespace) -> int:
    from feedtag.store.tokens import list_tokens

    records = list_tokens(_store_engine(args), include_revoked=args.all)
    if args.json:
        print(json.dumps([record.to_dict() for record in records]))
        return EXIT_OK
    rows = []
    for record in records:
        row = record.to_dict()
        row["cameras"] = "all" if record.cameras is None else ",".join(sorted(record.cameras))
        rows.append(row)
    _print_rows(rows, ["token_id", "name", "role", "cameras", "created_at", "revoked_at"])
    return EXIT_OK


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    from feedtag.store.tokens import revoke_token

    if not revoke_token(_store_engine(args), args.token_id):
        raise ConfigError([("token_id", f"no live token {args.token_id!r}")], "arguments")
    print(f"revoked {args.token_id}; its sessions end at their next request")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from feedtag.store.audit import AuditQuery, search_audit

    since, until = _times(args)
    who = (args.principal,) if args.principal else ()
    query = AuditQuery(who, args.action, args.camera, since, until, args.limit, args.cursor)
    page = search_audit(_store_engine(args), query)
    items = [entry.to_dict() for entry in page.items]
    if args.json:
        print(json.dumps({"items": items, "next_cursor": page.next_cursor}))
        return EXIT_OK
    _print_rows(items, ["at", "token_name", "role", "action", "camera_id", "object_id", "client"])
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}")
    return EXIT_OK


# -- helpers ----------------------------------------------------------------------------


def _progress(step: str, done: int, total: int) -> None:
    print(
        f"\r  {step}: {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True
    )


def _camera_catalog(config: FeedtagConfig, store: Any) -> Any:
    """The config file's cameras with the changes stored through the API laid over them
    (read from ``store``, else from the configured store); the file's alone, with a warning,
    when the store cannot be read (changes through the API are still stored, or refused)."""
    from sqlalchemy.exc import SQLAlchemyError

    from feedtag.errors import StoreError
    from feedtag.runtime.catalog import CameraCatalog
    from feedtag.runtime.queries import open_engine
    from feedtag.store.engine import store_error

    try:
        return CameraCatalog(config, store if store is not None else open_engine(config.store))
    except (StoreError, SQLAlchemyError, OSError) as error:
        reason = error if isinstance(error, StoreError) else store_error(error, "reading")
        log.warning("cameras stored through the API are not applied: %s", reason)
        return CameraCatalog(config, store, read_stored=False)


def _load_engine(config: FeedtagConfig, cameras: Any = None) -> Any:
    from feedtag.runtime.node import NodeEngine
    from feedtag.vision.models import default_models_dir

    if config.detector.enabled and config.detector.model == "default":
        folder = config.detector.models_dir or default_models_dir()
        print(
            f"loading the default detector from {folder} (built on first use, about a minute) ...",
            file=sys.stderr,
            flush=True,
        )
    return NodeEngine.from_config(config, _progress, cameras)


def _api_store(config: FeedtagConfig) -> Any:
    """The store engine the API will read when ``config.api`` says to serve it, else None.

    Checked before anything starts: the server never runs without an admin credential, and
    with ``api.enabled: true`` the missing credential is a :class:`ConfigError`."""
    if config.api.enabled is False:
        return None
    from feedtag.api.app import admin_credential_present, missing_admin_credential
    from feedtag.runtime.queries import open_engine

    store = open_engine(config.store)
    if admin_credential_present(config, store):
        return store
    if config.api.enabled:
        raise missing_admin_credential()
    log.info(
        "API not served: no admin credential (set api.admin_token, or run "
        "`feedtag tokens create --role admin`)"
    )
    return None


def _serve_api(
    config: FeedtagConfig, engine: Any, store: Any, *, fallback_port: bool, catalog: Any = None
) -> Any:
    """Serve the API and dashboard beside ``engine``; a taken port falls back to a free one
    when ``fallback_port`` (the demo)."""
    from feedtag.api.app import close_app, create_app
    from feedtag.runtime.serve import ApiServer, ServeError

    if config.api.host not in ("127.0.0.1", "::1", "localhost"):
        log.warning(
            "the API listens on %s without TLS: put a TLS proxy in front of it, tokens and "
            "session cookies travel in clear text otherwise",
            config.api.host,
        )
    app = create_app(config, engine, store=store, catalog=catalog)
    server = ApiServer(app, config.api.host, config.api.port, before_stop=lambda: close_app(app))
    try:
        server.start()
    except ServeError:
        if not fallback_port:
            raise
        server = ApiServer(app, config.api.host, 0, before_stop=lambda: close_app(app))
        server.start()
    return server


def run_engine(
    config: FeedtagConfig,
    *,
    seconds: float | None,
    as_json: bool,
    on_api: Any = None,
    fallback_port: bool = False,
) -> int:
    store = _api_store(config)
    catalog = _camera_catalog(config, store)
    engine = _load_engine(config, catalog.runnable())
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    server = None
    if store is not None:
        server = _serve_api(config, engine, store, fallback_port=fallback_port, catalog=catalog)
    if server is not None and on_api is not None:
        on_api(server.url)
    elif server is not None:
        print(f"API and dashboard: {server.url}/", file=sys.stderr, flush=True)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    engine.start()
    started = time.monotonic()
    try:
        while not stop.wait(config.engine.status_interval_s):
            _print_statuses(engine.statuses(), engine.vision_statuses(), as_json)
            _print_event_counts(engine, as_json)
            if seconds is not None and time.monotonic() - started >= seconds:
                break
    finally:
        began = time.monotonic()
        if server is not None:
            server.stop()
        clean = engine.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info(
            "stopped in %.1f s%s", time.monotonic() - began, "" if clean else " (some threads left)"
        )
    _print_statuses(engine.statuses(), engine.vision_statuses(), as_json)
    return EXIT_OK


def _print_event_counts(engine: Any, as_json: bool) -> None:
    if engine.events is None or as_json:
        return
    if engine.store is not None:
        stats = engine.store.writer.stats()
        health = "reachable" if stats.available else "UNREACHABLE (spooling to disk)"
        print(f"{'':10}store {health}: {stats.written} written, {stats.spool_records} spooled "
              f"({stats.spool_bytes // 1024} KiB), {stats.dropped} dropped")  # fmt: skip
    for camera_id, counts in engine.events.event_counts().items():
        if counts:
            summary = ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items()))
            print(f"{'':10}events {camera_id}: {summary}")
    sys.stdout.flush()


def _print_statuses(
    statuses: list[CameraStatus], vision: dict[str, VisionStatus], as_json: bool
) -> None:
    if as_json:
        cameras = []
        for status in statuses:
            record = status.to_dict()
            seen = vision.get(status.camera_id)
            record["vision"] = None if seen is None else seen.to_dict()
            cameras.append(record)
        print(json.dumps({"time": time.time(), "cameras": cameras}), flush=True)
        return
    header = f"{'camera':<16}{'state':<9}{'mode':<10}{'keyint':>7}{'dec/s':>6}{'ana/s':>6}"
    header += f"{'drops':>6}{'recon':>6}{'gated':>7}{'det ms':>7}  objects / reason"
    print(f"\n{time.strftime('%H:%M:%S')}  {header}")
    for s in statuses:
        keyint = f"{s.keyframe_interval_s:.2f}" if s.keyframe_interval_s is not None else "-"
        drops = sum(s.counters.frames_dropped.values())
        seen = vision.get(s.camera_id)
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


def _add_vision_commands(commands: Any) -> None:
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
    detect.add_argument("--max-frames", type=_positive(int), default=None)
    detect.add_argument("--analysis-fps", type=_positive(float), default=1.0)
    detect.add_argument("--no-gate", action="store_true", help="run the detector on every frame")
    detect.add_argument("--model", type=Path, default=None, help="a user ONNX model")
    detect.add_argument(
        "--layout",
        default="yolo-decoded",
        choices=["yolo-decoded", "yolov8", "yolox", "yolox-decoded"],
    )
    detect.add_argument("--class-names", default=None, help="comma-separated, for --model")
    detect.set_defaults(func=cmd_detect)


def _add_event_commands(commands: Any) -> None:
    kinds = [kind.value for kind in EventKind]
    events = commands.add_parser("events", help="search events and tags, count events")
    actions = events.add_subparsers(dest="events", required=True, metavar="ACTION")
    search = actions.add_parser("search", help="events, newest first")
    tags = actions.add_parser("tags", help="when was a label visible (at least N at once)")
    stats = actions.add_parser("stats", help="event counts per camera, label and time bucket")
    for parser in (search, tags, stats):
        parser.add_argument("--config", type=Path, default=None, help="read the store from it")
        parser.add_argument("--camera", action="append", default=[], help="repeatable")
        parser.add_argument("--since", default=None, help="ISO time or a duration like 2h")
        parser.add_argument("--until", default=None, help="ISO time or a duration like 15m")
        parser.add_argument("--json", action="store_true")
    for parser in (search, stats):
        parser.add_argument("--kind", action="append", default=[], choices=kinds)
        parser.add_argument("--label", action="append", default=[])
    for parser in (search, tags):
        parser.add_argument("--limit", type=_positive(int), default=50)
        parser.add_argument("--cursor", default=None, help="from the previous page")
    search.add_argument("--zone", action="append", default=[])
    search.set_defaults(func=cmd_events_search)
    tags.add_argument("--label", required=True)
    tags.add_argument("--min-count", type=_positive(int), default=1)
    tags.add_argument("--zone", default=None)
    tags.set_defaults(func=cmd_events_tags)
    stats.add_argument("--bucket", default="1h", help="bucket size, e.g. 15m, 1h, 1d")
    stats.set_defaults(func=cmd_events_stats)


def _add_access_commands(commands: Any) -> None:
    tokens = commands.add_parser("tokens", help="API tokens: create, list, revoke")
    actions = tokens.add_subparsers(dest="tokens", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a token (shown once, stored hashed)")
    create.add_argument("--name", required=True, help="who or what uses it")
    create.add_argument("--role", choices=["viewer", "operator", "admin"], default="viewer")
    create.add_argument(
        "--camera", action="append", default=[], help="restrict to this camera (repeatable)"
    )
    create.set_defaults(func=cmd_tokens_create)
    listing = actions.add_parser("list", help="tokens (never the tokens themselves)")
    listing.add_argument("--all", action="store_true", help="include revoked tokens")
    listing.set_defaults(func=cmd_tokens_list)
    revoke = actions.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id")
    revoke.set_defaults(func=cmd_tokens_revoke)
    for parser in (create, listing, revoke):
        parser.add_argument("--config", type=Path, default=None, help="read the store from it")
        parser.add_argument("--json", action="store_true")

    audit = commands.add_parser("audit", help="who read which events and media, when")
    audit.add_argument("--config", type=Path, default=None, help="read the store from it")
    audit.add_argument("--since", default=None, help="ISO time or a duration like 2h")
    audit.add_argument("--until", default=None, help="ISO time or a duration like 15m")
    audit.add_argument("--principal", default=None, help="a token id or name")
    audit.add_argument("--action", action="append", default=[], help="e.g. events.get")
    audit.add_argument("--camera", action="append", default=[])
    audit.add_argument("--limit", type=_positive(int), default=50)
    audit.add_argument("--cursor", default=None)
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(func=cmd_audit)


def _add_bench_commands(commands: Any) -> None:
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
    ingest.add_argument(
        "--pipeline",
        action="store_true",
        help="include gate, detector and tracker (the whole analysis path)",
    )
    ingest.set_defaults(func=cmd_bench_ingest)
    detect = bench_kinds.add_parser("detect", help="detector cost per backend, precision, size")
    detect.add_argument("--seconds", type=_positive(float), default=5.0, help="per measurement")
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
    demo.add_argument("--files", action="store_true", help="read files, not the RTSP server")
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

    _add_vision_commands(commands)
    _add_event_commands(commands)
    _add_access_commands(commands)
    _add_bench_commands(commands)
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
