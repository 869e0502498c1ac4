"""The store made unreachable mid-run: afterwards every event is present exactly once.

PostgreSQL: a real server (its own cluster, since this test stops it) is stopped with
``pg_ctl stop -m fast`` while a producer writes steadily, kept down for ``OUTAGE_S``, and
started again. SQLite: another process-like connection holds the database's exclusive lock
for ``OUTAGE_S`` (what a backup tool or a stuck writer does), so every write times out.
Some events are written twice, before and after the outage, and some get an end
(:class:`~feedtag.core.EventEnd`) that must survive the spool too.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from feedtag.core import Event, EventEnd, EventKind, stable_id
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
#: every ENDED_EVERY-th event gets an end, a little later
ENDED_EVERY = 10

pytestmark = [pytest.mark.system, pytest.mark.slow]


def make_event(number: int) -> Event:
    return Event(
        stable_id("outage", number), "door", EventKind.LINE_CROSS, "r", 1.8e9 + number / 100
    )


def end_of(number: int) -> EventEnd:
    return EventEnd.of(make_event(number), 1.9e9 + number)


def produce(writer: StoreWriter, seconds: float, written: list[int]) -> None:
    end = time.monotonic() + seconds
    number = 0
    while time.monotonic() < end:
        writer.put(make_event(number))
        written.append(number)
        if number % DUPLICATE_EVERY == 0 and number >= DUPLICATE_EVERY:
            writer.put(make_event(number - DUPLICATE_EVERY))  # an old one, again
        if number % ENDED_EVERY == 0 and number >= ENDED_EVERY:
            writer.put(end_of(number - ENDED_EVERY))
        number += 1
        time.sleep(1 / EVENTS_PER_S)


def count_rows(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        total = connection.execute(select(func.count()).select_from(events)).scalar()
        distinct = connection.execute(select(func.count(events.c.event_id.distinct()))).scalar()
    return int(total or 0), int(distinct or 0)


class SqliteLock:
    """Holds SQLite's exclusive lock from another connection: every write times out."""

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def stop(self) -> None:
        self._connection.execute("BEGIN EXCLUSIVE")

    def start(self) -> None:
        self._connection.execute("COMMIT")
        self._connection.close()


@pytest.fixture(params=["postgresql", "sqlite"])
def outage(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[Engine, Callable[[], None], Callable[[], None]]:
    """A store, how to take it down, and how to bring it back."""
    if request.param == "sqlite":
        engine = create_store_engine(f"sqlite:///{tmp_path / 'store.db'}")
        upgrade(engine)
        lock = SqliteLock(tmp_path / "store.db")
        return engine, lock.stop, lock.start
    cluster: PgCluster = request.getfixturevalue("own_cluster")
    engine = create_store_engine(cluster.create_database("outage"))
    upgrade(engine)
    return engine, cluster.stop, cluster.start


def test_an_outage_loses_nothing_and_doubles_nothing(
    outage: tuple[Engine, Callable[[], None], Callable[[], None]], tmp_path: Path
) -> None:
    started = time.monotonic()
    engine, take_down, bring_back = outage
    spool = Spool(tmp_path / "spool")
    writer = StoreWriter(engine, spool, batch_size=100, max_wait_s=0.05, retry_interval_s=0.5)
    written: list[int] = []
    with writer:
        producer = threading.Thread(target=produce, args=(writer, OUTAGE_S + 4, written))
        producer.start()
        time.sleep(1.5)
        take_down()
        wait_for(lambda: spool.records > 0, 10, what="events to reach the spool")
        time.sleep(OUTAGE_S)
        assert not writer.stats().available
        bring_back()
        producer.join(OUTAGE_S + 30)
        assert writer.flush(30)
        wait_for(lambda: spool.records == 0, 20, what="the spool to be replayed")
    stats = writer.stats()
    assert stats.spooled > 0 and stats.replayed == stats.spooled
    assert (stats.dropped, stats.failed) == (0, 0)
    assert count_rows(engine) == (len(written), len(written))
    with engine.connect() as connection:
        stored = dict(connection.execute(select(events.c.event_id, events.c.ended_at)).all())
    assert set(stored) == {make_event(n).event_id for n in written}
    ended = {n for n in written if n % ENDED_EVERY == 0 and n + ENDED_EVERY <= written[-1]}
    assert len(ended) > 5
    for number in written:
        expected = end_of(number).ended_at if number in ended else None
        assert stored[make_event(number).event_id] == expected, number
    engine.dispose()
    assert time.monotonic() - started < 60
