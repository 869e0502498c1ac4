"""events.stored_at, events.end_stored_at: where an event sits in the live stream

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows stored before this revision have neither: they are older than any stream position.
    op.add_column("events", sa.Column("stored_at", sa.Double, nullable=True))
    op.add_column("events", sa.Column("end_stored_at", sa.Double, nullable=True))
    op.create_index("ix_events_stored", "events", ["stored_at"])
    op.create_index("ix_events_end_stored", "events", ["end_stored_at"])


def downgrade() -> None:
    op.drop_index("ix_events_end_stored", "events")
    op.drop_index("ix_events_stored", "events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("end_stored_at")
        batch.drop_column("stored_at")
