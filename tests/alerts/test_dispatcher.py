"""Webhook delivery end to end, on SQLite and a real PostgreSQL, with a real HTTP receiver on
127.0.0.1 that refuses connections, stalls past the timeout, answers 500, then recovers."""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine, select

from feedtag.alerts.dispatcher import AlertDispatcher
from feedtag.alerts.routes import build_router
from feedtag.alerts.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    WebhookSender,
    event_payload,
    verify_signature,
)
from feedtag.config.alerts import AlertsConfig
from feedtag.core import Event, EventKind
from feedtag.store.engine import create_store_engine
from feedtag.store.schema import alert_outbox
from feedtag.store.spool import Spool
from feedtag.store.writer import StoreWriter

from ..conftest import free_port, wait_for

SECRET = "whsec-do-not-leak-0123456789"
QUERY_SECRET = "qs-do-not-leak"
T0 = 1_799_971_200.0


class Receiver:
    """A webhook receiver whose behaviour is switched by ``mode``: ``ok`` (200), ``error``
    (500), ``stall`` (no answer until after the client gave up), ``redirect`` (302)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.mode = "ok"
        self.requests: list[tuple[str, dict[str, str], bytes]] = []  # (mode, headers, body)
        self.acknowledged: Counter[str] = Counter()
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                mode = receiver.mode
                with receiver.lock:
                    receiver.requests.append((mode, dict(self.headers.items()), body))
                if mode == "stall":
                    time.sleep(1.0)  # the client's timeout is 0.3 s
                    self.close_connection = True
                    return
                status = {"ok": 200, "error": 500, "redirect": 302}[mode]
                self.send_response(status)
                if mode == "redirect":
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()
                if status == 200:
                    with receiver.lock:
                        receiver.acknowledged[self.headers[EVENT_ID_HEADER]] += 1

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def modes_seen(self) -> set[str]:
        with self.lock:
            return {mode for mode, _, _ in self.requests}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver(free_port())  # not listening yet: connections are refused
    yield made
    made.stop()


def alerts_for(port: int, **overrides: Any) -> AlertsConfig:
    return AlertsConfig.model_validate({
        "allow_networks": ["127.0.0.0/8"],
        "max_attempts": 100,
        "timeout_s": 0.3,
        "initial_backoff_s": 0.05,
        "max_backoff_s": 0.2,
        "webhooks": [{"id": "ops", "url": f"http://127.0.0.1:{port}/hook?token={QUERY_SECRET}",
                      "secret": SECRET, "kinds": ["stopped_vehicle", "camera_health"]}],
        **overrides,
    })  # fmt: skip


def make_events(count: int) -> list[Event]:
    return [
        Event(f"ev{i}", "gate-1", EventKind.STOPPED_VEHICLE, "r", T0 + i, None, "car", "road",
              (i,), {"snapshot": f"snapshots/gate-1/ev{i}.jpg", "duration_s": 31.5})
        for i in range(count)
    ]  # fmt: skip


def store_events(engine: Engine, alerts: AlertsConfig, items: list[Event]) -> None:
    spool = Spool(tempfile.mkdtemp())
    with StoreWriter(engine, spool, max_wait_s=0.02, router=build_router(alerts)) as writer:
        for item in items:
            writer.put(item)


def outbox(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(select(alert_outbox)).mappings()]


def all_delivered(engine: Engine, count: int) -> bool:
    rows = outbox(engine)
    return len(rows) == count and all(row["state"] == "delivered" for row in rows)


def check_deliveries(receiver: Receiver, items: list[Event]) -> None:
    """Every event acknowledged exactly once, every request signed, no media paths sent."""
    assert receiver.acknowledged == Counter(item.event_id for item in items)
    by_id = {item.event_id: item for item in items}
    for _, headers, body in receiver.requests:
        assert verify_signature(SECRET.encode(), headers[SIGNATURE_HEADER], body, now=time.time())
        assert not verify_signature(b"another-secret-0123", headers[SIGNATURE_HEADER], body,
                                    now=time.time())  # fmt: skip
        sent = json.loads(body)
        assert sent == event_payload(by_id[headers[EVENT_ID_HEADER]])
        # no links configured: the payload says so, and no media path is sent
        assert "snapshots/" not in body.decode() and sent["snapshot_url"] is None


@pytest.mark.slow
def test_delivers_everything_after_refusals_stalls_and_errors(
    engine: Engine, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alerts = alerts_for(receiver.port)
    items = make_events(6)
    store_events(engine, alerts, items)
    with AlertDispatcher(engine, alerts, poll_interval_s=0.05) as dispatcher:
        wait_for(lambda: dispatcher.stats().failed >= 3, 10, what="refused attempts")
        receiver.mode = "stall"
        receiver.start()
        wait_for(lambda: "stall" in receiver.modes_seen(), 10, what="a stalled request")
        receiver.mode = "error"
        wait_for(lambda: "error" in receiver.modes_seen(), 10, what="a 500 answer")
        receiver.mode = "ok"
        wait_for(lambda: all_delivered(engine, len(items)), 30, what="every event delivered")
        stats = dispatcher.stats()
    check_deliveries(receiver, items)
    assert (stats.delivered, stats.pending, stats.delivered_total, stats.dead) == (6, 0, 6, 0)
    assert stats.failed >= 5 and stats.latency_max_s is not None
    rows = outbox(engine)
    errors = {row["last_error"] for row in rows}
    assert errors & {"could not connect", "timed out after 0.3 s", "HTTP 500"}, errors
    assert all(row["attempts"] >= 1 and row["delivered_at"] for row in rows)
    assert max(row["attempts"] for row in rows) > 1
    for text in [*caplog.messages, *(str(row) for row in rows)]:
        assert SECRET not in text and QUERY_SECRET not in text


@pytest.mark.slow
def test_a_new_dispatcher_delivers_what_a_stopped_one_left_pending(
    engine: Engine, store_url: str, receiver: Receiver
) -> None:
    alerts = alerts_for(receiver.port)
    items = make_events(3)
    store_events(engine, alerts, items)
    with AlertDispatcher(engine, alerts, poll_interval_s=0.05) as first:
        wait_for(lambda: first.stats().failed >= 3, 10, what="refused attempts")
    assert {row["state"] for row in outbox(engine)} == {"pending"}
    receiver.start()
    restarted = create_store_engine(store_url)  # a new process would open its own engine
    try:
        with AlertDispatcher(restarted, alerts, poll_interval_s=0.05):
            wait_for(lambda: all_delivered(restarted, len(items)), 20, what="delivery")
    finally:
        restarted.dispose()
    check_deliveries(receiver, items)


class StoppingSender(WebhookSender):
    """Sends for real, then stops ``dispatcher``: it stops in the middle of its batch."""

    dispatcher: AlertDispatcher | None = None

    def send(self, hook: Any, event: Event, *, now: float, snapshot_url: str | None = None) -> Any:
        sent = super().send(hook, event, now=now, snapshot_url=snapshot_url)
        assert self.dispatcher is not None
        self.dispatcher.stop()
        return sent


def test_stopping_mid_batch_gives_the_untried_rows_back(engine: Engine, receiver: Receiver) -> None:
    """The rows claimed but not tried are due again at once, not after the lease (which
    outlasts any test's patience), and a new dispatcher sends them straight away."""
    receiver.start()
    alerts = alerts_for(receiver.port)
    items = make_events(3)
    store_events(engine, alerts, items)
    sender = StoppingSender(alerts)
    first = AlertDispatcher(engine, alerts, sender=sender)
    sender.dispatcher = first
    assert first.run_once() == 3
    states = Counter(row["state"] for row in outbox(engine))
    assert states == Counter({"pending": 2, "delivered": 1})
    now = time.time()
    assert all(row["next_attempt_at"] <= now for row in outbox(engine) if row["state"] == "pending")
    with AlertDispatcher(engine, alerts, poll_interval_s=60) as second:
        wait_for(lambda: all_delivered(engine, len(items)), 10, what="delivery")
        assert second.stats().delivered == 2
    check_deliveries(receiver, items)


def test_dead_after_max_attempts(engine: Engine, receiver: Receiver) -> None:
    alerts = alerts_for(receiver.port, max_attempts=2)
    receiver.mode = "error"
    receiver.start()
    store_events(engine, alerts, make_events(1))
    with AlertDispatcher(engine, alerts, poll_interval_s=0.02) as dispatcher:
        wait_for(lambda: dispatcher.stats().dead == 1, 10, what="a dead row")
    (row,) = outbox(engine)
    assert (row["state"], row["attempts"], row["last_error"]) == ("dead", 2, "HTTP 500")
    assert len(receiver.requests) == 2


def test_redirects_are_not_followed(engine: Engine, receiver: Receiver) -> None:
    alerts = alerts_for(receiver.port, max_attempts=1)
    receiver.mode = "redirect"
    receiver.start()
    store_events(engine, alerts, make_events(1))
    with AlertDispatcher(engine, alerts, poll_interval_s=0.02) as dispatcher:
        wait_for(lambda: dispatcher.stats().dead == 1, 10, what="a dead row")
    (row,) = outbox(engine)
    assert row["last_error"] == "HTTP 302 (redirects are not followed)"
    assert len(receiver.requests) == 1


def test_the_network_policy_is_checked_on_the_address_connected(
    engine: Engine, receiver: Receiver
) -> None:
    """A name that resolves to loopback is refused without allow_networks; nothing is sent."""
    receiver.start()
    alerts = AlertsConfig.model_validate({
        "max_attempts": 1,
        "webhooks": [{"id": "ops", "url": f"http://hooks.example.org:{receiver.port}/",
                      "secret": SECRET}],
    })  # fmt: skip
    import ipaddress

    sender = WebhookSender(alerts, resolve=lambda host: [ipaddress.ip_address("127.0.0.1")])
    store_events(engine, alerts, make_events(1))
    with AlertDispatcher(engine, alerts, sender=sender, poll_interval_s=0.02) as dispatcher:
        wait_for(lambda: dispatcher.stats().dead == 1, 10, what="a dead row")
    (row,) = outbox(engine)
    assert row["last_error"].startswith("refused by network policy: host 'hooks.example.org'")
    assert "alerts.allow_networks" in row["last_error"]
    assert receiver.requests == []


class FlakySender(WebhookSender):
    """A sender that fails with a bug (not a delivery failure) a few times first."""

    def __init__(self, alerts: AlertsConfig, bugs: int) -> None:
        super().__init__(alerts)
        self.bugs = bugs

    def send(self, hook: Any, event: Event, *, now: float, snapshot_url: str | None = None) -> Any:
        if self.bugs:
            self.bugs -= 1
            raise RuntimeError(f"a bug, with {hook.url.render()} in its message")
        return super().send(hook, event, now=now, snapshot_url=snapshot_url)


def test_the_thread_outlives_an_unexpected_error(
    engine: Engine, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.start()
    alerts = alerts_for(receiver.port)
    store_events(engine, alerts, make_events(1))
    dispatcher = AlertDispatcher(engine, alerts, sender=FlakySender(alerts, bugs=1))
    dispatcher._lease_s = 0.2  # the row of the failed send is due again soon
    with dispatcher:
        wait_for(lambda: all_delivered(engine, 1), 10, what="delivery after the bug")
    assert "unexpected RuntimeError" in caplog.text
    assert QUERY_SECRET not in caplog.text


def test_a_writer_commit_wakes_the_dispatcher_before_its_poll(
    engine: Engine, receiver: Receiver
) -> None:
    """The node hangs ``wake`` on the store writer: new rows go out at once, not after the
    poll interval (here far longer than the test waits)."""
    receiver.start()
    alerts = alerts_for(receiver.port)
    items = make_events(3)
    with AlertDispatcher(engine, alerts, poll_interval_s=60) as dispatcher:
        time.sleep(0.2)  # the dispatcher found nothing and waits for its poll
        spool = Spool(tempfile.mkdtemp())
        writer = StoreWriter(engine, spool, max_wait_s=0.02, router=build_router(alerts))
        writer.listeners.append(dispatcher.wake)
        with writer:
            for item in items:
                writer.put(item)
        wait_for(lambda: all_delivered(engine, len(items)), 5, what="delivered without a poll")
    check_deliveries(receiver, items)
