"""Cameras added, changed and removed through the API are stored and come back with the next
app over the same store, saying where they are defined; their secrets are stored only sealed,
and one that cannot be resolved at start leaves its camera offline with the reason."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine, MetaData, select

from feedtag.api.app import create_app
from feedtag.runtime.catalog import CameraCatalog
from feedtag.runtime.local import LocalEngineControl
from feedtag.runtime.node import NodeEngine
from feedtag.store.engine import create_store_engine
from feedtag.store.migrations import upgrade

from .conftest import CAMERA_A, CAMERA_B, TestClient, api_config

PASSWORD = "hunter2-" + secrets.token_hex(8)
KEY_VARIABLE = "FEEDTAG_SECRET_KEY"


@contextmanager
def running_app(data_dir: Path, admin: str) -> Iterator[TestClient]:
    """An app as ``feedtag run`` builds it: the node runs the catalog's cameras."""
    config = api_config(data_dir, admin)
    store = create_store_engine(config.store.resolved_url())
    upgrade(store)
    catalog = CameraCatalog(config, store)
    node = NodeEngine(config, cameras=catalog.runnable())
    app = create_app(config, LocalEngineControl(node), store=store, web_dir=None, catalog=catalog)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            client.headers["Authorization"] = f"Bearer {admin}"
            yield client
    finally:
        node.stop()
        store.dispose()


def listed(client: TestClient) -> dict[str, dict[str, Any]]:
    answer = client.get("/api/v1/cameras")
    assert answer.status_code == 200
    return {item["id"]: item for item in answer.json()["items"]}


def every_row(data_dir: Path, admin: str) -> str:
    """Every row of every table of the store, as text."""
    store: Engine = create_store_engine(api_config(data_dir, admin).store.resolved_url())
    metadata = MetaData()
    metadata.reflect(store)
    with store.connect() as connection:
        rows = [
            repr(tuple(row)) for table in metadata.sorted_tables
            for row in connection.execute(select(table))
        ]  # fmt: skip
    store.dispose()
    assert rows
    return "\n".join(rows)


def test_changes_outlive_the_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VARIABLE, Fernet.generate_key().decode())
    admin = secrets.token_urlsafe(32)
    with running_app(tmp_path, admin) as client:
        assert {k: v["defined_in"] for k, v in listed(client).items()} == {
            CAMERA_A: "config", CAMERA_B: "config"
        }  # fmt: skip
        body = {"id": "gate", "url": "rtsp://u@203.0.113.7/s", "password": PASSWORD,
                "enabled": False}  # fmt: skip
        added = client.post("/api/v1/cameras", json=body)
        assert added.status_code == 201, added.text
        assert added.json()["defined_in"] == "api"
        changed = client.patch(f"/api/v1/cameras/{CAMERA_A}", json={"analysis_fps": 3.0})
        assert changed.json()["defined_in"] == "config+api"
        assert client.delete(f"/api/v1/cameras/{CAMERA_B}").status_code == 204
    with running_app(tmp_path, admin) as client:
        cameras = listed(client)
        assert sorted(cameras) == [CAMERA_A, "gate"]
        assert cameras[CAMERA_A]["defined_in"] == "config+api"
        assert cameras[CAMERA_A]["analysis_fps"] == 3.0
        assert cameras["gate"]["url"] == "rtsp://u:***@203.0.113.7/s"
        assert PASSWORD not in client.get("/api/v1/cameras/gate").text
        camera = client.app.state.api.registry.get("gate")  # type: ignore[attr-defined]
        assert camera.url.password.get_secret_value() == PASSWORD
    rows = every_row(tmp_path, admin)
    assert "fernet:" in rows and PASSWORD not in rows and "hunter2@" not in rows


def test_a_clear_password_without_a_key_is_refused(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv(KEY_VARIABLE, raising=False)
    admin = secrets.token_urlsafe(32)
    with running_app(tmp_path, admin) as client:
        body = {"id": "gate", "url": "rtsp://u@203.0.113.7/s", "password": PASSWORD}
        answer = client.post("/api/v1/cameras", json=body)
        assert answer.status_code == 422
        ((problem,),) = [answer.json()["detail"]]
        assert problem["loc"] == ["body", "password"]
        assert KEY_VARIABLE in problem["msg"] and "FEEDTAG_CAMERA_" in problem["msg"]
        assert PASSWORD not in answer.text
        assert "gate" not in listed(client)
        # a config camera's own password needs no key: it stays in the file
        changed = client.patch(f"/api/v1/cameras/{CAMERA_B}", json={"analysis_fps": 2.0})
        assert changed.status_code == 200, changed.text
    assert PASSWORD not in every_row(tmp_path, admin)


def test_an_unresolvable_secret_leaves_its_camera_offline(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv(KEY_VARIABLE, raising=False)
    monkeypatch.setenv("FEEDTAG_CAMERA_GATE_PW", PASSWORD)
    admin = secrets.token_urlsafe(32)
    with running_app(tmp_path, admin) as client:
        body = {"id": "gate", "url": "rtsp://u@203.0.113.7/s",
                "password": "${FEEDTAG_CAMERA_GATE_PW}"}  # fmt: skip
        answer = client.post("/api/v1/cameras", json=body)
        assert answer.status_code == 201, answer.text
        lane = {"id": "lane", "url": "rtsp://203.0.113.8/s"}
        assert client.post("/api/v1/cameras", json=lane).status_code == 201
        missing = {**body, "id": "gate2", "password": "${FEEDTAG_CAMERA_NOT_SET}"}
        refused = client.post("/api/v1/cameras", json=missing)
        assert refused.status_code == 422
        assert "FEEDTAG_CAMERA_NOT_SET is not set" in refused.json()["detail"][0]["msg"]
    monkeypatch.delenv("FEEDTAG_CAMERA_GATE_PW")
    with running_app(tmp_path, admin) as client:
        gate = listed(client)["gate"]
        assert gate["defined_in"] == "api"
        assert gate["status"]["state"] == "offline"
        assert gate["status"]["reason"] == (
            "password: environment variable FEEDTAG_CAMERA_GATE_PW is not set"
        )
        node = client.app.state.api.engine  # type: ignore[attr-defined]
        assert [c.id for c in node.cameras()] == ["lane"]  # the others run
        monkeypatch.setenv("FEEDTAG_CAMERA_GATE_PW", PASSWORD)
        restarted = client.post("/api/v1/cameras/gate/restart")
        assert restarted.status_code == 200, restarted.text
        assert [c.id for c in node.cameras()] == ["lane", "gate"]
        assert node.cameras()[1].url.password.get_secret_value() == PASSWORD
    assert PASSWORD not in every_row(tmp_path, admin)
