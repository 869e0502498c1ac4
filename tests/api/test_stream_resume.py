"""A live stream that resumes: events go from a real store writer to the stream with ids, and
a client that reconnects with ``Last-Event-ID`` gets exactly what it missed, then the live
feed, without duplicates at the seam and only for the cameras its token may see."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from feedtag.api.app import close_app, create_app
from feedtag.api.stream import RESUME_MAX_AGE_S
from feedtag.core import Event, EventEnd, EventKind
from feedtag.runtime.local import LocalEngineControl
from feedtag.runtime.node import NodeEngine
from feedtag.store.feed import Phase, Position, Stored
from feedtag.store.spool import Spool
from feedtag.store.tokens import Role, create_token
from feedtag.store.writer import StoreWriter

from .conftest import CAMERA_A, CAMERA_B, TestClient, api_config


@dataclass(frozen=True)
class Message:
    id: str | None
    name: str
    data: Any


@dataclass
class Served:
    client: TestClient
    app: Any
    writer: StoreWriter
    #: every item the writer announced, in order
    announced: list[Stored]

    def store(self, *items: Event | EventEnd) -> None:
        for item in items:
            self.writer.put(item)
        assert self.writer.flush(10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    admin = secrets.token_urlsafe(32)
    config = api_config(tmp_path, admin, stream_queue_size=64)
    app = create_app(config, LocalEngineControl(NodeEngine(config)))
    # The engine's store writer feeds the bus in a running node; here the test owns one.
    writer = StoreWriter(app.state.api.store, Spool(tmp_path / "spool"), max_wait_s=0.02)
    announced: list[Stored] = []
    writer.listeners += [announced.append, app.state.api.bus.publish]
    writer.start()
    with TestClient(app) as client:
        yield Served(client, app, writer, announced)
    writer.close()
    close_app(app)


def event(camera_id: str, i: int) -> Event:
    return Event(f"{camera_id}-{i}", camera_id, EventKind.DWELL, "r", time.time() - 60 + i)


def read(
    served: Served, token: str, until: Any, last_id: str | None = None, query: str = ""
) -> list[Message]:
    """Messages of one connection until ``until(messages)``; the server's streams are then
    ended and the test waits until this one has unsubscribed."""
    headers = {"Authorization": f"Bearer {token}"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    state = served.app.state.api
    state.closing.clear()
    messages: list[Message] = []
    with served.client.stream("GET", f"/api/v1/stream{query}", headers=headers) as answer:
        assert answer.status_code == 200
        message_id, name = None, "message"
        for line in answer.iter_lines():
            if line.startswith("id: "):
                message_id = line[4:]
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                messages.append(Message(message_id, name, json.loads(line[6:])))
                message_id, name = None, "message"
                if until(messages):
                    state.closing.set()
                    break
    deadline = time.monotonic() + 10
    while state.bus.subscribers and time.monotonic() < deadline:
        time.sleep(0.02)
    return messages


def when_subscribed(served: Served, action: Any) -> threading.Thread:
    bus = served.app.state.api.bus

    def run() -> None:
        while bus.subscribers == 0:
            time.sleep(0.01)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def has(event_id: str, name: str = "event") -> Any:
    return lambda ms: any(m.name == name and m.data["event_id"] == event_id for m in ms)


def test_a_reconnecting_client_gets_exactly_what_it_missed_then_the_live_feed(
    served: Served,
) -> None:
    token, _ = create_token(served.app.state.api.store, "a-only", Role.VIEWER, [CAMERA_A])
    first = [event(CAMERA_A, 1), event(CAMERA_B, 1), event(CAMERA_A, 2)]
    when_subscribed(served, lambda: served.store(*first))
    before = read(served, token, has(f"{CAMERA_A}-2"))
    assert [m.data["event_id"] for m in before] == [f"{CAMERA_A}-1", f"{CAMERA_A}-2"]
    assert all(m.id for m in before)

    # While nobody listens: events of both cameras, and the end of one seen before.
    missed = [event(CAMERA_A, 3), event(CAMERA_B, 2), event(CAMERA_A, 4)]
    served.store(missed[0], missed[1])
    served.store(EventEnd.of(first[0], first[0].started_at + 5), missed[2])
    seam = served.announced[-1]  # stored, and still queued on the bus when the client is back
    live = event(CAMERA_A, 5)

    def after_reconnect() -> None:
        served.app.state.api.bus.publish(seam)  # a duplicate at the seam: never sent twice
        served.store(event(CAMERA_B, 5), live)

    when_subscribed(served, after_reconnect)
    after = read(served, token, has(live.event_id), last_id=before[-1].id)
    got = [(m.name, m.data["event_id"]) for m in after]
    assert got == [
        ("event", f"{CAMERA_A}-3"),
        ("end", f"{CAMERA_A}-1"),
        ("event", f"{CAMERA_A}-4"),
        ("event", live.event_id),
    ]
    positions = [Position.parse(m.id or "") for m in after]
    assert None not in positions and positions == sorted(positions)  # type: ignore[type-var]


def test_an_unrestricted_client_resumes_with_every_camera_and_by_query_parameter(
    served: Served,
) -> None:
    token, _ = create_token(served.app.state.api.store, "all", Role.VIEWER, None)
    served.store(event(CAMERA_A, 1))
    cursor = served.announced[-1].position.token()
    served.store(event(CAMERA_B, 2), event(CAMERA_A, 3))
    after = read(served, token, lambda ms: len(ms) == 2, query=f"?last_event_id={cursor}")
    assert {m.data["event_id"] for m in after} == {f"{CAMERA_B}-2", f"{CAMERA_A}-3"}


@pytest.mark.parametrize(
    ("last_id", "reason"),
    [
        ("not-a-position", "unknown Last-Event-ID"),
        (Position(time.time() - RESUME_MAX_AGE_S - 60, "x", Phase.START).token(),
         "more than the resume bound"),
    ],
)  # fmt: skip
def test_a_gap_larger_than_the_bound_is_said(served: Served, last_id: str, reason: str) -> None:
    token, _ = create_token(served.app.state.api.store, "all", Role.VIEWER, None)
    served.store(event(CAMERA_A, 1))
    # an unknown id resumes nothing: the gap is all there is until new events come
    wanted = 1 if reason == "unknown Last-Event-ID" else 2
    after = read(served, token, lambda ms: len(ms) >= wanted, last_id=last_id)
    assert after[0].name == "gap"
    assert after[0].data["reason"] == reason
    if reason != "unknown Last-Event-ID":  # what the bound allows is still sent
        assert [(m.name, m.data["event_id"]) for m in after[1:]] == [("event", f"{CAMERA_A}-1")]


def test_only_the_newest_events_up_to_the_bound_are_resent(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feedtag.api import stream

    monkeypatch.setattr(stream, "RESUME_MAX_EVENTS", 2)
    token, _ = create_token(served.app.state.api.store, "all", Role.VIEWER, None)
    served.store(event(CAMERA_A, 0))
    cursor = served.announced[-1].position.token()
    for i in range(1, 5):
        served.store(event(CAMERA_A, i))
    after = read(served, token, has(f"{CAMERA_A}-4"), last_id=cursor)
    assert [m.name for m in after] == ["gap", "event", "event"]
    assert after[0].data["max_events"] == 2
    assert [m.data["event_id"] for m in after[1:]] == [f"{CAMERA_A}-3", f"{CAMERA_A}-4"]
