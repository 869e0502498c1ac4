"""The webhook sender: the documented verification example, the payload, and TLS to a pinned
address with the certificate checked against the webhook's host name."""

from __future__ import annotations

import ipaddress
import json
import re
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from feedtag.alerts.webhooks import (
    DeliveryFailed,
    WebhookSender,
    event_body,
    signature_header,
    snapshot_link,
    verify_signature,
)
from feedtag.config.alerts import AlertsConfig
from feedtag.core import Event, EventKind
from feedtag.store.links import LinkSigner, SnapshotLinks

DOCS = Path(__file__).resolve().parents[2] / "docs" / "alerts.md"
SECRET = "tls-webhook-secret-0123456789"
EVENT = Event("e1", "gate-1", EventKind.CROWDING, "r", 1.8e9, None, "person", "hall", (1, 2),
              {"snapshot": "snapshots/gate-1/e1.jpg", "clip": "clips/e1.mp4", "count": 7})  # fmt: skip


def documented_verify() -> Any:
    """The ``verify`` function of docs/alerts.md, as printed there."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    (code,) = [block for block in blocks if "def verify(" in block]
    assert len(code.strip().splitlines()) <= 12
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - the documentation's own example
    return namespace["verify"]


@pytest.mark.parametrize(
    ("key", "tamper", "age_s", "valid"),
    [
        (SECRET, False, 0, True),
        ("another-secret-0123456", False, 0, False),
        (SECRET, True, 0, False),
        (SECRET, False, 3600, False),  # replayed an hour later
    ],
)
def test_the_documented_example_verifies_signatures(
    key: str, tamper: bool, age_s: int, valid: bool
) -> None:
    import time

    body = event_body(EVENT)
    header = signature_header(SECRET.encode(), body, timestamp=int(time.time()) - age_s)
    sent = body.replace(b"crowding", b"dwell") if tamper else body
    assert documented_verify()(key.encode(), header, sent) is valid
    assert verify_signature(key.encode(), header, sent, now=time.time()) is valid


def test_the_body_has_no_media_paths() -> None:
    text = event_body(EVENT).decode()
    assert "snapshots/" not in text and "clips/" not in text and '"count":7' in text
    assert json.loads(text)["snapshot_url"] is None and "clip_url" not in text


LINKS = SnapshotLinks("https://cams.example.org", LinkSigner.from_secret("k" * 32), 600)


@pytest.mark.parametrize(
    ("links", "attributes", "linked"),
    [
        (LINKS, {"snapshot": "snapshots/gate-1/e1.jpg"}, True),
        (LINKS, {"clip": "clips/e1.mp4"}, False),  # clips are never linked
        (LINKS, {}, False),
        (None, {"snapshot": "snapshots/gate-1/e1.jpg"}, False),  # links off
    ],
)
def test_the_snapshot_link_of_a_payload(
    links: SnapshotLinks | None, attributes: dict[str, Any], linked: bool
) -> None:
    event = Event("e1", "gate-1", EventKind.CROWDING, "r", 1.8e9, attributes=attributes)
    link = snapshot_link(links, event, "ops", now=1.8e9)
    assert (link is not None) is linked
    body = json.loads(event_body(event, link))
    assert body["snapshot_url"] == link and body["attributes"] == {}
    if link is not None:
        assert link.startswith("https://cams.example.org/api/v1/events/e1/snapshot.jpg?")
        assert "expires=1800000600" in link and "route=ops" in link


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=hooks.test", "-addext", "subjectAltName=DNS:hooks.test",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_receiver(tls_files: tuple[Path, Path]) -> Iterator[tuple[int, list[str]]]:
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hosts.append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], hosts
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("host", "delivered"), [("hooks.test", True), ("other.test", False)])
def test_tls_to_the_pinned_address_checks_the_certificate_name(
    tls_files: tuple[Path, Path], tls_receiver: tuple[int, list[str]], host: str, delivered: bool
) -> None:
    port, hosts = tls_receiver
    alerts = AlertsConfig.model_validate({
        "allow_networks": ["127.0.0.0/8"],
        "timeout_s": 5,
        "webhooks": [{"id": "tls", "url": f"https://{host}:{port}/hook", "secret": SECRET}],
    })  # fmt: skip
    trust = ssl.create_default_context(cafile=str(tls_files[0]))
    sender = WebhookSender(
        alerts,
        resolve=lambda name: [ipaddress.ip_address("127.0.0.1")],  # the name is not in DNS
        transport=httpx.HTTPTransport(verify=trust),
    )
    try:
        if delivered:
            assert sender.send(alerts.webhooks[0], EVENT, now=1.8e9).status_code == 204
            assert hosts == [f"hooks.test:{port}"]
        else:
            with pytest.raises(DeliveryFailed, match="TLS handshake failed"):
                sender.send(alerts.webhooks[0], EVENT, now=1.8e9)
            assert hosts == []
    finally:
        sender.close()
