"""The store's one writer thread: batched, idempotent, and spooling through outages.

Producers call :meth:`StoreWriter.put` (a bounded queue with a timeout). The writer thread
gathers a batch (up to ``batch_size`` items, or what arrived within ``max_wait_s``) and
writes it in one transaction: events with ``INSERT ... ON CONFLICT DO NOTHING`` (the same
event twice is one row), tag segments with ``ON CONFLICT DO UPDATE`` that only ever grows a
segment (``max_count`` the larger, ``ended_at`` set once known), so replaying old states
after new ones cannot undo anything. An :class:`~feedtag.core.EventEnd` sets a stored event's
``ended_at`` only while it is unset, after the batch's inserts; records keep their order
through the spool, so an end never overtakes its event.

When the store does not answer, the batch goes to the :class:`~feedtag.store.spool.Spool`
and so does every later batch, in order, until a replay of the spool succeeds (tried every
``retry_interval_s``); then writing resumes. Nothing is lost unless the spool is full or
its disk fails (both counted in ``stats().dropped``), and nothing is doubled because every
write is idempotent.

Given a ``router`` (:data:`~feedtag.store.outbox.Router`), the writer also inserts each
event's alert outbox rows in the event's transaction (:func:`~feedtag.store.outbox.insert_outbox`),
including events replayed from the spool; the dispatcher sends them later.

Every transaction has a stamp (:class:`~feedtag.store.feed.StampClock`), written into the
events it inserts (``stored_at``) and the ends it applies (``end_stored_at``); after the
commit, each of ``listeners`` is called with every event and end of the batch as
:class:`~feedtag.store.feed.Stored`, in stream order (the API's live stream subscribes, and
resumes a client from those stamps). A listener runs on the writer thread and must not
block; one that raises is logged and skipped.

>>> import tempfile
>>> from feedtag.core import Event, EventKind
>>> from feedtag.store.engine import create_store_engine
>>> from feedtag.store.migrations import upgrade
>>> engine = create_store_engine("sqlite://"); upgrade(engine)
>>> event = Event("e1", "door", EventKind.DWELL, "r1", 1.7e9)
>>> with StoreWriter(engine, Spool(tempfile.mkdtemp())) as writer:
...     writer.put(event); writer.put(event)
>>> writer.stats().written
2
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, Engine, bindparam, case, update
from sqlalchemy.dialects import postgresql, sqlite

from feedtag.core import Event, EventEnd, TagSegment
from feedtag.errors import SpoolFull, StoreError, StoreUnavailable
from feedtag.store.engine import store_error
from feedtag.store.feed import Phase, Position, StampClock, Stored
from feedtag.store.outbox import Router, insert_outbox
from feedtag.store.schema import event_row, events, row_event, tag_segments
from feedtag.store.spool import Spool

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE: Final = 500
DEFAULT_MAX_WAIT_S: Final = 0.25
DEFAULT_QUEUE_SIZE: Final = 20_000
DEFAULT_PUT_TIMEOUT_S: Final = 1.0
DEFAULT_RETRY_INTERVAL_S: Final = 1.0
DEFAULT_CLOSE_TIMEOUT_S: Final = 30.0

Item = Event | EventEnd | TagSegment
Record = dict[str, Any]  # {"t": "e" | "x" | "s", "r": row}; "x" is an event's end


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Counters of one writer, for metrics. ``written`` counts items handed to the database
    (duplicates included: the database keeps one); ``failed`` counts items the database
    rejected as invalid (not retried)."""

    queued: int
    written: int
    spooled: int
    replayed: int
    failed: int
    dropped: int
    spool_records: int
    spool_bytes: int
    available: bool


def to_record(item: Item) -> Record:
    """The spool record of an event, an event's end or a tag segment."""
    if isinstance(item, Event):
        return {"t": "e", "r": event_row(item)}
    if isinstance(item, EventEnd):
        return {"t": "x", "r": item.to_dict()}
    return {"t": "s", "r": item.to_dict()}


