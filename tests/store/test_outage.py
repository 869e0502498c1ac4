"""The store made unreachable mid-run: afterwards every event is present exactly once.

A real PostgreSQL (its own cluster, since this test stops it) is stopped with
``pg_ctl stop -m fast`` while a producer writes steadily, kept down for ``OUTAGE_S``, and
started again. Some events are written twice, before and after the outage.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from feedtag.core import Event, EventKind, stable_id
from feedtag.store.engine import create_store_engine
from feedtag.store.migrations import upgrade
from feedtag.store.pgcluster import PgCluster
from feedtag.store.schema import events
from feedtag.store.spool import Spool
from feedtag.store.writer import StoreWriter

from ..conftest import IN_CI, wait_for

#: how long the store is down; the issue asks for 30 s, and CI runs that (whole test < 60 s)
OUTAGE_S = 30.0 if IN_CI else 5.0
EVENTS_PER_S = 200
#: every DUPLICATE_EVERY-th event is written a second time, later
DUPLICATE_EVERY = 7

pytestmark = [pytest.mark.system, pytest.mark.slow]


def make_event(number: int) -> Event:
    return Event(
        stable_id("outage", number), "door", EventKind.LINE_CROSS, "r", 1.8e9 + number / 100
    )


def produce(writer: StoreWriter, seconds: float, written: list[int]) -> None:
    end = time.monotonic() + seconds
    number = 0
    while time.monotonic() < end:
        writer.put(make_event(number))
        written.append(number)
        if number % DUPLICATE_EVERY == 0 and number >= DUPLICATE_EVERY:
            writer.put(make_event(number - DUPLICATE_EVERY))  # an old one, again
        number += 1
        time.sleep(1 / EVENTS_PER_S)


def count_rows(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        total = connection.execute(select(func.count()).select_from(events)).scalar()
        distinct = connection.execute(select(func.count(events.c.event_id.distinct()))).scalar()
    return int(total or 0), int(distinct or 0)


def test_an_outage_loses_nothing_and_doubles_nothing(
    own_cluster: PgCluster, tmp_path: Path
) -> None:
    started = time.monotonic()
    engine = create_store_engine(own_cluster.create_database("outage"))
    upgrade(engine)
    spool = Spool(tmp_path / "spool")
    writer = StoreWriter(engine, spool, batch_size=100, max_wait_s=0.05, retry_interval_s=0.5)
    written: list[int] = []
    with writer:
        producer = threading.Thread(target=produce, args=(writer, OUTAGE_S + 4, written))
        producer.start()
        time.sleep(1.5)
        own_cluster.stop()
        wait_for(lambda: spool.records > 0, 10, what="events to reach the spool")
        time.sleep(OUTAGE_S)
        assert not writer.stats().available
        own_cluster.start()
        producer.join(OUTAGE_S + 30)
        assert writer.flush(30)
        wait_for(lambda: spool.records == 0, 20, what="the spool to be replayed")
    stats = writer.stats()
    assert stats.spooled > 0 and stats.replayed == stats.spooled
    assert (stats.dropped, stats.failed) == (0, 0)
    assert count_rows(engine) == (len(written), len(written))
    with engine.connect() as connection:
        stored = set(connection.execute(select(events.c.event_id)).scalars())
    assert stored == {make_event(n).event_id for n in written}
    engine.dispose()
    assert time.monotonic() - started < 60
