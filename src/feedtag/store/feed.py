"""Places in the live event stream that the store can seek from, so that a client that lost
its connection is sent what it missed.

The store writer stamps each transaction (:class:`StampClock`: its wall clock, made strictly
increasing) and writes the stamp into every event it inserts (``events.stored_at``) and into
every event whose end it applies (``events.end_stored_at``). After the commit it hands each
event and end on as :class:`Stored`, with its :class:`Position`: (stamp, event id, start or
end). One writer commits its transactions one after another, so positions grow in the order
the stream sends them, and :func:`missed_since` reads from the store exactly what came after
a position, in the same order.

A position travels as an opaque string (:meth:`Position.token`), the SSE ``id:`` of a message.

>>> p = Position(1.7e9, "cam-1-e7", Phase.END)
>>> Position.parse(p.token()) == p
True
>>> a, b = Position(1.0, "b", Phase.START), Position(1.0, "b", Phase.END)
>>> a < b < Position(2.0, "a", Phase.START)
True
"""

from __future__ import annotations

import base64
import binascii
import enum
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final, NamedTuple

from sqlalchemy import Engine, or_, select

from feedtag.core import Event, EventEnd
from feedtag.store.engine import store_error
from feedtag.store.schema import events, row_event

#: the longest position token a client may send back
MAX_TOKEN_LENGTH: Final = 400


class Phase(enum.IntEnum):
    """An event's two places in the stream: when it was stored, when its end was applied."""

    START = 0
    END = 1


class Position(NamedTuple):
    """A place in the stream; tuples order them as the stream sends them."""

    stamp: float
    event_id: str
    phase: Phase

    def token(self) -> str:
        """The opaque form sent as the SSE ``id``."""
        raw = f"{self.stamp!r}|{int(self.phase)}|{self.event_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str) -> Position | None:
        """The position of a token, or None when it is not one (an id of another server
        version, or garbage)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            stamp, phase, event_id = raw.split("|", 2)
            position = cls(float(stamp), event_id, Phase(int(phase)))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if not event_id or position.stamp != position.stamp:  # NaN never orders
            return None
        return position


@dataclass(frozen=True, slots=True)
class Stored:
    """An event, or an event's end, as committed to the store, with its stream position."""

    item: Event | EventEnd
    position: Position

    @property
    def camera_id(self) -> str:
        return self.item.camera_id


class StampClock:
    """Strictly increasing stamps from the wall clock, one per transaction."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0.0

    def next(self) -> float:
        with self._lock:
            stamp = max(time.time(), self._last + 1e-6)
            self._last = stamp
            return stamp


@dataclass(frozen=True, slots=True)
class Missed:
    """What came after a position: ``items`` in stream order; ``complete`` is False when
    there was more than the bound (only the newest ``limit`` are in ``items``)."""

    items: list[Stored]
    complete: bool


def missed_since(
    engine: Engine,
    after: Position,
    cameras: Collection[str] | None,
    *,
    limit: int,
    oldest: float,
) -> Missed:
    """Events and ends stored after ``after`` (of ``cameras``; None: every camera), at most
    ``limit`` of them and none stamped before ``oldest``. Raises
    :class:`~feedtag.errors.StoreError`."""
    since = max(after.stamp, oldest)
    query = select(events).where(or_(events.c.stored_at >= since, events.c.end_stored_at >= since))
    if cameras is not None:
        query = query.where(events.c.camera_id.in_(sorted(cameras)))
    try:
        with engine.connect() as connection:
            rows = connection.execute(query).fetchall()
    except Exception as error:  # noqa: BLE001 - every DB error is translated right here
        raise store_error(error, "stream resume") from None
    found: list[Stored] = []
    for row in rows:
        event = row_event(row)
        data = row._mapping
        if data["stored_at"] is not None:
            found.append(Stored(event, Position(data["stored_at"], event.event_id, Phase.START)))
        if data["end_stored_at"] is not None and event.ended_at is not None:
            end = EventEnd(event.event_id, event.camera_id, event.ended_at)
            found.append(Stored(end, Position(data["end_stored_at"], event.event_id, Phase.END)))
    found = sorted(
        (s for s in found if s.position > after and s.position.stamp >= oldest),
        key=lambda s: s.position,
    )
    complete = after.stamp >= oldest and len(found) <= limit
    return Missed(found[-limit:] if limit else [], complete)