class StoreWriter:
    """One writer thread in front of the store. Start with ``start()`` or ``with``."""

    def __init__(
        self,
        engine: Engine,
        spool: Spool,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        retry_interval_s: float = DEFAULT_RETRY_INTERVAL_S,
        router: Router | None = None,
    ) -> None:
        self._engine = engine
        self._router = router
        self._spool = spool
        self._batch_size = batch_size
        self._max_wait_s = max_wait_s
        self._retry_interval_s = retry_interval_s
        self._queue: queue.Queue[Item] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._available = True
        self._last_retry = 0.0
        self._counts = {"written": 0, "spooled": 0, "replayed": 0, "failed": 0}
        self._clock = StampClock()
        #: called after each commit with every event and end written (see the module doc)
        self.listeners: list[Callable[[Stored], None]] = []

    def __enter__(self) -> StoreWriter:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self) -> None:
        self._thread.start()

    def put(self, item: Item, timeout: float = DEFAULT_PUT_TIMEOUT_S) -> None:
        """Queue an event, an event's end or a tag segment; raise :class:`StoreError` when
        the queue stayed full for ``timeout`` seconds (backpressure) or the writer is closed."""
        if self._stop.is_set():
            raise StoreError("store writer is closed")
        try:
            self._queue.put(item, timeout=timeout)
        except queue.Full:
            raise StoreError(f"store writer queue full for {timeout} s") from None

    def flush(self, timeout: float = DEFAULT_CLOSE_TIMEOUT_S) -> bool:
        """Wait until every queued item was written or spooled; False on timeout."""
        end = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > end:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Write (or spool) what is queued, then stop the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("store writer did not stop within %s s", timeout)
        stats = self.stats()
        log.info(
            "store writer stopped: %d written, %d spooled, %d replayed, %d failed, %d dropped, "
            "%d still queued; %d records (%d bytes) left in the spool for the next start",
            stats.written, stats.spooled, stats.replayed, stats.failed, stats.dropped,
            stats.queued, stats.spool_records, stats.spool_bytes,
        )  # fmt: skip

    def stats(self) -> WriterStats:
        return WriterStats(
            queued=self._queue.qsize(),
            dropped=self._spool.dropped,
            spool_records=self._spool.records,
            spool_bytes=self._spool.size_bytes,
            available=self._available,
            **self._counts,
        )

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            batch = self._collect()
            try:
                if batch:
                    self._write_or_spool([to_record(item) for item in batch])
                elif self._spool.records:
                    self._try_replay()
            finally:
                for _ in batch:
                    self._queue.task_done()
        if self._spool.records and self._available:
            self._try_replay(force=True)

    def _collect(self) -> list[Item]:
        batch: list[Item] = []
        deadline = time.monotonic() + self._max_wait_s
        while len(batch) < self._batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _write_or_spool(self, records: list[Record]) -> None:
        # While stopping with the store down, one more attempt could block for the whole busy
        # timeout (SQLite locked by another process): what is queued goes to the spool, for
        # the next start, so that shutdown stays within its bound.
        if self._stop.is_set() and not self._available:
            self._to_spool(records)
            return
        # While the spool holds anything, new records queue behind it, in order.
        if not self._spool.records or self._try_replay():
            try:
                self._write(records)
            except StoreUnavailable as error:
                self._mark_down(error)
            else:
                self._counts["written"] += len(records)
                self._mark_up()
                return
        self._to_spool(records)

    def _to_spool(self, records: list[Record]) -> None:
        try:
            self._spool.append(records)
            self._counts["spooled"] += len(records)
        except SpoolFull as error:
            log.error("%s", error)
        except OSError as error:
            # A full or failing disk must not kill the writer thread; the loss is logged and
            # counted in ``dropped`` by the spool.
            log.error("spool write failed (%s): %d records lost", error, len(records))

    def _try_replay(self, force: bool = False) -> bool:
        now = time.monotonic()
        if not self._available and not force and now - self._last_retry < self._retry_interval_s:
            return False
        self._last_retry = now
        try:
            replayed = self._spool.replay(self._write)
        except StoreUnavailable as error:
            self._mark_down(error)
            return False
        self._counts["replayed"] += replayed
        self._mark_up(f"replayed {replayed} spooled records")
        return True

    def _mark_up(self, detail: str = "writing again") -> None:
        # Also after a direct write: when nothing could be spooled (its disk was full too),
        # no replay ever runs, and the store must not stay "unavailable" while it is written.
        if not self._available:
            log.warning("store is back: %s", detail)
        self._available = True

    def _mark_down(self, error: StoreError) -> None:
        if self._available:
            log.warning("%s; spooling to %s", error, self._spool.folder)
        self._available = False
        self._last_retry = time.monotonic()

    def _write(self, records: list[Record]) -> None:
        """One transaction. Raises :class:`StoreUnavailable` (retry later); an invalid batch
        is logged and counted as failed, since retrying it cannot succeed."""
        stamp = self._clock.next()
        event_rows = [
            {**row, "stored_at": stamp}
            for row in _unique_events(r["r"] for r in records if r["t"] == "e")
        ]
        segment_rows = merge_segments(r["r"] for r in records if r["t"] == "s")
        end_rows = [r["r"] for r in records if r["t"] == "x"]
        try:
            with self._engine.begin() as connection:
                insert_events(connection, event_rows)
                if self._router is not None and event_rows:
                    batch = [row_event(row) for row in event_rows]
                    insert_outbox(connection, batch, self._router, now=time.time())
                end_events(connection, end_rows, stamp)
                upsert_segments(connection, segment_rows)
        except Exception as error:  # noqa: BLE001 - every DB error is translated right here
            translated = store_error(error, "store write")
            if isinstance(translated, StoreUnavailable):
                raise translated from None
            log.error("%s; %d records not stored", translated, len(records))
            self._counts["failed"] += len(records)
            return
        if self.listeners:
            self._announce(stamp, event_rows, end_rows)

    def _announce(
        self, stamp: float, event_rows: list[dict[str, Any]], end_rows: list[dict[str, Any]]
    ) -> None:
        written = [
            Stored(row_event(row), Position(stamp, row["event_id"], Phase.START))
            for row in event_rows
        ] + [
            Stored(EventEnd(**row), Position(stamp, row["event_id"], Phase.END)) for row in end_rows
        ]
        written.sort(key=lambda stored: stored.position)
        for stored in written:
            for listener in list(self.listeners):
                try:
                    listener(stored)
                except Exception:
                    log.exception("camera %s: a store listener failed", stored.camera_id)


