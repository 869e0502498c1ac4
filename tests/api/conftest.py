"""API fixtures: a real app (FastAPI over a real NodeEngine, behind its control interface, and
a real SQLite store) with two cameras, an event with snapshot and clip on each, thumbnails,
and a token per role.

The large tables use FastAPI's TestClient (in-process, no sockets); the end-to-end tests use
:mod:`tests.api.server` (real uvicorn, real footage).
"""

from __future__ import annotations

import secrets
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine

from feedtag.api.app import create_app
from feedtag.config import validate_config
from feedtag.core import Event
from feedtag.runtime.local import LocalEngineControl
from feedtag.runtime.node import NodeEngine
from feedtag.store.tokens import Role, create_token
from feedtag.vision.anonymize import cover_boxes

from .server import insert_event

with warnings.catch_warnings():
    # Starlette asks for httpx2 in its TestClient; httpx is what the project depends on.
    warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
    from fastapi.testclient import TestClient

CAMERA_A = "cam-a"
CAMERA_B = "cam-b"
XSS_NAME = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


@dataclass
class Setup:
    """One app with known objects and a token per caller kind."""

    client: TestClient
    app: Any
    store: Engine
    data_dir: Path
    web_dir: Path
    tokens: dict[str, str | None]
    events: dict[str, Event]  # camera id -> an event with snapshot and clip
    extra: dict[str, Any] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        token = self.tokens[who]
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    def get(self, who: str, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, headers=self.headers(who), **kwargs)


def make_web_dir(root: Path) -> Path:
    web = root / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>feedtag</title>\n")
    (web / "app.js").write_text("export const ok = true;\n")
    return web


def api_config(data_dir: Path, admin_token: str, **api: Any) -> Any:
    cameras = [
        {"id": CAMERA_A, "name": "Camera A", "url": "rtsp://cam-a.example/s", "enabled": False},
        {"id": CAMERA_B, "name": XSS_NAME, "url": "rtsp://u:hunter2@cam-b.example/s",
         "enabled": False},
    ]  # fmt: skip
    data = {
        "store": {"data_dir": str(data_dir)},
        "detector": {"enabled": False},
        "api": {"admin_token": admin_token, **api},
        "cameras": cameras,
    }
    return validate_config(data, source="test")


def seed(store: Engine, app: Any) -> dict[str, Event]:
    """An event per camera with a snapshot and a clip file, and a thumbnail per camera."""
    media = app.state.api.media
    events = {}
    for camera_id in (CAMERA_A, CAMERA_B):
        event_id, at = secrets.token_hex(16), time.time()
        clip = media.event_path("clips", camera_id, event_id, at)
        clip.parent.mkdir(parents=True, exist_ok=True)
        clip.write_bytes(b"\x00\x00\x00\x18ftypmp42")  # a file under the media root
        events[camera_id] = insert_event(
            store, media, camera_id, label=XSS_NAME, event_id=event_id, started_at=at,
            attributes={"clip": media.relative(clip)},
        )  # fmt: skip
        grey = np.full((90, 160, 3), 128, np.uint8)  # nobody in it
        media.write_thumbnail(camera_id, cover_boxes(grey, np.zeros((0, 4), np.float32)))
    return events


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    admin = secrets.token_urlsafe(32)
    config = api_config(tmp_path / "data", admin)
    node = NodeEngine(config)
    web = make_web_dir(tmp_path)
    app = create_app(config, LocalEngineControl(node), web_dir=web)
    store = app.state.api.store
    tokens: dict[str, str | None] = {"anonymous": None, "config_admin": admin}
    for who, role, cameras in (
        ("viewer_a", Role.VIEWER, [CAMERA_A]),
        ("viewer", Role.VIEWER, None),
        ("operator_a", Role.OPERATOR, [CAMERA_A]),
        ("operator", Role.OPERATOR, None),
        ("admin_a", Role.ADMIN, [CAMERA_A]),
        ("admin", Role.ADMIN, None),
    ):
        tokens[who] = create_token(store, who, role, cameras)[0]
    events = seed(store, app)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Setup(client, app, store, tmp_path / "data", web, tokens, events)
    node.stop()
    store.dispose()
