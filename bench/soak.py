"""Soak: many live-paced feeds for a long time, sampled every minute.

Runs the node engine (gate, detector, tracker, rules, SQLite store, media) on ``--feeds``
looping, live-paced camera feeds of real footage (vtest.avi at 640x360, bikes.mp4 every
fifth feed) for ``--minutes``, and writes one CSV row a minute: RSS, open files, threads,
child processes, frames analysed/detected and dropped (ingest queue and busy detector),
events and tag segments stored, the spool, and where memory is (the C heap in use, freed but
kept, and mapped in large blocks; Python's allocated blocks). Then it draws the series as
an SVG. Not a test: it prints numbers, and docs/reliability.md records them.

    .venv/bin/python bench/soak.py --feeds 100 --minutes 60 --out soak

A run where the detector did not keep up says so (frames dropped before detection); the
figures that matter here are the slopes of RSS, files and threads, which must stay flat.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import func, select

from feedtag.bench.demo import VTEST_ANALYTICS
from feedtag.bench.footage import sample_h264
from feedtag.bench.heap import c_heap
from feedtag.config import validate_config
from feedtag.runtime.node import NodeEngine
from feedtag.store.engine import create_store_engine
from feedtag.store.schema import events, tag_segments

COLUMNS = [
    "minute", "rss_mb", "open_files", "threads", "children", "cpu_percent", "analysed",
    "detected", "dropped_ingest", "dropped_detector", "events", "segments", "spool_bytes",
    "heap_in_use_mb", "heap_free_mb", "heap_mapped_mb", "python_blocks",
]  # fmt: skip


def heap() -> dict[str, float | None]:
    """The C heap split three ways, so that a rising RSS reads as memory in use (a leak
    somewhere below Python: FFmpeg, ONNX Runtime, SQLite), memory freed but kept by the
    allocator (fragmentation), or large blocks mapped on their own. Empty where the C
    library is not glibc."""
    now = c_heap()
    if now is None:
        return {"heap_in_use_mb": None, "heap_free_mb": None, "heap_mapped_mb": None}
    return {
        "heap_in_use_mb": round(now.in_use / 2**20, 1),
        "heap_free_mb": round(now.free / 2**20, 1),
        "heap_mapped_mb": round(now.mapped / 2**20, 1),
    }


def sample(
    engine: NodeEngine, process: psutil.Process, store: Any, minute: float
) -> dict[str, Any]:
    statuses = engine.statuses()
    vision = engine.consumer.statuses()
    with store.connect() as connection:
        stored_events = connection.execute(select(func.count()).select_from(events)).scalar_one()
        segments = connection.execute(select(func.count()).select_from(tag_segments)).scalar_one()
    writer = engine.store.writer.stats() if engine.store is not None else None
    return {
        "minute": round(minute, 2),
        "rss_mb": round(process.memory_info().rss / 2**20, 1),
        "open_files": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "children": len(process.children(recursive=True)),
        "cpu_percent": round(process.cpu_percent(), 1),
        "analysed": sum(s.counters.frames_analysed for s in statuses),
        "detected": sum(v.detected + v.gated for v in vision),
        "dropped_ingest": sum(sum(s.counters.frames_dropped.values()) for s in statuses),
        "dropped_detector": sum(v.dropped for v in vision),
        "events": stored_events,
        "segments": segments,
        "spool_bytes": writer.spool_bytes if writer is not None else 0,
        **heap(),
        "python_blocks": sys.getallocatedblocks(),
    }


def svg(rows: list[dict[str, Any]], path: Path) -> None:
    """Four small line charts (RSS, open files, threads, drops per minute), hand-drawn: the
    project has no plotting dependency and needs none for four polylines."""
    series = [("rss_mb", "RSS (MB)"), ("open_files", "open files"), ("threads", "threads"),
              ("dropped_detector", "frames dropped before detection (total)")]  # fmt: skip
    width, height, pad = 640, 160, 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height * len(series)}" font-family="sans-serif" font-size="11">'
    ]
    minutes = [float(r["minute"]) for r in rows] or [0.0]
    span = max(minutes[-1], 1.0)
    for index, (key, title) in enumerate(series):
        top = index * height
        values = [float(r[key]) for r in rows] or [0.0]
        low, high = min(values), max(values)
        high = high if high > low else low + 1
        points = " ".join(
            f"{pad + (m / span) * (width - 2 * pad):.1f},"
            f"{top + height - pad - (v - low) / (high - low) * (height - 2 * pad):.1f}"
            for m, v in zip(minutes, values, strict=True)
        )
        parts += [
            f'<text x="{pad}" y="{top + 15}">{title}: {low:g} .. {max(values):g}'
            f" over {span:g} min</text>",
            f'<rect x="{pad}" y="{top + pad}" width="{width - 2 * pad}" '
            f'height="{height - 2 * pad}" fill="none" stroke="#ccc"/>',
            f'<polyline points="{points}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>',
        ]
    parts.append("</svg>")
    path.write_text("\n".join(parts))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--interval-s", type=float, default=60.0)
    parser.add_argument("--analysis-fps", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("soak"))
    args = parser.parse_args()
    clips = {"vtest": sample_h264("vtest", 640, 360), "bikes": sample_h264("bikes", 640, 360)}
    cameras = [
        {"id": f"feed-{index:03d}", "url": clips["bikes" if index % 5 == 4 else "vtest"].name,
         "loop": True, "analysis_fps": args.analysis_fps, "analytics": VTEST_ANALYTICS}
        for index in range(args.feeds)
    ]  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(
        prefix="feedtag-soak-", ignore_cleanup_errors=True
    ) as data_dir:
        config = validate_config(
            {"media_root": str(clips["vtest"].parent), "cameras": cameras,
             "store": {"data_dir": data_dir}}
        )  # fmt: skip
        engine = NodeEngine.from_config(config)
        store = create_store_engine(config.store.resolved_url())
        process = psutil.Process()
        rows: list[dict[str, Any]] = []
        engine.start()
        started = time.monotonic()
        try:
            while (elapsed := time.monotonic() - started) < args.minutes * 60 + 1:
                rows.append(sample(engine, process, store, elapsed / 60))
                print(rows[-1], flush=True)  # noqa: T201
                time.sleep(max(0.0, args.interval_s - (time.monotonic() - started - elapsed)))
        finally:
            stop_started = time.monotonic()
            stopped = engine.stop()
            print(f"stopped in {time.monotonic() - stop_started:.1f} s (clean: {stopped})")  # noqa: T201
    with (args.out / "soak.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    svg(rows, args.out / "soak.svg")
    print(f"wrote {args.out / 'soak.csv'} and {args.out / 'soak.svg'}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
