"""``feedtag events ...``: search events and tags, and count events, from the command line."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from feedtag.core import EventKind
from feedtag.store.query import (
    CountQuery,
    EventQuery,
    TagQuery,
    count_events,
    search_events,
    search_tags,
)

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: float | None = None) -> float:
    """Unix seconds from ISO 8601 (``2026-11-28T10:00``, local time unless an offset is given)
    or from a duration back from now (``90s``, ``15m``, ``2h``, ``7d``).

    >>> parse_time("2h", now=10_000.0)
    2800.0
    >>> parse_time("1970-01-01T00:01:00+00:00")
    60.0
    """
    match = _RELATIVE.fullmatch(text.strip())
    if match:
        return (time.time() if now is None else now) - float(match[1]) * _UNITS[match[2]]
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(
            f"expected an ISO 8601 time or a duration like 15m, got {text!r}"
        ) from None


def parse_duration(text: str) -> float:
    """Seconds from ``90s``, ``15m``, ``1h``, ``1d``.

    >>> parse_duration("15m")
    900.0
    """
    match = _RELATIVE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"expected a duration like 15m or 1h, got {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def events_page(
    engine: Engine,
    *,
    cameras: Sequence[str],
    kinds: Sequence[str],
    labels: Sequence[str],
    zones: Sequence[str],
    since: float | None,
    until: float | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    query = EventQuery(
        camera_ids=tuple(cameras),
        start=since,
        end=until,
        kinds=tuple(EventKind(kind) for kind in kinds),
        labels=tuple(labels),
        zones=tuple(zones),
        limit=limit,
        cursor=cursor,
    )
    page = search_events(engine, query)
    return {"items": [e.to_dict() for e in page.items], "next_cursor": page.next_cursor}


def tags_page(
    engine: Engine,
    *,
    label: str,
    min_count: int,
    cameras: Sequence[str],
    zone: str | None,
    since: float | None,
    until: float | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    query = TagQuery(label, min_count, tuple(cameras), zone, since, until, limit, cursor)
    page = search_tags(engine, query)
    return {"items": [s.to_dict() for s in page.items], "next_cursor": page.next_cursor}


def event_counts(
    engine: Engine,
    *,
    since: float,
    until: float,
    bucket_s: float,
    cameras: Sequence[str],
    kinds: Sequence[str],
    labels: Sequence[str],
) -> list[dict[str, Any]]:
    query = CountQuery(
        since, until, bucket_s, tuple(cameras), tuple(EventKind(k) for k in kinds), tuple(labels)
    )
    return [bucket.to_dict() for bucket in count_events(engine, query)]
