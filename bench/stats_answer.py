# ruff: noqa: T201, S311 - a command-line benchmark with seeded synthetic data
"""What the dashboard's charts ask of ``GET /api/v1/stats`` with many cameras: a day in
half-hour buckets (the *24 h* range), per camera (``by=camera``, the default) and per label
with the 25 cameras with the most events (``by=label``, what the charts ask):

    PYTHONPATH=src python bench/stats_answer.py [--cameras 1000,10000] [--per-camera 24]

Each camera gets ``--per-camera`` synthetic events spread over the day (4 labels), written to
a throwaway SQLite store through the batched writer. For each answer: the store's time to
count (best of three), the rows and the JSON size of what the route returns.

It prints numbers; it is not a test. docs/capacity.md has the figures of this machine.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from feedtag.core import Event, EventKind
from feedtag.store.engine import create_store_engine
from feedtag.store.migrations import upgrade
from feedtag.store.query import CountQuery, count_events, count_events_by_kind, top_cameras
from feedtag.store.spool import Spool
from feedtag.store.writer import StoreWriter

T0 = 1_799_971_200.0
DAY = 86_400.0
LABELS = ["person", "car", "bicycle", "truck"]
#: the charts' bucket for the 24 h range (web/charts.js) and their camera rows
BUCKET_S = 1800.0
TOP = 25


def synthetic(cameras: int, per_camera: int, seed: int = 1) -> Iterator[Event]:
    rng = random.Random(seed)
    for camera in range(cameras):
        for number in range(per_camera):
            start = T0 + rng.random() * DAY
            yield Event(
                f"c{camera:06d}e{number:04d}", f"camera-{camera:06d}", EventKind.ZONE_ENTER,
                "rule", start, start + 5, rng.choice(LABELS), "hall", (number,), {},
            )  # fmt: skip


def fill(engine: Engine, cameras: int, per_camera: int) -> None:
    with tempfile.TemporaryDirectory() as spool_dir:
        writer = StoreWriter(engine, Spool(spool_dir), batch_size=2000, max_wait_s=0.1)
        with writer:
            for event in synthetic(cameras, per_camera):
                writer.put(event, timeout=60)
            writer.flush(3600)


def best_of_three(answer: Callable[[], dict[str, Any]]) -> tuple[float, dict[str, Any]]:
    best, made = float("inf"), {}
    for _ in range(3):
        started = time.perf_counter()
        made = answer()
        best = min(best, time.perf_counter() - started)
    return best, made


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--cameras", default="1000,10000")
    parser.add_argument("--per-camera", type=int, default=24)
    args = parser.parse_args()
    query = CountQuery(T0, T0 + DAY, BUCKET_S)
    print(f"{'cameras':>8} {'events':>9} {'by':<7}{'store s':>9}{'rows':>9}{'KiB':>9}")
    for cameras in (int(c) for c in args.cameras.split(",")):
        with tempfile.TemporaryDirectory() as folder:
            engine = create_store_engine(f"sqlite:///{Path(folder) / 'feedtag.db'}")
            upgrade(engine)
            fill(engine, cameras, args.per_camera)

            def by_camera(engine: Engine = engine) -> dict[str, Any]:
                buckets = count_events(engine, query)
                return {"buckets": [b.to_dict() for b in buckets],
                        "by_kind": count_events_by_kind(engine, query)}  # fmt: skip

            def by_label(engine: Engine = engine) -> dict[str, Any]:
                buckets = count_events(engine, query, per_camera=False)
                ranked = top_cameras(engine, query, TOP)
                return {"buckets": [b.to_dict() for b in buckets],
                        "by_kind": count_events_by_kind(engine, query),
                        "top_cameras": ranked.counts, "cameras": ranked.cameras}  # fmt: skip

            for name, answer in (("camera", by_camera), ("label", by_label)):
                seconds, made = best_of_three(answer)
                rows = len(made["buckets"]) + len(made.get("top_cameras", []))
                size = len(json.dumps(made).encode()) // 1024
                events = cameras * args.per_camera
                print(f"{cameras:>8} {events:>9} {name:<7}{seconds:>9.3f}{rows:>9}{size:>9}",
                      flush=True)  # fmt: skip
            engine.dispose()


if __name__ == "__main__":
    main()
