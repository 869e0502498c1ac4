"""Reading the store: event search with cursor pagination, counts per time bucket, and tag
search ("when were at least 3 persons in zone X on camera Y").

Pages are newest first and use keyset pagination on ``(started_at, id)``: each page is one
index range scan however deep the reader goes, and rows written meanwhile never shift a
page. The cursor is opaque (URL-safe base64 of the last row's key); a tampered cursor is a
:class:`~feedtag.errors.StoreError`, not a crash.

>>> from feedtag.core import Event, EventKind
>>> from feedtag.store.engine import create_store_engine
>>> from feedtag.store.migrations import upgrade
>>> from feedtag.store.schema import event_row
>>> from feedtag.store.writer import insert_events
>>> engine = create_store_engine("sqlite://"); upgrade(engine)
>>> with engine.begin() as c:
...     insert_events(c, [event_row(Event(f"e{i}", "door", EventKind.DWELL, "r", 1e9 + i,
...                                       label="person")) for i in range(3)])
>>> page = search_events(engine, EventQuery(camera_ids=("door",), limit=2))
>>> [e.event_id for e in page.items], page.next_cursor is not None
(['e2', 'e1'], True)
>>> [e.event_id for e in search_events(engine, EventQuery(cursor=page.next_cursor)).items]
['e0']
>>> count_events(engine, CountQuery(1e9, 1e9 + 10, bucket_s=60))
[CountBucket(camera_id='door', label='person', bucket_start=999999960.0, count=3)]
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from sqlalchemy import ColumnElement, Engine, Integer, Select, and_, cast, func, or_, select, tuple_

from feedtag.core import Event, EventKind, TagSegment
from feedtag.errors import StoreError
from feedtag.store.engine import store_error
from feedtag.store.schema import events, row_event, row_segment, tag_segments

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of results; ``next_cursor`` is None on the last page."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Filters of an event search; empty tuples mean "any". ``start``/``end`` bound
    ``started_at`` as ``start <= t < end``."""

    camera_ids: Sequence[str] = ()
    start: float | None = None
    end: float | None = None
    kinds: Sequence[EventKind] = ()
    labels: Sequence[str] = ()
    zones: Sequence[str] = ()
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class TagQuery:
    """A tag search: segments of ``label`` with at least ``min_count`` at once that overlap
    ``[start, end)``; ``zone`` None means segments of the whole frame."""

    label: str
    min_count: int = 1
    camera_ids: Sequence[str] = ()
    zone: str | None = None
    start: float | None = None
    end: float | None = None
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class CountQuery:
    """Counts of events per camera, label and ``bucket_s`` bucket of ``started_at``."""

    start: float
    end: float
    bucket_s: float = 3600.0
    camera_ids: Sequence[str] = ()
    kinds: Sequence[EventKind] = ()
    labels: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class CountBucket:
    """Events of one camera (None: of every camera) and label in one time bucket."""

    camera_id: str | None
    label: str | None
    bucket_start: float
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "camera_id": self.camera_id,
            "label": self.label,
            "bucket_start": self.bucket_start,
            "count": self.count,
        }


