"""Signed snapshot links in alert payloads, end to end: the dispatcher sends events stored in
a real API server's store to a real webhook receiver and a real mosquitto; each payload with
a snapshot carries an absolute ``snapshot_url`` under ``api.public_url`` that verifies, and
fetching it with no token from the API (real uvicorn) returns the stored anonymized JPEG,
audited as ``link:<route>``. Events without a snapshot, and dispatchers without links, send
``snapshot_url: null``; no media path and no signature reaches the log."""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest

from feedtag.alerts.dispatcher import AlertDispatcher
from feedtag.alerts.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, verify_signature
from feedtag.config import validate_config
from feedtag.config.models import FeedtagConfig
from feedtag.core import Detections, Event, EventKind
from feedtag.store.links import LinkSigner, snapshot_links
from feedtag.vision.anonymize import cover_boxes

from ..api.server import RunningServer, start_api_server
from ..conftest import free_port, require_service, wait_for
from .test_dispatcher import SECRET, Receiver, all_delivered, store_events
from .test_mqtt import MOSQUITTO, Broker, Subscriber

LINK_KEY = "alert-link-key-do-not-leak-0123456789"
CAMERA = "gate-1"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[RunningServer]:
    with start_api_server(tmp_path / "api", api={"link_key": LINK_KEY}) as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver(free_port())
    made.start()
    yield made
    made.stop()


def node_config(api: RunningServer, receiver: Receiver, **alerts: Any) -> FeedtagConfig:
    """The config of the node that sends the alerts: the API server's public URL (here the
    server itself) and link key, and a webhook to ``receiver``."""
    data = {
        "api": {"public_url": api.base_url, "link_key": LINK_KEY},
        "alerts": {
            "allow_networks": ["127.0.0.0/8"], "timeout_s": 2, "initial_backoff_s": 0.05,
            "max_backoff_s": 0.2, "link_ttl_s": 600,
            "webhooks": [{"id": "ops", "url": f"http://127.0.0.1:{receiver.port}/hook",
                          "secret": SECRET}],
            **alerts,
        },
    }  # fmt: skip
    return validate_config(data, source="test")


def events_in(api: RunningServer) -> tuple[Event, Event]:
    """An event with an anonymized snapshot in the API's media, and one without."""
    now = time.time()
    grey = cover_boxes(np.full((90, 160, 3), 128, np.uint8), np.zeros((0, 4), np.float32))
    with_id = secrets.token_hex(16)
    path = api.media.write_snapshot(
        CAMERA, with_id, at=now, image=grey, detections=Detections.empty()
    )
    attributes = {"snapshot": api.media.relative(path), "clip": "clips/x.mp4", "duration_s": 31.5}
    with_snapshot = Event(with_id, CAMERA, EventKind.STOPPED_VEHICLE, "r", now, None, "car",
                          "road", (1,), attributes)  # fmt: skip
    without = Event(secrets.token_hex(16), CAMERA, EventKind.CAMERA_FROZEN, "h", now)
    return with_snapshot, without


def check_link(api: RunningServer, event: Event, url: str, route: str) -> None:
    """``url`` is absolute under the public URL, verifies, and fetches the stored snapshot
    without a token; the read is audited as ``link:<route>``."""
    parts = urlsplit(url)
    assert url.startswith(f"{api.base_url}/api/v1/events/{event.event_id}/snapshot.jpg?")
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert query["route"] == route
    assert 0 < int(query["expires"]) - time.time() <= 600
    signer = LinkSigner.from_secret(LINK_KEY)
    assert signer.verify(parts.path, route, query["expires"], query["sig"], now=time.time())
    answer = httpx.get(url, timeout=5)  # no token
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/jpeg"
    assert answer.content == api.media.resolve(event.attributes["snapshot"]).read_bytes()
    entries = httpx.get(
        f"{api.base_url}/api/v1/audit", params={"action": "events.snapshot"},
        headers=api.auth(api.admin_token), timeout=5,
    ).json()["items"]  # fmt: skip
    assert any(
        e["token_id"] == f"link:{route}" and e["object_id"] == event.event_id for e in entries
    )


def test_a_webhook_payload_links_to_the_snapshot_and_the_link_fetches_it(
    api: RunningServer, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config = node_config(api, receiver)
    with_snapshot, without = events_in(api)
    store_events(api.store, config.alerts, [with_snapshot, without])
    links = snapshot_links(config, {})
    with AlertDispatcher(api.store, config.alerts, links=links, poll_interval_s=0.05):
        wait_for(lambda: all_delivered(api.store, 2), 20, what="both events delivered")
    sent = {}
    for _, headers, body in receiver.requests:
        assert verify_signature(SECRET.encode(), headers[SIGNATURE_HEADER], body, now=time.time())
        assert b"snapshots/" not in body and b"clips/" not in body  # never a media path
        sent[headers[EVENT_ID_HEADER]] = json.loads(body)
    assert sent[without.event_id]["snapshot_url"] is None
    payload = sent[with_snapshot.event_id]
    assert "clip_url" not in payload and payload["attributes"] == {"duration_s": 31.5}
    check_link(api, with_snapshot, payload["snapshot_url"], "ops")
    signature = parse_qs(urlsplit(payload["snapshot_url"]).query)["sig"][0]
    # feedtag's own log (pytest also hands the records of uvicorn's access logger, which
    # ApiServer turns off, and of this test's HTTP client to caplog)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("feedtag"))
    assert "dispatcher started" in logged
    assert signature not in logged and LINK_KEY not in logged


def test_without_links_the_payload_says_null(api: RunningServer, receiver: Receiver) -> None:
    config = node_config(api, receiver)
    with_snapshot, _ = events_in(api)
    store_events(api.store, config.alerts, [with_snapshot])
    with AlertDispatcher(api.store, config.alerts, poll_interval_s=0.05):
        wait_for(lambda: all_delivered(api.store, 1), 20, what="the event delivered")
    [(_, _, body)] = receiver.requests
    assert json.loads(body)["snapshot_url"] is None


@pytest.mark.system
def test_an_mqtt_payload_carries_the_same_kind_of_link(
    api: RunningServer, receiver: Receiver
) -> None:
    require_service(os.path.exists(MOSQUITTO), "mosquitto not installed")
    broker = Broker()
    broker.start()
    subscriber = Subscriber(broker.port, "feedtag/#")
    try:
        config = node_config(api, receiver, mqtt={"url": f"mqtt://127.0.0.1:{broker.port}"})
        with_snapshot, _ = events_in(api)
        store_events(api.store, config.alerts, [with_snapshot])
        links = snapshot_links(config, {})
        with AlertDispatcher(api.store, config.alerts, links=links, poll_interval_s=0.05):
            wait_for(lambda: all_delivered(api.store, 2), 20, what="webhook and MQTT delivery")
        topic = f"feedtag/{CAMERA}/events/stopped_vehicle"
        [message] = wait_for(lambda: subscriber.payloads(topic), 10, what="the MQTT message")
    finally:
        subscriber.close()
        broker.destroy()
    check_link(api, with_snapshot, json.loads(message)["snapshot_url"], "mqtt")
