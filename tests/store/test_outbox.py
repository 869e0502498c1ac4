"""The alert outbox, on SQLite and a real PostgreSQL: rows written in the event's transaction,
idempotent, replayed from the spool, cooled down, claimed once."""

from __future__ import annotations

import tempfile
from pathlib import Path

from sqlalchemy import Engine, select

from feedtag.alerts.routes import build_router
from feedtag.config.alerts import AlertsConfig
from feedtag.core import Event, EventKind
from feedtag.store.outbox import (
    AlertRoute,
    Router,
    claim_due,
    mark_delivered,
    mark_failed,
    outbox_counts,
    release,
)
from feedtag.store.retention import run_retention
from feedtag.store.schema import alert_outbox, events
from feedtag.store.spool import Spool
from feedtag.store.writer import StoreWriter, to_record

T0 = 1_799_971_200.0
SECRET = "outbox-secret-0123456789"
ALERTS = AlertsConfig.model_validate({
    "webhooks": [
        {"id": "ops", "url": "https://hooks.example.org/a?token=qs-secret", "secret": SECRET,
         "kinds": ["stopped_vehicle", "camera_health"], "cameras": ["gate-1"]},
        {"id": "cars", "url": "https://hooks.example.org/b", "secret": SECRET,
         "labels": ["car"], "zones": ["carriageway"]},
        {"id": "calm", "url": "https://hooks.example.org/c", "secret": SECRET,
         "kinds": ["crowding"], "cooldown_s": 60},
    ]
})  # fmt: skip


def ev(name: str, kind: EventKind, t: float, *, camera: str = "gate-1",
       label: str | None = "car", zone: str | None = "carriageway") -> Event:  # fmt: skip
    return Event(name, camera, kind, "rule", T0 + t, None, label, zone)


def write(engine: Engine, items: list[Event], router: Router, spool: Spool | None = None) -> None:
    with StoreWriter(
        engine, spool or Spool(tempfile.mkdtemp()), batch_size=3, max_wait_s=0.02, router=router
    ) as writer:
        for item in items:
            writer.put(item)


def outbox_rows(engine: Engine) -> list[tuple[str, str, str]]:
    statement = select(alert_outbox.c.event_id, alert_outbox.c.route_id, alert_outbox.c.state)
    with engine.connect() as connection:
        return sorted(tuple(row) for row in connection.execute(statement).all())  # type: ignore[misc]


def test_routes_by_kind_camera_label_and_zone(engine: Engine) -> None:
    write(
        engine,
        [
            ev("e1", EventKind.STOPPED_VEHICLE, 0),  # ops and cars
            ev("e2", EventKind.STOPPED_VEHICLE, 1, camera="yard"),  # cars only
            ev("e3", EventKind.CAMERA_FROZEN, 2, label=None, zone=None),  # ops (camera_health)
            ev("e4", EventKind.DWELL, 3, label="person"),  # nothing
        ],
        build_router(ALERTS),
    )
    assert outbox_rows(engine) == [
        ("e1", "cars", "pending"), ("e1", "ops", "pending"),
        ("e2", "cars", "pending"), ("e3", "ops", "pending"),
    ]  # fmt: skip


def test_writing_an_event_twice_makes_one_row_per_route(engine: Engine) -> None:
    event = ev("e1", EventKind.STOPPED_VEHICLE, 0)
    write(engine, [event, event, event], build_router(ALERTS))  # within one batch ...
    write(engine, [event], build_router(ALERTS))  # ... and later
    assert outbox_rows(engine) == [("e1", "cars", "pending"), ("e1", "ops", "pending")]


