# ruff: noqa: T201, S311 - a command-line benchmark with seeded synthetic data
"""Store benchmark: events/s written through the batched writer, and search / count p95.

    .venv/bin/python bench/store_bench.py                     # 1M events, SQLite and PostgreSQL
    .venv/bin/python bench/store_bench.py --events 100000 --backends sqlite

PostgreSQL runs on a throwaway local cluster (test settings: fsync off) unless ``--pg-url``
names a server. Synthetic events: 50 cameras, 4 labels, 5 zones, 30 days. Queries: a search
(one camera, one label, one day, first page of 100) and a count (one camera, one day, hourly
buckets), each run ``--queries`` times with random cameras and days.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Iterator

from sqlalchemy import Engine

from feedtag.core import Event, EventKind
from feedtag.store.engine import create_store_engine
from feedtag.store.migrations import upgrade
from feedtag.store.pgcluster import PgCluster, find_pg_bin
from feedtag.store.query import CountQuery, EventQuery, count_events, search_events
from feedtag.store.spool import Spool
from feedtag.store.writer import StoreWriter

T0 = 1_799_971_200.0
DAYS = 30
CAMERAS = [f"cam{n:03d}" for n in range(50)]
LABELS = ["person", "car", "bicycle", "truck"]
ZONES = ["hall", "gate", "road", "yard", "door"]
KINDS = [EventKind.ZONE_ENTER, EventKind.ZONE_EXIT, EventKind.LINE_CROSS, EventKind.DWELL]


def synthetic(count: int, seed: int = 1) -> Iterator[Event]:
    rng = random.Random(seed)
    for number in range(count):
        start = T0 + rng.random() * DAYS * 86400
        yield Event(
            f"bench{number:09d}",
            rng.choice(CAMERAS),
            rng.choice(KINDS),
            "rule",
            start,
            start + rng.random() * 30,
            rng.choice(LABELS),
            rng.choice(ZONES),
            (rng.randrange(1000),),
            {"direction": "in"},
        )


def write(engine: Engine, count: int) -> float:
    """Events per second through the writer, from the first put to the last commit."""
    with tempfile.TemporaryDirectory() as spool_dir:
        writer = StoreWriter(engine, Spool(spool_dir), batch_size=2000, max_wait_s=0.1)
        started = time.perf_counter()
        with writer:
            for event in synthetic(count):
                writer.put(event, timeout=60)
            writer.flush(3600)
        seconds = time.perf_counter() - started
    stats = writer.stats()
    if stats.spooled or stats.failed:
        raise SystemExit(f"the benchmark lost writes: {stats}")
    return count / seconds


def p95_ms(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18] * 1000


def time_queries(engine: Engine, queries: int) -> tuple[float, float]:
    rng = random.Random(2)
    search, count = [], []
    for _ in range(queries):
        camera, day = rng.choice(CAMERAS), T0 + rng.randrange(DAYS) * 86400
        started = time.perf_counter()
        search_events(engine, EventQuery([camera], day, day + 86400, labels=[rng.choice(LABELS)]))
        search.append(time.perf_counter() - started)
        started = time.perf_counter()
        count_events(engine, CountQuery(day, day + 86400, 3600, [camera]))
        count.append(time.perf_counter() - started)
    return p95_ms(search), p95_ms(count)


def run(name: str, url: str, events: int, queries: int) -> tuple[str, float, float, float]:
    engine = create_store_engine(url)
    upgrade(engine)
    rate = write(engine, events)
    search_p95, count_p95 = time_queries(engine, queries)
    engine.dispose()
    return name, rate, search_p95, count_p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", help="an empty PostgreSQL database (default: throwaway)")
    args = parser.parse_args()
    rows = []
    cluster = None
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                url = f"sqlite:///{folder}/bench.db"
            elif args.pg_url:
                url = args.pg_url
            else:
                bin_dir = find_pg_bin()
                if bin_dir is None:
                    print("postgresql: binaries not found, skipped")
                    continue
                cluster = PgCluster(bin_dir)
                cluster.start()
                url = cluster.create_database("bench")
            rows.append(run(backend, url, args.events, args.queries))
            print(f"{backend}: done", flush=True)
    if cluster is not None:
        cluster.destroy()
    print(f"\n{args.events} events, {args.queries} queries each")
    print(f"{'backend':<12}{'events/s written':>18}{'search p95 ms':>16}{'count p95 ms':>15}")
    for name, rate, search_p95, count_p95 in rows:
        print(f"{name:<12}{rate:>18,.0f}{search_p95:>16.1f}{count_p95:>15.1f}")


if __name__ == "__main__":
    main()
