"""The audit log: who read which events and media, when, and from where.

The API writes one row per read of events (search, get, live stream), snapshots, clips and
thumbnails *before* it answers; when the row cannot be written the read fails, so nothing is
served unaudited. Rows are only ever appended; admins read them newest first, one page at a
time (keyset on ``(at, audit_id)``, like event pages).

>>> from feedtag.store.engine import create_store_engine
>>> from feedtag.store.migrations import upgrade
>>> engine = create_store_engine("sqlite://"); upgrade(engine)
>>> write_audit(engine, AuditEntry(1e9, "t1", "wall", "viewer", "events.get", "door", "e1",
...                                None, "127.0.0.1", 200))
>>> [e.action for e in search_audit(engine, AuditQuery()).items]
['events.get']
>>> prune_audit(engine, before=1e9 + 1)
1
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from sqlalchemy import Engine, delete, insert, or_, select, tuple_

from feedtag.errors import StoreError
from feedtag.store.engine import store_error
from feedtag.store.query import MAX_LIMIT, Page, decode_cursor, encode_cursor
from feedtag.store.schema import audit_log

DEFAULT_AUDIT_LIMIT: Final = 100
MAX_DETAIL_CHARS: Final = 2000


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited read. ``detail`` holds the query of a search (never a secret)."""

    at: float
    token_id: str
    token_name: str
    role: str
    action: str
    camera_id: str | None
    object_id: str | None
    detail: str | None
    client: str | None
    status: int
    audit_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of an audit search; empty tuples mean "any"; ``start <= at < end``."""

    #: token ids or token names (either matches)
    principals: Sequence[str] = ()
    actions: Sequence[str] = ()
    camera_ids: Sequence[str] = ()
    start: float | None = None
    end: float | None = None
    limit: int = DEFAULT_AUDIT_LIMIT
    cursor: str | None = None


def write_audit(engine: Engine, entry: AuditEntry) -> None:
    """Append one entry; :class:`StoreError` when it could not be written."""
    row = entry.to_dict()
    row.pop("audit_id")
    if row["detail"] is not None:
        row["detail"] = row["detail"][:MAX_DETAIL_CHARS]
    try:
        with engine.begin() as connection:
            connection.execute(insert(audit_log).values(**row))
    except Exception as error:  # noqa: BLE001 - translated at the store boundary
        raise store_error(error, "audit write") from None


def prune_audit(engine: Engine, before: float) -> int:
    """Delete entries older than ``before`` (Unix seconds); returns how many went. For a
    retention job: the log grows with every read (a dashboard polls thumbnails)."""
    try:
        with engine.begin() as connection:
            return int(
                connection.execute(delete(audit_log).where(audit_log.c.at < before)).rowcount
            )
    except Exception as error:  # noqa: BLE001 - translated at the store boundary
        raise store_error(error, "audit prune") from None


def search_audit(engine: Engine, query: AuditQuery) -> Page[AuditEntry]:
    """Audit entries matching ``query``, newest first."""
    if not 1 <= query.limit <= MAX_LIMIT:
        raise StoreError(f"expected 1 <= limit <= {MAX_LIMIT}, got {query.limit}")
    c = audit_log.c
    statement = select(audit_log)
    if query.principals:
        who = list(query.principals)
        statement = statement.where(or_(c.token_id.in_(who), c.token_name.in_(who)))
    for column, values in ((c.action, query.actions), (c.camera_id, query.camera_ids)):
        if values:
            statement = statement.where(column.in_(list(values)))
    if query.start is not None:
        statement = statement.where(c.at >= query.start)
    if query.end is not None:
        statement = statement.where(c.at < query.end)
    if query.cursor is not None:
        at, audit_id = decode_cursor(query.cursor)
        if not audit_id.isdigit():
            raise StoreError("invalid cursor")
        statement = statement.where(tuple_(c.at, c.audit_id) < tuple_(at, int(audit_id)))
    statement = statement.order_by(c.at.desc(), c.audit_id.desc()).limit(query.limit + 1)
    try:
        with engine.connect() as connection:
            rows = list(connection.execute(statement))
    except Exception as error:  # noqa: BLE001 - translated at the store boundary
        raise store_error(error, "audit read") from None
    items = [AuditEntry(**dict(row._mapping)) for row in rows[: query.limit]]
    last = items[-1] if len(rows) > query.limit else None
    cursor = encode_cursor(last.at, str(last.audit_id)) if last else None
    return Page(items, cursor)
