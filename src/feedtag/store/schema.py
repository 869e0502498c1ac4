"""The store's tables (SQLAlchemy 2 Core) and the conversions between rows and core types.

Two tables of what cameras saw: ``events`` (one row per :class:`~feedtag.core.Event`, keyed
by its deterministic ``event_id``) and ``tag_segments`` (one row per
:class:`~feedtag.core.TagSegment`, upserted as the segment grows and closes). Two tables of
who may look: ``api_tokens`` (hashed API tokens, :mod:`feedtag.store.tokens`) and
``audit_log`` (every read of events and media, :mod:`feedtag.store.audit`). One table of
alerts still to send: ``alert_outbox`` (one row per event and alert route, written in the
event's transaction, :mod:`feedtag.store.outbox`); cameras changed through the API:
``camera_records`` (:mod:`feedtag.store.cameras`). Times are Unix
seconds as double precision, so the same queries run on SQLite and PostgreSQL. The schema
is created and evolved by the Alembic migrations in :mod:`feedtag.store.migrations`; this
module is what the code queries.

>>> sorted(metadata.tables)
['alert_outbox', 'api_tokens', 'audit_log', 'camera_records', 'events', 'tag_segments']
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from feedtag.core import Event, EventKind, TagSegment

#: the attribute of an event that names its snapshot file, relative to the media root
SNAPSHOT_ATTRIBUTE: Final = "snapshot"

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("camera_id", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("rule_id", String(200), nullable=False),
    Column("started_at", Double, nullable=False),
    Column("ended_at", Double, nullable=True),
    Column("label", String(100), nullable=True),
    Column("zone", String(200), nullable=True),
    Column("track_ids", JSON, nullable=False),
    Column("attributes", JSON, nullable=False),
    # Copied out of attributes so that retention finds the files without parsing JSON.
    Column("media_path", String(1000), nullable=True),
    # The writer's stamp of the transaction that stored the event, and of the one that applied
    # its end: the event's places in the live stream (feedtag.store.feed).
    Column("stored_at", Double, nullable=True),
    Column("end_stored_at", Double, nullable=True),
    # Search pages newest first per camera, and retention scans by time.
    Index("ix_events_camera_time", "camera_id", "started_at", "event_id"),
    Index("ix_events_time", "started_at", "event_id"),
    Index("ix_events_stored", "stored_at"),
    Index("ix_events_end_stored", "end_stored_at"),
)

tag_segments = Table(
    "tag_segments",
    metadata,
    Column("segment_id", String(64), primary_key=True),
    Column("camera_id", String(200), nullable=False),
    Column("label", String(100), nullable=False),
    Column("zone", String(200), nullable=True),
    Column("started_at", Double, nullable=False),
    Column("ended_at", Double, nullable=True),
    Column("max_count", Integer, nullable=False),
    Index("ix_tag_segments_lookup", "camera_id", "label", "zone", "started_at"),
    Index("ix_tag_segments_time", "started_at", "segment_id"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    # sha256 hex of the token; the token itself is never stored
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    # null: every camera; else a JSON list of camera ids
    Column("cameras", JSON, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("revoked_at", Double, nullable=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("audit_id", Integer, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("token_id", String(32), nullable=False),
    Column("token_name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("action", String(64), nullable=False),
    Column("camera_id", String(200), nullable=True),
    Column("object_id", String(200), nullable=True),
    Column("detail", Text, nullable=True),
    Column("client", String(100), nullable=True),
    Column("status", Integer, nullable=False),
    Index("ix_audit_log_time", "at", "audit_id"),
    Index("ix_audit_log_token_time", "token_id", "at"),
)

alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("route_id", String(64), primary_key=True),
    # Copied from the event for the cooldown check (same route, camera, kind and zone).
    Column("camera_id", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("zone", String(200), nullable=True),
    Column("event_at", Double, nullable=False),
    # pending -> delivered, or pending -> dead after the last attempt
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Double, nullable=False),
    # what went wrong last ("HTTP 500", "timed out"); never a secret or a URL
    Column("last_error", Text, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("delivered_at", Double, nullable=True),
    Index("ix_alert_outbox_due", "state", "next_attempt_at"),
    Index("ix_alert_outbox_cooldown", "route_id", "camera_id", "kind", "event_at"),
)


camera_records = Table(
    "camera_records",
    metadata,
    Column("camera_id", String(64), primary_key=True),
    # the camera as config input without its secrets; null for a removed config camera
    Column("settings", JSON, nullable=True),
    # the secrets, each sealed (feedtag.store.sealing): never clear text
    Column("secrets", JSON, nullable=True),
    # written over a camera of the config file (else added through the API)
    Column("changes_config", Boolean, nullable=False),
    # a config camera removed through the API
    Column("deleted", Boolean, nullable=False),
    Column("updated_at", Double, nullable=False),
)


def event_row(event: Event) -> dict[str, Any]:
    """The ``events`` row of an event.

    >>> from feedtag.core import EventKind
    >>> e = Event("e1", "door", EventKind.DWELL, "r", 1.0e9, attributes={"snapshot": "a.jpg"})
    >>> event_row(e)["media_path"]
    'a.jpg'
    """
    row = event.to_dict()
    snapshot = event.attributes.get(SNAPSHOT_ATTRIBUTE)
    row["media_path"] = snapshot if isinstance(snapshot, str) and snapshot else None
    return row


def row_event(row: Any) -> Event:
    """The event of an ``events`` row (a mapping or a SQLAlchemy ``Row``)."""
    data = row._mapping if hasattr(row, "_mapping") else row
    return Event(
        event_id=data["event_id"],
        camera_id=data["camera_id"],
        kind=EventKind(data["kind"]),
        rule_id=data["rule_id"],
        started_at=data["started_at"],
        ended_at=data["ended_at"],
        label=data["label"],
        zone=data["zone"],
        track_ids=tuple(int(i) for i in data["track_ids"]),
        attributes=dict(data["attributes"]),
    )


def row_segment(row: Any) -> TagSegment:
    """The tag segment of a ``tag_segments`` row (a mapping or a SQLAlchemy ``Row``)."""
    data = row._mapping if hasattr(row, "_mapping") else row
    return TagSegment(
        segment_id=data["segment_id"],
        camera_id=data["camera_id"],
        label=data["label"],
        zone=data["zone"],
        started_at=data["started_at"],
        ended_at=data["ended_at"],
        max_count=data["max_count"],
    )
