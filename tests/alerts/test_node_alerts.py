"""Alerts end to end in a node: the composition root queues each event's alerts in the
store writer's transaction and starts the dispatcher; a real webhook receiver gets the
crowding events of a real camera (looping footage, the real detector), signed, each with a
signed ``snapshot_url`` under ``api.public_url`` that fetches the event's snapshot from the
node's API without a token; the alert figures reach ``/metrics`` and ``GET /api/v1/alerts``;
the secret reaches none of them."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from feedtag.alerts.webhooks import SIGNATURE_HEADER, verify_signature
from feedtag.runtime.app import STOP_DEADLINE_S, NodeApp

from ..conftest import free_port, wait_for
from ..runtime.test_control import api_parts, node_config
from .test_dispatcher import SECRET, Receiver

#: where receivers would reach the API (a TLS proxy in front of it); the test goes direct
PUBLIC_URL = "https://cams.example.org/feedtag"
LINK_KEY = "node-link-key-do-not-leak-0123456789"


def test_a_node_sends_its_events_to_the_webhook_and_shows_it(
    vtest_clip: Path, models_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Receiver(free_port())
    receiver.start()
    token = secrets.token_urlsafe(32)
    alerts = {
        "allow_networks": ["127.0.0.0/8"],
        "timeout_s": 2,
        "webhooks": [{"id": "ops", "url": f"http://127.0.0.1:{receiver.port}/hook",
                      "secret": SECRET, "kinds": ["crowding"]}],
    }  # fmt: skip
    config = node_config(
        vtest_clip, tmp_path, detector={"models_dir": str(models_dir)}, alerts=alerts,
        api={"enabled": True, "port": 0, "admin_token": token, "public_url": PUBLIC_URL,
             "link_key": LINK_KEY},
    )  # fmt: skip
    app = NodeApp(config, api=api_parts())
    app.start()
    headers = {"Authorization": f"Bearer {token}"}
    try:
        wait_for(lambda: receiver.acknowledged, 60, what="a crowding event at the receiver")
        snapshot = wait_for(
            lambda: (s := app.control.snapshot()).alerts is not None
            and s.alerts.delivered >= 1 and s,
            10, what="the delivery counted",
        )  # fmt: skip
        metrics = httpx.get(f"{app.api_url}/metrics", headers=headers, timeout=5).text
        listed: Any = httpx.get(f"{app.api_url}/api/v1/alerts?state=delivered",
                                headers=headers, timeout=5).json()  # fmt: skip
        link = json.loads(receiver.requests[0][2])["snapshot_url"]
        assert link.startswith(f"{PUBLIC_URL}/api/v1/events/"), link
        direct = app.api_url + link.removeprefix(PUBLIC_URL)
        # the media worker writes the snapshot beside the event: moments later at most
        image = wait_for(
            lambda: (answer := httpx.get(direct, timeout=5)).status_code == 200 and answer,
            10, what="the snapshot through the signed link",
        )  # fmt: skip
    finally:
        began = time.monotonic()
        app.stop()
        took = time.monotonic() - began
        receiver.stop()
    assert took < STOP_DEADLINE_S
    mode, sent, body = receiver.requests[0]
    assert mode == "ok" and verify_signature(SECRET.encode(), sent[SIGNATURE_HEADER], body,
                                             now=int(time.time()))  # fmt: skip
    assert b'"kind":"crowding"' in body.replace(b" ", b"")
    assert image.headers["content-type"] == "image/jpeg" and image.content[:2] == b"\xff\xd8"
    assert snapshot.alerts is not None and snapshot.alerts.failed == 0
    assert 'feedtag_alerts_outbox{state="delivered"}' in metrics
    assert "feedtag_alerts_delivered_total" in metrics
    assert listed["counts"]["delivered"] >= 1
    assert {row["route_id"] for row in listed["items"]} == {"ops"}
    assert all(row["state"] == "delivered" for row in listed["items"])
    shown = metrics + str(listed) + caplog.text
    assert SECRET not in shown and f"127.0.0.1:{receiver.port}" not in str(listed)
    assert LINK_KEY not in shown
