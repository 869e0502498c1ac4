# ruff: noqa: T201 - a command-line benchmark
"""What one live feed costs the store and the network: rows and transactions per second,
bytes of events and of status, snapshot images, with real footage and the real detector.

    PYTHONPATH=src python bench/feed_writes.py --feeds 4 --seconds 60

The node (``NodeApp``, the composition root ``feedtag run`` uses) plays the H.264 sample
clips (640x360, a keyframe every second, looped at their own pace; half vtest.avi, half
bikes.mp4) with the demo's zones, lines and rules, over a throwaway PostgreSQL (as the Ray
engine's shards write to it). After ``--warmup`` seconds it measures for ``--seconds``:

- store writes: PostgreSQL's own counters (``pg_stat_database.xact_commit``,
  ``pg_stat_user_tables`` rows inserted and updated per table), read again after the node
  stopped so that every backend has reported;
- event bytes: the rows the window stored (events by ``stored_at``, tag segments by
  ``started_at``) as JSON, the form the live stream and the API send; and the tables' size on
  disk (with indexes) per row;
- status bytes: one camera's snapshot as JSON (what a shard sends per camera each time the
  API, the dashboard or ``/metrics`` asks);
- snapshot images written (anonymized JPEG, kept on the shard's machine);
- the node process's CPU per feed-second (a cross-check of docs/performance.md).

It prints numbers; it is not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import Engine, Table, func, select, text

from feedtag.bench.demo import sample_feeds
from feedtag.config import validate_config
from feedtag.runtime.app import NodeApp
from feedtag.runtime.database import open_database
from feedtag.store.pgcluster import PgCluster, find_pg_bin
from feedtag.store.schema import events, tag_segments

#: rows each table is filled to (copies of the stored rows) before its size is measured
DISK_SAMPLE_ROWS = 200_000
TABLES = ("events", "tag_segments", "alert_outbox", "audit_log", "camera_records")


def node_config(feeds: int, data_dir: Path, url: str) -> Any:
    media_root, cameras = sample_feeds(feeds)
    data = {
        "media_root": str(media_root),
        "store": {"data_dir": str(data_dir), "url": url},
        "cameras": cameras,
        "api": {"enabled": False},
    }
    return validate_config(data, source="feed writes bench")


def pg_counters(database: Engine) -> dict[str, int]:
    """Commits of the database and rows inserted / updated per table, as PostgreSQL counts."""
    with database.connect() as connection:
        found = {
            "commits": connection.execute(
                text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
            ).scalar_one()
        }
        rows = connection.execute(
            text("SELECT relname, n_tup_ins, n_tup_upd FROM pg_stat_user_tables")
        ).all()
    for name, inserted, updated in rows:
        if name in TABLES:
            found[f"{name}.inserted"] = inserted
            found[f"{name}.updated"] = updated
    return found


def stored_in(database: Engine, began: float, ended: float) -> dict[str, Any]:
    """Rows the window stored and their JSON bytes."""
    found: dict[str, Any] = {}
    windows = ((events, events.c.stored_at), (tag_segments, tag_segments.c.started_at))
    with database.connect() as connection:
        for table, column in windows:
            query = select(table).where(column >= began, column < ended)
            rows = connection.execute(query).mappings().all()
            found[f"{table.name}.rows"] = len(rows)
            found[f"{table.name}.json_bytes"] = sum(len(json.dumps(dict(r))) for r in rows)
        ends = connection.execute(
            select(events.c.event_id).where(
                events.c.end_stored_at >= began, events.c.end_stored_at < ended
            )
        ).all()
        found["events.ends"] = len(ends)
    return found


def disk_bytes_per_row(database: Engine, table: Table, rows: int) -> float:
    """The table's size on disk with its indexes, per row, once the stored rows are copied
    (new keys) up to about ``rows``: a table of a few hundred rows is mostly empty pages."""
    key = table.primary_key.columns.keys()[0]
    names = list(table.c.keys())
    columns = ", ".join(names)
    copied = ", ".join(f"md5({name} || g::text)" if name == key else name for name in names)
    with database.begin() as connection:
        have = connection.execute(select(func.count()).select_from(table)).scalar_one()
        copies = max(0, rows // max(1, have) - 1)
        connection.execute(
            text(
                f"INSERT INTO {table.name} ({columns}) SELECT {copied} "  # noqa: S608 - schema names
                f"FROM {table.name}, generate_series(1, :copies) AS g"
            ),
            {"copies": copies},
        )
    with database.connect() as connection:
        total = connection.execute(select(func.count()).select_from(table)).scalar_one()
        size = connection.execute(
            text("SELECT pg_total_relation_size(:name)"), {"name": table.name}
        ).scalar_one()
    return round(size / total, 1)


def image_bytes(folder: Path, began: float, ended: float) -> tuple[int, int]:
    """(files, bytes) of images written under ``folder`` within the window."""
    files = [p for p in folder.rglob("*.jpg") if began <= p.stat().st_mtime < ended]
    return len(files), sum(p.stat().st_size for p in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    args = parser.parse_args()
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries are needed (apt-get install postgresql)")
    cluster = PgCluster(bin_dir)
    cluster.start()
    work = Path(tempfile.mkdtemp(prefix="feedtag-feed-writes-"))
    try:
        url = cluster.create_database("feedtag_feed_writes")
        config = node_config(args.feeds, work / "data", url)
        database = open_database(config.store)
        app = NodeApp(config)
        me = psutil.Process()
        try:
            app.start()
            time.sleep(args.warmup)
            before, cpu_before = pg_counters(database), me.cpu_times()
            began = time.time()
            time.sleep(args.seconds)
            ended = time.time()
            cpu_after = me.cpu_times()
            snapshot = app.control.snapshot()
        finally:
            app.stop()
        time.sleep(1.0)  # the node's backends have gone and reported their counters
        after = pg_counters(database)
        stored = stored_in(database, began, ended)
        for table in (events, tag_segments):
            stored[f"{table.name}.disk_bytes_per_row"] = disk_bytes_per_row(
                database, table, DISK_SAMPLE_ROWS
            )
        database.dispose()
        images = image_bytes(work / "data", began, ended)
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
    cpu_s = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    report(args, ended - began, before=before, after=after, stored=stored, images=images,
           snapshot=snapshot, cpu_s=cpu_s)  # fmt: skip


def report(
    args: argparse.Namespace,
    window: float,
    *,
    before: dict[str, int],
    after: dict[str, int],
    stored: dict[str, Any],
    images: tuple[int, int],
    snapshot: Any,
    cpu_s: float,
) -> None:
    feed_s = args.feeds * window
    camera_json = [len(json.dumps(dataclasses.asdict(c))) for c in snapshot.cameras]
    per_feed_s = {
        "commits": (after["commits"] - before["commits"]) / feed_s,
        **{
            key: (after.get(key, 0) - before.get(key, 0)) / feed_s
            for key in after
            if key != "commits" and after.get(key, 0) != before.get(key, 0)
        },
        "events.rows": stored["events.rows"] / feed_s,
        "events.ends": stored["events.ends"] / feed_s,
        "events.json_bytes": stored["events.json_bytes"] / feed_s,
        "tag_segments.rows": stored["tag_segments.rows"] / feed_s,
        "tag_segments.json_bytes": stored["tag_segments.json_bytes"] / feed_s,
        "images": images[0] / feed_s,
        "image_bytes": images[1] / feed_s,
        "cpu_s": cpu_s / feed_s,
    }
    summary = {
        "feeds": args.feeds,
        "window_s": round(window, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "per_feed_second": {key: round(value, 5) for key, value in per_feed_s.items()},
        "disk_bytes_per_row": {
            "events": stored["events.disk_bytes_per_row"],
            "tag_segments": stored["tag_segments.disk_bytes_per_row"],
        },
        "status_json_bytes_per_camera": round(sum(camera_json) / max(1, len(camera_json))),
        "analysed_fps": round(sum(c.ingest.analysed_fps for c in snapshot.cameras), 2),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
