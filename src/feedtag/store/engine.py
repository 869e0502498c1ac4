"""Store URLs to SQLAlchemy engines, and SQLAlchemy errors to feedtag's.

SQLite (the embedded default) gets WAL, a busy timeout and foreign keys on every connection;
PostgreSQL goes through psycopg 3 with ``pool_pre_ping`` so that a pooled connection broken
by a server restart is replaced instead of failing the next write.

No error or log line carries the URL's password: messages pass through
:func:`feedtag.urls.redact`, and engines hide bound parameters in their error texts.

>>> engine = create_store_engine("sqlite://")
>>> engine.dialect.name
'sqlite'
>>> store_url_for_log("postgresql://feedtag:s3cret@db:5432/feedtag")
'postgresql://feedtag:***@db:5432/feedtag'
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from feedtag.errors import StoreError, StoreUnavailable
from feedtag.urls import redact

log = logging.getLogger(__name__)

#: how long a SQLite writer waits for another's lock before failing (the store is then taken
#: as unavailable and events spool); short enough that a shutdown during a lock held by
#: another process stays within its 5 s bound, long against WAL commits of a few milliseconds
SQLITE_BUSY_TIMEOUT_MS: Final = 2000
#: how long a PostgreSQL connect may take before the store counts as unavailable
PG_CONNECT_TIMEOUT_S: Final = 5

#: SQLAlchemy error classes that mean "the database did not answer": transient
_UNAVAILABLE: Final = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.DisconnectionError,
    ConnectionError,
    TimeoutError,
)


def store_url_for_log(url: str) -> str:
    """``url`` with its password masked, for logs and errors."""
    return redact(url)


def _normalise(url: str) -> str:
    # Plain postgresql:// would pick psycopg2, which feedtag does not depend on.
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # With WAL, NORMAL is durable against application crashes and much faster than FULL.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_store_engine(url: str, **options: Any) -> Engine:
    """An engine for a ``sqlite:///path`` or ``postgresql://...`` URL.

    Raises :class:`StoreError` (with a masked URL) for a URL it cannot use.
    """
    try:
        parsed = make_url(_normalise(url))
    except exc.ArgumentError:
        # Neither echoed nor chained: a string that is not a URL cannot be redacted.
        raise StoreError("not a store URL: expected sqlite:///PATH or postgresql://...") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed.database, str(parsed), options)
    if backend == "postgresql":
        connect_args = {"connect_timeout": PG_CONNECT_TIMEOUT_S, **options.pop("connect_args", {})}
        return create_engine(
            parsed,
            pool_pre_ping=True,
            hide_parameters=True,
            connect_args=connect_args,
            **options,
        )
    raise StoreError(f"unsupported store backend {backend!r}: use sqlite or postgresql")


def _sqlite_engine(database: str | None, url: str, options: dict[str, Any]) -> Engine:
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    else:
        # One shared in-memory database for every thread, instead of one per connection.
        options = {"poolclass": StaticPool, **options}
        options.setdefault("connect_args", {"check_same_thread": False})
    engine = create_engine(url, hide_parameters=True, **options)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def store_error(error: BaseException, action: str) -> StoreError:
    """Translate a SQLAlchemy/DBAPI error into :class:`StoreUnavailable` (transient) or
    :class:`StoreError`, with credentials masked.

    >>> from sqlalchemy import exc
    >>> e = exc.OperationalError("connect", {}, Exception("postgresql://u:pw@h/db refused"))
    >>> type(store_error(e, "write")).__name__
    'StoreUnavailable'
    """
    if isinstance(error, StoreError):
        return error
    # Only the first line: SQLAlchemy appends the statement and a background link.
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    detail = redact(lines[0]) if lines else type(error).__name__
    if isinstance(error, _UNAVAILABLE):
        return StoreUnavailable(f"{action} failed: store unavailable: {detail}")
    return StoreError(f"{action} failed: {type(error).__name__}: {detail}")
