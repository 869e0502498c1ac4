"""The server the browser tests drive: the real node engine on live-paced looping footage,
with the real API (``feedtag.api.app.create_app``) served by uvicorn on a free port.

``tests/api/server.py`` (the API's own test helper) is used when it exists; this module's
:func:`start_dashboard_server` is the fallback with the same result type, :class:`Served`.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

START_TIMEOUT_S: Final = 30.0
HTTP_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True)
class Served:
    """A running API and dashboard: where it is, the tokens to sign in with, and which
    cameras have live feeds."""

    url: str
    admin_token: str
    viewer_token: str
    #: the cameras the viewer token is limited to (None: all)
    viewer_cameras: list[str] | None
    #: cameras with running feeds, which must show thumbnails
    feed_cameras: list[str]

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=HTTP_TIMEOUT_S,
        )


def dashboard_config(
    clips: dict[str, Path], models_dir: Path, data_dir: Path, admin_token: str
) -> dict[str, Any]:
    """Two live-paced looping cameras on real footage with the demo's zones, lines and
    rules, thumbnails renewed every second."""
    from feedtag.bench.demo import BIKES_ANALYTICS, VTEST_ANALYTICS

    media_root = {path.parent for path in clips.values()}
    assert len(media_root) == 1, "the clips must share one folder"
    cameras = [
        {
            "id": name,
            "name": f"{name} (looping footage)",
            "url": path.name,
            "loop": True,
            "analysis_fps": 2.0,
            "analytics": BIKES_ANALYTICS if name.startswith("bikes") else VTEST_ANALYTICS,
        }
        for name, path in clips.items()
    ]
    return {
        "media_root": str(media_root.pop()),
        "detector": {"models_dir": str(models_dir)},
        "store": {"data_dir": str(data_dir), "thumbnail_interval_s": 1},
        "api": {"admin_token": admin_token, "port": 0},
        "cameras": cameras,
    }


@contextlib.contextmanager
def start_dashboard_server(
    clips: dict[str, Path], models_dir: Path, data_dir: Path
) -> Iterator[Served]:
    """The engine and the API on 127.0.0.1; a viewer token limited to the first camera."""
    import uvicorn

    from feedtag.api.app import close_app, create_app
    from feedtag.config.loading import validate_config
    from feedtag.runtime.node import NodeEngine

    from ..conftest import free_port

    admin_token = secrets.token_urlsafe(32)
    config = validate_config(dashboard_config(clips, models_dir, data_dir, admin_token))
    engine = NodeEngine.from_config(config)
    engine.start()
    app = create_app(config, engine)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="dashboard-api", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url)
        first = next(iter(clips))
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=10
        ) as client:
            made = client.post(
                "/api/v1/tokens", json={"name": "wall screen", "role": "viewer", "cameras": [first]}
            )
            made.raise_for_status()
            viewer_token = str(made.json()["token"])
        yield Served(url, admin_token, viewer_token, [first], list(clips))
    finally:
        close_app(app)
        server.should_exit = True
        thread.join(10)
        engine.stop(deadline_s=8)


def _wait_until_up(url: str) -> None:
    end = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > end:
            raise TimeoutError(f"the API did not answer on {url} within {START_TIMEOUT_S} s")
        time.sleep(0.1)
