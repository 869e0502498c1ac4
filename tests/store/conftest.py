"""Store fixtures: one suite, two backends. ``engine`` is parametrized over SQLite (a file in
WAL mode) and a real PostgreSQL (a throwaway cluster per session, a fresh database per test).
"""

from __future__ import annotations

import itertools
import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from feedtag.store.engine import create_store_engine
from feedtag.store.migrations import upgrade
from feedtag.store.pgcluster import SUPERUSER, PgCluster, find_pg_bin

from ..conftest import require_service

_database_numbers = itertools.count()


def _postgres_available() -> tuple[bool, str]:
    if find_pg_bin() is None:
        return False, "PostgreSQL binaries not found (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            return False, "no postgres system user to run initdb as"
    return True, ""


def started_cluster() -> Iterator[PgCluster]:
    """A throwaway PostgreSQL cluster for as long as the generator runs."""
    available, reason = _postgres_available()
    require_service(available, reason)
    bin_dir = find_pg_bin()
    assert bin_dir is not None
    cluster = PgCluster(bin_dir)
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One cluster shared by the store suite (each test gets its own database)."""
    yield from started_cluster()


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A cluster of one's own, for tests that stop and start the server."""
    yield from started_cluster()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    return pg_cluster.create_database(f"feedtag_test_{next(_database_numbers)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    engine = create_store_engine(store_url)
    upgrade(engine)
    yield engine
    engine.dispose()
