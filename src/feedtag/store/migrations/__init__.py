"""Alembic migrations for the store, run programmatically (no ``alembic.ini`` needed).

``env.py`` and ``versions/`` ship as package data; :func:`upgrade` points Alembic at this
folder and hands it a live connection, so migrations run the same way from the CLI, the
tests and the node at start-up.

>>> from sqlalchemy import create_engine, inspect
>>> engine = create_engine("sqlite://")
>>> upgrade(engine)
>>> print(" ".join(sorted(inspect(engine).get_table_names())))
alembic_version alert_outbox api_tokens audit_log camera_records events tag_segments
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent


def alembic_config(engine: Engine) -> Config:
    """An Alembic config for this package's scripts, bound to ``engine``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # The URL is never rendered into the config: env.py takes the engine from attributes,
    # so the password cannot end up in Alembic's log lines.
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database behind ``engine`` up to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database back to ``revision`` (``"base"`` drops every table)."""
    command.downgrade(alembic_config(engine), revision)
