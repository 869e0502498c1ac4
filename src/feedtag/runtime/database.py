"""Opening the store's database: the one place it is created and migrated.

``feedtag run`` and ``feedtag demo`` open it once, in the composition root
(:mod:`feedtag.runtime.app`), and hand the engine to the store writer, the retention job and
the API; the CLI's store commands (``events``, ``tokens``, ``audit``) open it here too.
"""

from __future__ import annotations

from sqlalchemy import Engine

from feedtag.config.models import StoreConfig
from feedtag.store.engine import create_store_engine
from feedtag.store.migrations import upgrade


def open_database(settings: StoreConfig) -> Engine:
    """The configured database, migrated to the current schema (an empty or older store
    answers too)."""
    engine = create_store_engine(settings.resolved_url())
    upgrade(engine)
    return engine
