"""The API's tables on PostgreSQL: tokens, the audit log and an audited read through the
app, on a real throwaway cluster (the same helper as the store suite)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from feedtag.store.audit import AuditEntry, AuditQuery, search_audit, write_audit
from feedtag.store.engine import create_store_engine
from feedtag.store.migrations import downgrade, upgrade
from feedtag.store.pgcluster import PgCluster
from feedtag.store.tokens import Role, create_token, lookup_token, revoke_token

from ..store.conftest import started_cluster

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    yield from started_cluster()


@pytest.fixture
def pg(cluster: PgCluster) -> Iterator[Engine]:
    engine = create_store_engine(cluster.create_database(f"feedtag_api_{time.time_ns()}"))
    upgrade(engine)
    yield engine
    engine.dispose()


def test_tokens_on_postgresql(pg: Engine) -> None:
    token, record = create_token(pg, "wall", Role.VIEWER, ["door", "gate"])
    assert lookup_token(pg, token) == record
    assert revoke_token(pg, record.token_id)
    assert lookup_token(pg, token) is None


def test_audit_pages_on_postgresql(pg: Engine) -> None:
    for i in range(5):
        write_audit(pg, AuditEntry(1e9 + i, "t", "wall", "viewer", "events.get", "door",
                                   f"e{i}", None, "127.0.0.1", 200))  # fmt: skip
    first = search_audit(pg, AuditQuery(limit=3))
    assert [e.object_id for e in first.items] == ["e4", "e3", "e2"]
    rest = search_audit(pg, AuditQuery(limit=3, cursor=first.next_cursor))
    assert [e.object_id for e in rest.items] == ["e1", "e0"] and rest.next_cursor is None
    assert len(search_audit(pg, AuditQuery(principals=["wall"])).items) == 5


def test_migration_0002_goes_down_and_up(pg: Engine) -> None:
    downgrade(pg, "0001")
    upgrade(pg)
    create_token(pg, "again", Role.ADMIN)


def test_the_app_reads_and_audits_on_postgresql(pg: Engine, tmp_path: Path) -> None:
    from feedtag.api.app import create_app
    from feedtag.runtime.local import LocalEngineControl
    from feedtag.runtime.node import NodeEngine

    from .conftest import TestClient, api_config, seed

    config = api_config(tmp_path, "a" * 40)
    app = create_app(config, LocalEngineControl(NodeEngine(config)), store=pg)
    events = seed(pg, app)
    headers = {"Authorization": "Bearer " + "a" * 40}
    with TestClient(app) as client:
        page = client.get("/api/v1/events?camera=cam-a", headers=headers).json()
        assert [e["event_id"] for e in page["items"]] == [events["cam-a"].event_id]
        stats = client.get("/api/v1/stats", headers=headers).json()
        assert stats["total"] == 2 and stats["by_kind"] == {"line_cross": 2}
        audit = client.get("/api/v1/audit", headers=headers).json()["items"]
        assert [entry["action"] for entry in audit] == ["stats", "events.search"]
