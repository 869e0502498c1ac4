"""The live stream with events published on the bus directly: what each caller receives,
and what a reader that falls behind is told."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from feedtag.api.app import close_app, create_app
from feedtag.core import Event, EventKind
from feedtag.runtime.local import LocalEngineControl
from feedtag.runtime.node import NodeEngine
from feedtag.store.tokens import Role, create_token

from .conftest import CAMERA_A, CAMERA_B, TestClient, api_config


@pytest.fixture
def streaming(tmp_path: Path) -> Iterator[tuple[TestClient, Any, str]]:
    admin = secrets.token_urlsafe(32)
    config = api_config(tmp_path, admin, stream_queue_size=4)
    app = create_app(config, LocalEngineControl(NodeEngine(config)))
    with TestClient(app) as client:
        yield client, app, admin
    close_app(app)


def event(camera_id: str, i: int) -> Event:
    return Event(f"{camera_id}-{i}", camera_id, EventKind.ZONE_ENTER, "r", 1e9 + i)


def read_stream(client: TestClient, token: str, path: str, until: Any) -> list[tuple[str, Any]]:
    """Messages of the stream until ``until(messages)`` is true; the server is then told to
    close its streams."""
    messages: list[tuple[str, Any]] = []
    with client.stream("GET", path, headers={"Authorization": f"Bearer {token}"}) as answer:
        assert answer.status_code == 200
        name = "message"
        for line in answer.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                messages.append((name, json.loads(line[6:])))
                if until(messages):
                    client.app.state.api.closing.set()
                    break
    return messages


def publish_when_subscribed(app: Any, events: list[Event]) -> threading.Thread:
    bus = app.state.api.bus

    def run() -> None:
        while bus.subscribers == 0:
            threading.Event().wait(0.01)
        for item in events:
            bus.publish(item)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("who", "path", "expected"),
    [
        ("viewer_a", "/api/v1/stream", {CAMERA_A}),
        ("viewer", "/api/v1/stream", {CAMERA_A, CAMERA_B}),
        ("viewer", f"/api/v1/stream?camera={CAMERA_B}", {CAMERA_B}),
        ("viewer_a", f"/api/v1/stream?camera={CAMERA_B}", set()),
    ],
)
def test_each_caller_gets_only_its_cameras(
    streaming: tuple[TestClient, Any, str], who: str, path: str, expected: set[str]
) -> None:
    client, app, _ = streaming
    cameras = [CAMERA_A] if who == "viewer_a" else None
    token, _ = create_token(app.state.api.store, who, Role.VIEWER, cameras)
    # both cameras interleaved, then an end marker on each (the newest: never dropped)
    items = [event(camera, i) for i in range(3) for camera in (CAMERA_A, CAMERA_B)]
    publish_when_subscribed(app, [*items, event(CAMERA_A, 99), event(CAMERA_B, 99)])

    def done(messages: list[tuple[str, Any]]) -> bool:
        seen = {data["event_id"] for name, data in messages if name == "event"}
        return bool(seen & {f"{camera}-99" for camera in expected}) or not expected

    if not expected:
        threading.Timer(1.0, app.state.api.closing.set).start()
    messages = read_stream(client, token, path, done)
    cameras_seen = {data["camera_id"] for name, data in messages if name == "event"}
    assert cameras_seen <= expected
    if expected:
        assert cameras_seen & expected


def test_a_reader_that_falls_behind_is_told_how_many_it_lost(
    streaming: tuple[TestClient, Any, str],
) -> None:
    client, app, admin = streaming
    publish_when_subscribed(app, [event(CAMERA_A, i) for i in range(2000)])
    messages = read_stream(
        client, admin, "/api/v1/stream", lambda ms: any(name == "dropped" for name, _ in ms)
    )
    [dropped] = [data for name, data in messages if name == "dropped"]
    assert dropped["dropped"] > 0


def test_ends_of_lasting_events_are_streamed_to_who_may_see_them(
    streaming: tuple[TestClient, Any, str],
) -> None:
    from feedtag.core import EventEnd

    client, app, _ = streaming
    token, _ = create_token(app.state.api.store, "a-only", Role.VIEWER, [CAMERA_A])
    started = event(CAMERA_A, 1)
    hidden = EventEnd("b-secret", CAMERA_B, 1e9 + 4)
    publish_when_subscribed(app, [started, hidden, EventEnd.of(started, 1e9 + 30)])
    messages = read_stream(
        client, token, "/api/v1/stream", lambda ms: any(name == "end" for name, _ in ms)
    )
    assert [name for name, _ in messages] == ["event", "end"]
    assert messages[1][1] == {"event_id": started.event_id, "camera_id": CAMERA_A,
                              "ended_at": 1e9 + 30}  # fmt: skip
