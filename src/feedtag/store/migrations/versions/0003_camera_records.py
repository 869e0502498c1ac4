"""camera_records

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "camera_records",
        sa.Column("camera_id", sa.String(64), primary_key=True),
        sa.Column("settings", sa.JSON, nullable=True),
        sa.Column("secrets", sa.JSON, nullable=True),
        sa.Column("changes_config", sa.Boolean, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("camera_records")