def test_spooled_events_get_their_outbox_rows_on_replay(engine: Engine, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append([to_record(ev("e1", EventKind.STOPPED_VEHICLE, 0))])
    write(engine, [ev("e2", EventKind.STOPPED_VEHICLE, 5)], build_router(ALERTS), spool)
    assert spool.records == 0
    assert [row[:2] for row in outbox_rows(engine)] == [
        ("e1", "cars"), ("e1", "ops"), ("e2", "cars"), ("e2", "ops"),
    ]  # fmt: skip


def test_cooldown_per_camera_kind_and_zone(engine: Engine) -> None:
    crowd = EventKind.CROWDING
    write(engine, [ev("c1", crowd, 0), ev("c2", crowd, 30)], build_router(ALERTS))
    write(
        engine,
        [
            ev("c3", crowd, 50),  # within 60 s of c1 (stored): skipped
            ev("c4", crowd, 55, zone="footway"),  # another zone: queued
            ev("c5", crowd, 61),  # 61 s after c1: queued
            ev("c6", crowd, 62, camera="yard"),  # another camera: queued
        ],
        build_router(ALERTS),
    )
    calm = [row[0] for row in outbox_rows(engine) if row[1] == "calm"]
    assert calm == ["c1", "c4", "c5", "c6"]


def test_a_failing_router_costs_alerts_not_events(engine: Engine) -> None:
    def broken(event: Event) -> list[AlertRoute]:
        raise RuntimeError("bug in a router")

    write(engine, [ev("e1", EventKind.DWELL, 0)], broken)
    with engine.connect() as connection:
        assert connection.execute(select(events.c.event_id)).scalars().all() == ["e1"]
    assert outbox_rows(engine) == []


def test_claimed_rows_are_leased_then_delivered_failed_or_dead(engine: Engine) -> None:
    write(engine, [ev("e1", EventKind.STOPPED_VEHICLE, 0)], build_router(ALERTS))
    now = T0 + 100
    first = claim_due(engine, now=now, lease_s=30)
    assert sorted(item.route_id for item in first) == ["cars", "ops"]
    assert claim_due(engine, now=now + 1) == []  # leased
    by_route = {item.route_id: item for item in first}
    mark_delivered(engine, by_route["cars"], now=now + 2)
    mark_failed(engine, by_route["ops"], error="HTTP 500", retry_at=now + 10)
    assert claim_due(engine, now=now + 5) == []
    (again,) = claim_due(engine, now=now + 10)
    assert (again.route_id, again.attempts) == ("ops", 1)
    mark_failed(engine, again, error="timed out", retry_at=None)
    assert outbox_counts(engine) == {"pending": 0, "delivered": 1, "dead": 1}
    with engine.connect() as connection:
        stored = connection.execute(select(alert_outbox)).mappings().all()
    dead = next(row for row in stored if row["state"] == "dead")
    assert (dead["attempts"], dead["last_error"]) == (2, "timed out")
    assert all(SECRET not in str(dict(row)) and "qs-secret" not in str(dict(row)) for row in stored)


def test_an_expired_lease_makes_the_row_due_again(engine: Engine) -> None:
    write(
        engine, [ev("e3", EventKind.CAMERA_FROZEN, 0, label=None, zone=None)], build_router(ALERTS)
    )
    (item,) = claim_due(engine, now=T0, lease_s=10)
    assert claim_due(engine, now=T0 + 9) == []
    (again,) = claim_due(engine, now=T0 + 10)
    assert again.event.event_id == item.event.event_id


def test_released_rows_are_due_at_once_unless_claimed_again(engine: Engine) -> None:
    write(engine, [ev("e1", EventKind.STOPPED_VEHICLE, 0)], build_router(ALERTS))
    claimed = claim_due(engine, now=T0, lease_s=60)
    by_route = {item.route_id: item for item in claimed}
    assert release(engine, [by_route["ops"]], now=T0 + 1) == 1
    (again,) = claim_due(engine, now=T0 + 1, lease_s=60)  # "cars" is still leased
    assert again.route_id == "ops"
    # the first claim's lease is over and the row was claimed again: no longer its to give
    assert release(engine, [by_route["ops"]], now=T0 + 2) == 0
    assert claim_due(engine, now=T0 + 2) == []


def test_retention_removes_an_events_outbox_rows_with_it(engine: Engine) -> None:
    write(
        engine,
        [ev("old", EventKind.STOPPED_VEHICLE, 0), ev("new", EventKind.STOPPED_VEHICLE, 86_400)],
        build_router(ALERTS),
    )
    run_retention(engine, None, retention_s=3600, now=T0 + 86_400)
    assert [row[0] for row in outbox_rows(engine)] == ["new", "new"]
