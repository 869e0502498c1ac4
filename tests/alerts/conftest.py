"""The alert tests use the store suite's backends: SQLite and a real PostgreSQL."""

from ..store.conftest import engine, pg_cluster, pg_url, store_url

__all__ = ["engine", "pg_cluster", "pg_url", "store_url"]
