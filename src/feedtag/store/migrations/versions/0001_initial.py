"""events and tag_segments

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("camera_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("rule_id", sa.String(200), nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("ended_at", sa.Double, nullable=True),
        sa.Column("label", sa.String(100), nullable=True),
        sa.Column("zone", sa.String(200), nullable=True),
        sa.Column("track_ids", sa.JSON, nullable=False),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("media_path", sa.String(1000), nullable=True),
    )
    op.create_index("ix_events_camera_time", "events", ["camera_id", "started_at", "event_id"])
    op.create_index("ix_events_time", "events", ["started_at", "event_id"])
    op.create_table(
        "tag_segments",
        sa.Column("segment_id", sa.String(64), primary_key=True),
        sa.Column("camera_id", sa.String(200), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("zone", sa.String(200), nullable=True),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("ended_at", sa.Double, nullable=True),
        sa.Column("max_count", sa.Integer, nullable=False),
    )
    op.create_index(
        "ix_tag_segments_lookup", "tag_segments", ["camera_id", "label", "zone", "started_at"]
    )
    op.create_index("ix_tag_segments_time", "tag_segments", ["started_at", "segment_id"])


def downgrade() -> None:
    op.drop_table("tag_segments")
    op.drop_table("events")
