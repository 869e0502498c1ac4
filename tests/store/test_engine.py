from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from feedtag.errors import StoreError, StoreUnavailable
from feedtag.store.engine import SQLITE_BUSY_TIMEOUT_MS, create_store_engine, store_error
from feedtag.store.migrations import downgrade, upgrade

from ..conftest import free_port


@pytest.mark.parametrize(
    ("url", "dialect"),
    [
        ("sqlite://", "sqlite"),
        ("postgresql://u:pw@127.0.0.1/db", "postgresql"),
        ("postgres://u:pw@127.0.0.1/db", "postgresql"),
        ("postgresql+psycopg://u:pw@127.0.0.1/db", "postgresql"),
    ],
)
def test_urls_map_to_dialects_with_psycopg3(url: str, dialect: str) -> None:
    engine = create_store_engine(url)
    assert engine.dialect.name == dialect
    if dialect == "postgresql":
        assert engine.dialect.driver == "psycopg"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:topsecret@h/db", "unsupported store backend"),
        ("not a url with topsecret", "not a store URL"),
    ],
)
def test_bad_urls_are_store_errors(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as raised:
        create_store_engine(url)
    assert "topsecret" not in str(raised.value)


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'sub' / 'store.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == SQLITE_BUSY_TIMEOUT_MS
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_unreachable_postgres_is_unavailable_and_keeps_the_password_out() -> None:
    engine = create_store_engine(f"postgresql://feedtag:topsecret@127.0.0.1:{free_port()}/db")
    with pytest.raises(Exception) as raised:
        engine.connect()
    error = store_error(raised.value, "store write")
    assert isinstance(error, StoreUnavailable)
    assert "topsecret" not in str(error)
    engine.dispose()


def test_migrations_go_down_and_up_again(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    upgrade(engine)  # idempotent
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    upgrade(engine)
    assert {"events", "tag_segments"} <= set(inspect(engine).get_table_names())
    engine.dispose()
