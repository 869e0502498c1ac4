"""The alert outbox: one row per event and alert route, written with the event.

The store writer inserts an event's outbox rows in the same transaction as the event
(:func:`insert_outbox`), so an event is either stored with every alert it owes or not at
all, and a crash between "stored" and "sent" loses nothing: the dispatcher
(:mod:`feedtag.alerts.dispatcher`) sends what is pending, at least once, after any restart.
Which routes an event goes to is decided by a :data:`Router`, a pure function of the event
(and the config it was built from) that the writer is given; the store knows nothing of
webhooks.

A row is ``pending`` until a delivery succeeds (``delivered``) or its last attempt failed
(``dead``). The dispatcher claims a due row by moving its ``next_attempt_at`` forward by a
lease, with a compare-and-set update, so that two dispatchers on one store never send the
same row at once and a dispatcher that dies mid-send leaves the row due again when the lease
ends.

>>> from feedtag.core import Event, EventKind
>>> from feedtag.store.engine import create_store_engine
>>> from feedtag.store.migrations import upgrade
>>> from feedtag.store.writer import insert_events
>>> from feedtag.store.schema import event_row
>>> engine = create_store_engine("sqlite://"); upgrade(engine)
>>> event = Event("e1", "door", EventKind.DWELL, "r1", 1.7e9)
>>> route_all = lambda event: [AlertRoute("ops")]
>>> with engine.begin() as connection:
...     insert_events(connection, [event_row(event)])
...     insert_outbox(connection, [event, event], route_all, now=1.7e9)
1
>>> [(item.event.event_id, item.route_id) for item in claim_due(engine, now=1.7e9)]
[('e1', 'ops')]
>>> outbox_counts(engine)
{'pending': 1, 'delivered': 0, 'dead': 0}
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from feedtag.core import Event
from feedtag.errors import StoreError
from feedtag.store.engine import store_error
from feedtag.store.schema import alert_outbox, events, row_event

log = logging.getLogger(__name__)

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
DEAD: Final = "dead"
STATES: Final = (PENDING, DELIVERED, DEAD)
#: how long a claimed row is reserved for the dispatcher that claimed it
DEFAULT_LEASE_S: Final = 120.0
DEFAULT_CLAIM_LIMIT: Final = 50
MAX_ERROR_CHARS: Final = 500


@dataclass(frozen=True, slots=True)
class AlertRoute:
    """Where an event is to be sent: a route id (a webhook's id) and its cooldown."""

    route_id: str
    cooldown_s: float = 0.0


#: the routes of an event; must be pure (same event, same config: same routes)
Router = Callable[[Event], Sequence[AlertRoute]]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A claimed outbox row with its event."""

    event: Event
    route_id: str
    attempts: int
    created_at: float
    claimed_until: float


def routes_of(router: Router, event: Event) -> Sequence[AlertRoute]:
    """``router(event)``; a router that fails costs the event its alerts, never its storage."""
    try:
        return router(event)
    except Exception:  # the event must still be stored
        log.exception("alert routing failed for event %s; no alerts queued", event.event_id)
        return ()


def _insert(connection: Connection) -> Any:
    return postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert


def insert_outbox(
    connection: Connection, batch: Sequence[Event], router: Router, *, now: float
) -> int:
    """Insert the pending outbox rows of ``batch`` (an event and route already there are left
    as they are); returns how many rows were offered. A route with a cooldown skips an event
    whose camera, kind and zone had a row for that route starting less than ``cooldown_s``
    earlier, in the store or earlier in this batch."""
    rows: list[dict[str, Any]] = []
    recent: dict[tuple[str, str, str, str | None], float] = {}
    for event in sorted(batch, key=lambda e: (e.started_at, e.event_id)):
        for route in routes_of(router, event):
            key = (route.route_id, event.camera_id, event.kind.value, event.zone)
            if route.cooldown_s > 0 and _cooling(connection, event, route, recent.get(key)):
                continue
            recent[key] = event.started_at
            rows.append(_outbox_row(event, route.route_id, now))
    unique = list({(row["event_id"], row["route_id"]): row for row in rows}.values())
    if unique:
        statement = _insert(connection)(alert_outbox).on_conflict_do_nothing(
            index_elements=["event_id", "route_id"]
        )
        connection.execute(statement, unique)
    return len(unique)


def _outbox_row(event: Event, route_id: str, now: float) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "route_id": route_id,
        "camera_id": event.camera_id,
        "kind": event.kind.value,
        "zone": event.zone,
        "event_at": event.started_at,
        "state": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": None,
        "created_at": now,
        "delivered_at": None,
    }


def _cooling(
    connection: Connection, event: Event, route: AlertRoute, batch_last: float | None
) -> bool:
    start = event.started_at - route.cooldown_s
    if batch_last is not None and start < batch_last <= event.started_at:
        return True
    table = alert_outbox.c
    statement = (
        select(table.event_id)
        .where(
            table.route_id == route.route_id,
            table.camera_id == event.camera_id,
            table.kind == event.kind.value,
            table.zone.is_not_distinct_from(event.zone),
            table.event_at > start,
            table.event_at <= event.started_at,
            table.event_id != event.event_id,
        )
        .limit(1)
    )
    return connection.execute(statement).first() is not None


def claim_due(
    engine: Engine,
    *,
    now: float,
    limit: int = DEFAULT_CLAIM_LIMIT,
    lease_s: float = DEFAULT_LEASE_S,
) -> list[OutboxItem]:
    """Claim up to ``limit`` pending rows that are due, oldest first, for ``lease_s``
    seconds. A row whose event is no longer stored (retention) is marked dead."""
    table = alert_outbox.c
    statement = (
        select(
            table.event_id,
            table.route_id,
            table.attempts,
            table.created_at,
            table.next_attempt_at,
            *(column.label(f"event_{column.name}") for column in events.c),
        )
        .join(events, events.c.event_id == table.event_id, isouter=True)
        .where(table.state == PENDING, table.next_attempt_at <= now)
        .order_by(table.next_attempt_at, table.created_at, table.event_id)
        .limit(limit)
    )
    claimed: list[OutboxItem] = []
    until = now + lease_s
    with _store("outbox claim"), engine.begin() as connection:
        for row in connection.execute(statement).mappings().all():
            won = connection.execute(
                update(alert_outbox)
                .where(
                    table.event_id == row["event_id"],
                    table.route_id == row["route_id"],
                    table.state == PENDING,
                    table.next_attempt_at == row["next_attempt_at"],
                )
                .values(next_attempt_at=until)
            ).rowcount
            if not won:
                continue  # another dispatcher claimed it first
            if row["event_kind"] is None:
                _finish(
                    connection, row["event_id"], row["route_id"], DEAD, "event no longer stored"
                )
                continue
            claimed.append(
                OutboxItem(
                    event=row_event({col.name: row[f"event_{col.name}"] for col in events.c}),
                    route_id=row["route_id"],
                    attempts=row["attempts"],
                    created_at=row["created_at"],
                    claimed_until=until,
                )
            )
    return claimed


def mark_delivered(engine: Engine, item: OutboxItem, *, now: float) -> None:
    """Record a successful delivery (attempts counted, ``delivered_at`` set)."""
    with _store("outbox update"), engine.begin() as connection:
        _finish(connection, item.event.event_id, item.route_id, DELIVERED, None, now=now)


def mark_failed(engine: Engine, item: OutboxItem, *, error: str, retry_at: float | None) -> None:
    """Record a failed attempt: due again at ``retry_at``, or dead when it is None.
    ``error`` must already be free of secrets; it is cut to :data:`MAX_ERROR_CHARS`."""
    with _store("outbox update"), engine.begin() as connection:
        if retry_at is None:
            _finish(connection, item.event.event_id, item.route_id, DEAD, error)
            return
        table = alert_outbox.c
        connection.execute(
            update(alert_outbox)
            .where(table.event_id == item.event.event_id, table.route_id == item.route_id)
            .where(table.state == PENDING)
            .values(
                attempts=table.attempts + 1,
                next_attempt_at=retry_at,
                last_error=error[:MAX_ERROR_CHARS],
            )
        )


def release(engine: Engine, items: Sequence[OutboxItem], *, now: float) -> int:
    """Give back claimed rows that were not tried (a dispatcher stopping mid-batch): each is
    due again at ``now`` instead of when its lease ends, unless another dispatcher has claimed
    it since. Returns how many rows were given back."""
    table = alert_outbox.c
    released = 0
    with _store("outbox release"), engine.begin() as connection:
        for item in items:
            released += connection.execute(
                update(alert_outbox)
                .where(
                    table.event_id == item.event.event_id,
                    table.route_id == item.route_id,
                    table.state == PENDING,
                    table.next_attempt_at == item.claimed_until,
                )
                .values(next_attempt_at=now)
            ).rowcount
    return released


def _finish(
    connection: Connection,
    event_id: str,
    route_id: str,
    state: str,
    error: str | None,
    *,
    now: float | None = None,
) -> None:
    table = alert_outbox.c
    values: dict[str, Any] = {"state": state, "attempts": table.attempts + 1}
    if error is not None:
        values["last_error"] = error[:MAX_ERROR_CHARS]
    if now is not None:
        values["delivered_at"] = now
    connection.execute(
        update(alert_outbox)
        .where(table.event_id == event_id, table.route_id == route_id, table.state == PENDING)
        .values(**values)
    )


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One alert owed, as an admin sees it: which event, which route, how it stands. The
    last error is what went wrong (``HTTP 500``, ``timed out``), never a secret or a URL."""

    event_id: str
    route_id: str
    camera_id: str
    kind: str
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created_at: float
    delivered_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_outbox(
    engine: Engine, *, state: str | None = None, limit: int = DEFAULT_CLAIM_LIMIT
) -> list[OutboxRow]:
    """The newest ``limit`` outbox rows (in ``state``, when given), newest first."""
    table = alert_outbox.c
    statement = select(*(getattr(table, name) for name in OutboxRow.__slots__))
    if state is not None:
        statement = statement.where(table.state == state)
    statement = statement.order_by(table.created_at.desc(), table.event_id).limit(limit)
    with _store("outbox list"), engine.connect() as connection:
        return [OutboxRow(*row) for row in connection.execute(statement).all()]


def outbox_counts(engine: Engine) -> dict[str, int]:
    """Rows per state, every state named."""
    statement = select(alert_outbox.c.state, func.count()).group_by(alert_outbox.c.state)
    with _store("outbox count"), engine.connect() as connection:
        found = {state: int(count) for state, count in connection.execute(statement).all()}
    return {state: found.get(state, 0) for state in STATES}


@contextlib.contextmanager
def _store(action: str) -> Iterator[None]:
    """Translate database errors into :class:`StoreError` (``StoreUnavailable`` when the
    store does not answer)."""
    try:
        yield
    except StoreError:
        raise
    except Exception as error:  # noqa: BLE001 - every DB error is translated right here
        raise store_error(error, action) from None
