"""Alembic's environment script: runs migrations on the engine that :func:`upgrade` passes.

Online mode only: feedtag always migrates a live database. Importing this file outside an
Alembic run (pytest's doctest collection does) does nothing.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from feedtag.store.schema import metadata


def run_migrations_online(engine: Engine) -> None:
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()


# Outside an Alembic run the context proxy has no config: nothing to do.
if getattr(context, "config", None) is not None:
    run_migrations_online(context.config.attributes["engine"])
