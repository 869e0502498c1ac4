"""alert_outbox

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_outbox",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("route_id", sa.String(64), primary_key=True),
        sa.Column("camera_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("zone", sa.String(200), nullable=True),
        sa.Column("event_at", sa.Double, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Double, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("delivered_at", sa.Double, nullable=True),
    )
    op.create_index("ix_alert_outbox_due", "alert_outbox", ["state", "next_attempt_at"])
    op.create_index(
        "ix_alert_outbox_cooldown", "alert_outbox", ["route_id", "camera_id", "kind", "event_at"]
    )


def downgrade() -> None:
    op.drop_table("alert_outbox")
