"""A real feedtag API server for tests: the real NodeEngine, the real FastAPI app, real
uvicorn on a free 127.0.0.1 port, a real SQLite store in ``data_dir``.

Used by the API's end-to-end tests and by the dashboard's browser tests::

    from tests.api.server import start_api_server

    with start_api_server(tmp_path, cameras=[{"id": "door", "url": rtsp_server.url("vtest")}],
                          models_dir=models_dir) as server:
        viewer = server.viewer_token(cameras=["door"])
        httpx.get(server.base_url + "/api/v1/cameras", headers=server.auth(viewer))

``models_dir`` None runs ingest only (no detector, so no events or thumbnails from the
cameras); :meth:`RunningServer.insert_event` and :meth:`RunningServer.write_thumbnail` put
known events and anonymized images in the store for tests that need exact data.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from sqlalchemy import Engine

from feedtag.api.app import close_app, create_app
from feedtag.config import validate_config
from feedtag.config.models import FeedtagConfig
from feedtag.core import Detections, Event, EventKind
from feedtag.runtime.local import LocalEngineControl
from feedtag.runtime.node import NodeEngine
from feedtag.runtime.serve import ApiServer
from feedtag.store.media import MediaStore
from feedtag.store.schema import event_row
from feedtag.store.tokens import Role, create_token
from feedtag.store.writer import insert_events
from feedtag.vision.anonymize import Anonymized, cover_boxes


@dataclass
class RunningServer:
    """A started node engine and API server; stop it (or leave the ``with``) when done."""

    base_url: str
    admin_token: str
    config: FeedtagConfig
    engine: NodeEngine
    app: Any
    server: ApiServer
    data_dir: Path
    _stopped: bool = field(default=False)

    @property
    def store(self) -> Engine:
        store: Engine = self.app.state.api.store
        return store

    @property
    def media(self) -> MediaStore:
        media: MediaStore = self.app.state.api.media
        return media

    def token(
        self, role: Role | str = Role.VIEWER, cameras: Sequence[str] | None = None,
        name: str | None = None,
    ) -> str:  # fmt: skip
        """A new stored token of ``role`` (restricted to ``cameras`` unless None)."""
        role = Role(role)
        token, _ = create_token(self.store, name or f"test {role.value}", role, cameras)
        return token

    def viewer_token(self, cameras: Sequence[str] | None = None) -> str:
        return self.token(Role.VIEWER, cameras)

    def operator_token(self, cameras: Sequence[str] | None = None) -> str:
        return self.token(Role.OPERATOR, cameras)

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        """The request headers that carry ``token``."""
        return {"Authorization": f"Bearer {token}"}

    def insert_event(self, camera_id: str, kind: EventKind | str = EventKind.LINE_CROSS,
                     **options: Any) -> Event:  # fmt: skip
        """Store one event; see :func:`insert_event`."""
        return insert_event(self.store, self.media, camera_id, kind, **options)

    def write_thumbnail(self, camera_id: str) -> Path:
        """An anonymized thumbnail for ``camera_id`` (a grey frame)."""
        return self.media.write_thumbnail(camera_id, _grey_image())

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.server.stop()
        self.engine.stop()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


def _grey_image() -> Anonymized:
    """A grey frame: nobody in it, nothing to cover."""
    return cover_boxes(np.full((90, 160, 3), 128, np.uint8), np.zeros((0, 4), np.float32))


def insert_event(
    store: Engine,
    media: MediaStore,
    camera_id: str,
    kind: EventKind | str = EventKind.LINE_CROSS,
    *,
    started_at: float | None = None,
    label: str | None = "person",
    zone: str | None = None,
    attributes: dict[str, Any] | None = None,
    snapshot: bool = True,
    event_id: str | None = None,
) -> Event:
    """Store one event, with an anonymized snapshot (a grey frame) unless ``snapshot`` is
    False."""
    started = time.time() if started_at is None else started_at
    event = Event(
        event_id or secrets.token_hex(16), camera_id, EventKind(kind), "test-rule", started,
        label=label, zone=zone, attributes=dict(attributes or {}),
    )  # fmt: skip
    if snapshot:
        path = media.write_snapshot(
            camera_id, event.event_id, at=started, image=_grey_image(),
            detections=Detections.empty(),
        )  # fmt: skip
        event.attributes["snapshot"] = media.relative(path)
    with store.begin() as connection:
        insert_events(connection, [event_row(event)])
    return event


def server_config(
    data_dir: Path,
    cameras: Sequence[dict[str, Any]] | None = None,
    *,
    admin_token: str | None = None,
    media_root: Path | None = None,
    models_dir: Path | None = None,
    api: dict[str, Any] | None = None,
) -> tuple[FeedtagConfig, str]:
    """The config of a test server and its admin token."""
    token = admin_token or secrets.token_urlsafe(32)
    data: dict[str, Any] = {
        "store": {"data_dir": str(data_dir), "thumbnail_interval_s": 1.0},
        "detector": {"enabled": models_dir is not None},
        "engine": {"status_interval_s": 1.0},
        "api": {"host": "127.0.0.1", "port": 0, "admin_token": token,
                "allow_networks": ["127.0.0.0/8", "::1/128"], **(api or {})},
        "cameras": list(cameras or []),
    }  # fmt: skip
    if models_dir is not None:
        data["detector"]["models_dir"] = str(models_dir)
    if media_root is not None:
        data["media_root"] = str(media_root)
    return validate_config(data, source="test server"), token


def start_api_server(
    data_dir: Path,
    cameras: Sequence[dict[str, Any]] | None = None,
    *,
    admin_token: str | None = None,
    media_root: Path | None = None,
    models_dir: Path | None = None,
    api: dict[str, Any] | None = None,
    web_dir: Path | None = None,
) -> RunningServer:
    """Start the node engine with ``cameras`` and serve the API on a free port.

    ``cameras`` are config dicts (as in YAML); files need ``media_root``. ``api`` overrides
    api settings. ``web_dir`` None serves the package's dashboard.
    """
    config, token = server_config(
        data_dir, cameras, admin_token=admin_token, media_root=media_root,
        models_dir=models_dir, api=api,
    )  # fmt: skip
    engine = NodeEngine.from_config(config)
    engine.start()
    try:
        options: dict[str, Any] = {} if web_dir is None else {"web_dir": web_dir}
        app = create_app(config, LocalEngineControl(engine), **options)
        server = ApiServer(app, "127.0.0.1", 0, before_stop=lambda: close_app(app))
        server.start()
    except BaseException:
        engine.stop()
        raise
    return RunningServer(server.url, token, config, engine, app, server, data_dir)


def running_servers(*servers: RunningServer) -> Iterator[RunningServer]:
    """Yield each server and stop them all afterwards (for fixtures)."""
    try:
        yield from servers
    finally:
        for server in servers:
            server.stop()
