"""Web hardening: security headers on every kind of answer, request size limits (refused
before the body is read), JSON errors without stack traces or echoed input, and hostile
names (``<script>``, ``"><img onerror=...>``) that stay data."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from feedtag.api.security import CONTENT_SECURITY_POLICY

from .conftest import CAMERA_A, CAMERA_B, XSS_NAME, Setup
from .server import start_api_server

ANSWERS = [
    ("anonymous", "/"),
    ("anonymous", "/static/app.js"),
    ("anonymous", "/static/missing.js"),
    ("anonymous", "/health"),
    ("anonymous", "/api/v1/docs"),
    ("anonymous", "/api/v1/cameras"),
    ("viewer", "/api/v1/cameras"),
    ("viewer", f"/api/v1/cameras/{CAMERA_A}/thumbnail.jpg"),
    ("viewer", "/api/v1/no-such-route"),
    ("viewer", "/api/v1/events?limit=0"),
]


@pytest.mark.parametrize(("who", "path"), ANSWERS)
def test_security_headers_on_every_answer(setup: Setup, who: str, path: str) -> None:
    headers = setup.get(who, path).headers
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    if path.startswith("/api/"):
        assert headers["cache-control"] == "no-store"


def test_errors_are_json_without_a_stack_trace(setup: Setup) -> None:
    for path in ("/api/v1/no-such", "/api/v1/events?limit=abc", "/api/v1/events?cursor=xyz"):
        answer = setup.get("viewer", path)
        assert answer.status_code in (404, 422), path
        assert answer.headers["content-type"] == "application/json"
        assert "Traceback" not in answer.text and 'File "' not in answer.text


def test_an_unexpected_failure_is_a_plain_500(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode() -> None:
        raise RuntimeError("secret internals: rtsp://u:hunter2@cam/")

    monkeypatch.setattr(setup.app.state.api.engine, "snapshot", explode)
    answer = setup.get("viewer", "/api/v1/cameras")
    assert answer.status_code == 500
    assert answer.json() == {"detail": "internal error"}
    assert "hunter2" not in answer.text
    assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_validation_errors_do_not_echo_the_input(setup: Setup) -> None:
    body = {"id": "x", "url": "rtsp://cam.example/s", "password": "hunter2-secret",
            "analysis_fps": 1000}  # fmt: skip
    answer = setup.client.post("/api/v1/cameras", json=body, headers=setup.headers("admin"))
    assert answer.status_code == 422
    assert "hunter2" not in answer.text
    assert any(item["loc"] == ["body", "analysis_fps"] for item in answer.json()["detail"])


def test_camera_passwords_are_never_served(setup: Setup) -> None:
    for who in ("viewer", "admin"):
        answer = setup.get(who, f"/api/v1/cameras/{CAMERA_B}")
        assert answer.status_code == 200
        assert "hunter2" not in answer.text
        assert answer.json()["url"] == "rtsp://u:***@cam-b.example/s"


# -- hostile names ------------------------------------------------------------------------

XSS = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', XSS_NAME]


@pytest.mark.parametrize("name", XSS)
def test_hostile_camera_names_and_labels_stay_json_data(setup: Setup, name: str) -> None:
    changed = setup.client.patch(
        f"/api/v1/cameras/{CAMERA_A}", json={"name": name}, headers=setup.headers("admin")
    )
    assert changed.status_code == 200
    for path in (f"/api/v1/cameras/{CAMERA_A}", "/api/v1/cameras", "/api/v1/events"):
        answer = setup.get("viewer", path)
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["x-content-type-options"] == "nosniff"
    # the exact value comes back, as a JSON string (escaping is the renderer's job)
    one = setup.get("viewer", f"/api/v1/cameras/{CAMERA_A}").json()
    listed = setup.get("viewer", "/api/v1/cameras").json()["items"]
    assert one["name"] == name
    assert [camera["name"] for camera in listed] == [name, XSS_NAME]
    # labels too: the seeded events carry a hostile label
    labels = {event["label"] for event in setup.get("viewer", "/api/v1/events").json()["items"]}
    assert labels == {XSS_NAME}


def test_hostile_names_in_a_url_path_are_not_reflected_as_html(setup: Setup) -> None:
    for path in ("/api/v1/cameras/%3Cscript%3E", '/api/v1/events/"><img onerror=x>',
                 "/static/<script>.js"):  # fmt: skip
        answer = setup.get("viewer", path)
        assert answer.status_code in (404, 422)
        assert "text/html" not in answer.headers.get("content-type", "")
        assert "<script>" not in answer.text and "<img" not in answer.text


def test_the_docs_page_escapes_what_it_shows(setup: Setup) -> None:
    page = setup.get("anonymous", "/api/v1/docs").text
    assert "<script" not in page.lower()
    assert "/api/v1/events/{event_id}/clip.mp4" in page


# -- request limits ----------------------------------------------------------------------


def test_long_urls_are_refused_with_414(setup: Setup) -> None:
    answer = setup.get("viewer", "/api/v1/events?label=" + "x" * 3000)
    assert answer.status_code == 414
    assert answer.headers["content-type"] == "application/json"


def test_large_bodies_are_refused_with_413(setup: Setup) -> None:
    body = {"name": "x" * (70 * 1024)}
    answer = setup.client.patch(
        f"/api/v1/cameras/{CAMERA_A}", json=body, headers=setup.headers("admin")
    )
    assert answer.status_code == 413


def test_a_chunked_body_is_cut_off_at_the_limit(setup: Setup) -> None:
    def chunks():  # no Content-Length: the server counts as it reads
        for _ in range(100):
            yield b"x" * 4096

    answer = setup.client.post(
        "/api/v1/session", content=chunks(), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413


def test_an_oversized_body_is_refused_before_it_is_sent(tmp_path: Path) -> None:
    """Real uvicorn: a request declaring 1 GB gets 413 at once, without sending the body."""
    with start_api_server(tmp_path) as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            started = time.monotonic()
            sock.sendall(
                b"POST /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{"
            )
            reply = sock.recv(4096).decode()
            elapsed = time.monotonic() - started
        assert reply.startswith("HTTP/1.1 413"), reply
        assert elapsed < 1.0