def encode_cursor(started_at: float, row_id: str) -> str:
    """An opaque cursor for the row after which the next page starts.

    >>> decode_cursor(encode_cursor(1.5, "abc"))
    (1.5, 'abc')
    """
    raw = json.dumps([started_at, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The key in a cursor; :class:`StoreError` when it is not one this module made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started_at, row_id = json.loads(raw)
        if isinstance(started_at, int | float) and isinstance(row_id, str):
            return float(started_at), row_id
    except (ValueError, TypeError, binascii.Error):
        pass
    raise StoreError("invalid cursor")


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise StoreError(f"expected 1 <= limit <= {MAX_LIMIT}, got {limit}")


def _any_of(column: Any, values: Sequence[Any]) -> list[ColumnElement[bool]]:
    return [column.in_(list(values))] if values else []


def _event_filters(query: EventQuery | CountQuery) -> list[ColumnElement[bool]]:
    c = events.c
    filters = [
        *_any_of(c.camera_id, query.camera_ids),
        *_any_of(c.kind, [EventKind(kind).value for kind in query.kinds]),
        *_any_of(c.label, query.labels),
    ]
    if query.start is not None:
        filters.append(c.started_at >= query.start)
    if query.end is not None:
        filters.append(c.started_at < query.end)
    return filters


def _page(
    engine: Engine, statement: Select[Any], key: tuple[Any, Any], limit: int, cursor: str | None
) -> list[Any]:
    time_col, id_col = key
    if cursor is not None:
        statement = statement.where(tuple_(time_col, id_col) < tuple_(*decode_cursor(cursor)))
    statement = statement.order_by(time_col.desc(), id_col.desc()).limit(limit + 1)
    return _read(engine, statement)


def _read(engine: Engine, statement: Select[Any]) -> list[Any]:
    """The rows of ``statement``; a store failure becomes a :class:`StoreError`."""
    try:
        with engine.connect() as connection:
            return list(connection.execute(statement))
    except Exception as error:  # noqa: BLE001 - translated at the store boundary
        raise store_error(error, "store read") from None


def search_events(engine: Engine, query: EventQuery) -> Page[Event]:
    """Events matching ``query``, newest first, one page at a time."""
    _check_limit(query.limit)
    statement = select(events).where(*_event_filters(query), *_any_of(events.c.zone, query.zones))
    key = (events.c.started_at, events.c.event_id)
    rows = _page(engine, statement, key, query.limit, query.cursor)
    items = [row_event(row) for row in rows[: query.limit]]
    more = len(rows) > query.limit
    last = items[-1] if more else None
    return Page(items, encode_cursor(last.started_at, last.event_id) if last else None)


def search_tags(engine: Engine, query: TagQuery) -> Page[TagSegment]:
    """Tag segments matching ``query`` (open segments count as lasting until now), newest
    first, one page at a time."""
    _check_limit(query.limit)
    c = tag_segments.c
    filters = [c.label == query.label, c.max_count >= query.min_count]
    filters += _any_of(c.camera_id, query.camera_ids)
    filters.append(c.zone.is_(None) if query.zone is None else c.zone == query.zone)
    if query.end is not None:
        filters.append(c.started_at < query.end)
    if query.start is not None:
        filters.append(or_(c.ended_at.is_(None), c.ended_at >= query.start))
    statement = select(tag_segments).where(and_(*filters))
    rows = _page(engine, statement, (c.started_at, c.segment_id), query.limit, query.cursor)
    items = [row_segment(row) for row in rows[: query.limit]]
    last = items[-1] if len(rows) > query.limit else None
    return Page(items, encode_cursor(last.started_at, last.segment_id) if last else None)


def _bucket(engine: Engine, bucket_s: float) -> ColumnElement[Any]:
    started = events.c.started_at
    if engine.dialect.name == "postgresql":
        return func.floor(started / bucket_s) * bucket_s
    # SQLite's CAST truncates toward zero: the floor for the positive Unix times stored here.
    return cast(started / bucket_s, Integer) * bucket_s


def count_events(
    engine: Engine, query: CountQuery, *, per_camera: bool = True
) -> list[CountBucket]:
    """Event counts per camera, label and time bucket, ordered by camera, bucket, label;
    without ``per_camera``, per label and time bucket over every camera the query names
    (``camera_id`` None): as many rows however many cameras there are."""
    if query.bucket_s <= 0:
        raise StoreError(f"expected bucket_s > 0, got {query.bucket_s}")
    bucket = _bucket(engine, query.bucket_s).label("bucket_start")
    c = events.c
    cameras = [c.camera_id] if per_camera else []
    statement = (
        select(*cameras, c.label, bucket, func.count().label("count"))
        .where(*_event_filters(query))
        .group_by(*cameras, c.label, bucket)
        # NULLS LAST explicitly: SQLite and PostgreSQL disagree on the default.
        .order_by(*cameras, bucket, c.label.asc().nulls_last())
    )
    rows = _read(engine, statement)
    return [
        CountBucket(row.camera_id if per_camera else None, row.label, float(row.bucket_start),
                    int(row._mapping["count"]))
        for row in rows
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class TopCameras:
    """The cameras with the most events of a :class:`CountQuery`: per camera and label over
    the whole range (``counts``: camera id, label, count; the cameras in order of their
    totals, most first), and how many cameras had any (``cameras``)."""

    counts: list[tuple[str, str | None, int]]
    cameras: int


def top_cameras(engine: Engine, query: CountQuery, limit: int) -> TopCameras:
    """The ``limit`` cameras with the most events matching ``query`` (ties by id), with
    their counts per label, and how many cameras had events: what a chart of events per
    camera shows on a site with more cameras than it has rows."""
    if limit < 1:
        raise StoreError(f"expected limit >= 1, got {limit}")
    c = events.c
    filters = _event_filters(query)
    total = func.count().label("total")
    ranked = (
        select(c.camera_id, total).where(*filters).group_by(c.camera_id)
        .order_by(total.desc(), c.camera_id).limit(limit)
    )  # fmt: skip
    top = [row.camera_id for row in _read(engine, ranked)]
    per_label = (
        select(c.camera_id, c.label, func.count().label("count"))
        .where(*filters, c.camera_id.in_(top))
        .group_by(c.camera_id, c.label)
    )
    counts = {(row.camera_id, row.label): int(row._mapping["count"])
              for row in _read(engine, per_label)}  # fmt: skip
    how_many = select(func.count(func.distinct(c.camera_id))).where(*filters)
    cameras = int(_read(engine, how_many)[0][0]) if top else 0
    order = {camera_id: place for place, camera_id in enumerate(top)}
    found = sorted(counts.items(), key=lambda item: (order[item[0][0]], -item[1], item[0][1] or ""))
    return TopCameras([(camera_id, label, n) for (camera_id, label), n in found], cameras)


def count_events_by_kind(engine: Engine, query: CountQuery) -> dict[str, int]:
    """Event counts per kind over the whole range, with the same filters as
    :func:`count_events` (``bucket_s`` is not used), so totals agree with the buckets."""
    kind = events.c.kind
    statement = select(kind, func.count()).where(*_event_filters(query)).group_by(kind)
    return {str(name): int(count) for name, count in _read(engine, statement)}