def _insert(connection: Connection) -> Any:
    return postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert


def insert_events(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert event rows; an event already stored is left as it is."""
    if rows:
        statement = _insert(connection)(events).on_conflict_do_nothing(index_elements=["event_id"])
        connection.execute(statement, rows)


def end_events(connection: Connection, rows: list[dict[str, Any]], stamp: float) -> None:
    """Set ``ended_at`` of stored events that have none yet (an end replayed twice, or one
    whose event was never stored, changes nothing), and ``end_stored_at`` to ``stamp``."""
    if rows:
        statement = (
            update(events)
            .where(events.c.event_id == bindparam("end_id"), events.c.ended_at.is_(None))
            .values(ended_at=bindparam("end_at"), end_stored_at=stamp)
        )
        params = [{"end_id": row["event_id"], "end_at": row["ended_at"]} for row in rows]
        connection.execute(statement, params)


def upsert_segments(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert tag segment rows, or grow the stored ones: ``max_count`` becomes the larger,
    ``ended_at`` the later known end (an open state never reopens a closed segment)."""
    if not rows:
        return
    statement = _insert(connection)(tag_segments)
    new, old = statement.excluded, tag_segments.c
    statement = statement.on_conflict_do_update(
        index_elements=["segment_id"],
        set_={
            "max_count": case((new.max_count > old.max_count, new.max_count), else_=old.max_count),
            "ended_at": case(
                (new.ended_at.is_(None), old.ended_at),
                (old.ended_at.is_(None), new.ended_at),
                (new.ended_at > old.ended_at, new.ended_at),
                else_=old.ended_at,
            ),
        },
    )
    connection.execute(statement, rows)


def _unique_events(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return list({row["event_id"]: row for row in rows}.values())


def merge_segments(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per segment id, merged as the upsert would (PostgreSQL refuses to update the
    same row twice in one statement).

    >>> merge_segments([{"segment_id": "s", "max_count": 3, "ended_at": None},
    ...                 {"segment_id": "s", "max_count": 2, "ended_at": 9.0}])
    [{'segment_id': 's', 'max_count': 3, 'ended_at': 9.0}]
    """
    merged: dict[str, dict[str, Any]] = {}
    for row in rows:
        old = merged.get(row["segment_id"])
        if old is None:
            merged[row["segment_id"]] = dict(row)
            continue
        old["max_count"] = max(old["max_count"], row["max_count"])
        ends = [end for end in (old["ended_at"], row["ended_at"]) if end is not None]
        old["ended_at"] = max(ends) if ends else None
    return list(merged.values())
