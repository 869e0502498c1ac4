"""No answer names a server path: cameras added through the API with hostile file URLs get
422s that say "outside the media root" without the root, and the status of a file camera
that fails names the file, not where it lies on the server."""

from __future__ import annotations

import os
import random
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from feedtag.api.app import create_app
from feedtag.runtime.local import LocalEngineControl
from feedtag.runtime.node import NodeEngine

from .conftest import TestClient, api_config


@pytest.fixture
def media_app(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], Path]]:
    media = tmp_path / "media"
    media.mkdir()
    (tmp_path / "secret.mp4").write_bytes(b"outside")
    os.symlink(tmp_path / "secret.mp4", media / "out-link.mp4")
    os.symlink(tmp_path, media / "out-dir")
    # fixed bytes: fresh random ones now and then probe as an audio format
    (media / "garbage.mp4").write_bytes(random.Random(0).randbytes(2048))
    admin = secrets.token_urlsafe(32)
    config = api_config(tmp_path / "data", admin).model_copy(update={"media_root": media})
    node = NodeEngine(config)
    node.start()
    with TestClient(
        create_app(config, LocalEngineControl(node)), raise_server_exceptions=False
    ) as client:
        yield client, {"Authorization": f"Bearer {admin}"}, tmp_path
    node.stop()


def hostile_urls(media: Path, data: Path) -> list[tuple[str, str]]:
    """(a file URL, what the refusal says), each pointing outside the media root."""
    outside = "path is outside the media root"
    return [
        ("/etc/passwd", outside),
        ("../secret.mp4", outside),
        ("../../../../etc/shadow", outside),
        ("out-link.mp4", outside),  # a symlink out
        ("out-dir/secret.mp4", outside),
        (f"{media}/../data/feedtag.db", outside),
        (str(data / "feedtag.db"), outside),
        ("file:///etc/passwd", outside),
        (f"file://{media}/%2e%2e/secret.mp4", outside),
        ("file://localhost/etc/hostname", outside),
        ("file://server/share/x.mp4", "must not name a host"),
        ("file:" + "subfile" * 20 + ":/etc/passwd", "looks like an FFmpeg protocol"),
    ]


def bodies(answers: list[Any]) -> str:
    return "\n".join(answer.text for answer in answers)


def test_refusals_name_no_server_path(media_app: tuple[TestClient, dict[str, str], Path]) -> None:
    client, admin, root = media_app
    media, data = root / "media", root / "data"
    answers = []
    for url, message in hostile_urls(media, data):
        answer = client.post("/api/v1/cameras", json={"id": "x", "url": url}, headers=admin)
        assert answer.status_code == 422, (url, answer.text)
        [problem] = answer.json()["detail"]
        assert problem["loc"] == ["body", "url"] and message in problem["msg"], url
        assert len(problem["msg"]) < 120  # the caller's input is echoed shortened, if at all
        answers.append(answer)
        patched = client.patch("/api/v1/cameras/cam-a", json={"url": url}, headers=admin)
        assert patched.status_code == 422, (url, patched.text)
        answers.append(patched)
    text = bodies(answers)
    assert str(root) not in text  # neither the media root nor the data dir
    assert os.path.realpath(root) not in text


def test_a_failing_file_camera_names_only_its_file(
    media_app: tuple[TestClient, dict[str, str], Path],
) -> None:
    client, admin, root = media_app
    for camera_id, url in (("junk", "garbage.mp4"), ("gone", "missing.mp4")):
        added = client.post("/api/v1/cameras", json={"id": camera_id, "url": url}, headers=admin)
        assert added.status_code == 201, added.text
        assert added.json()["url"] == url
    deadline = time.monotonic() + 20
    states: dict[str, Any] = {}
    while time.monotonic() < deadline:
        listing = client.get("/api/v1/cameras", headers=admin)
        states = {c["id"]: c["status"] for c in listing.json()["items"]}
        if all(states[c] and states[c]["state"] == "offline" for c in ("junk", "gone")):
            break
        time.sleep(0.1)
    assert states["junk"]["reason"] == "open failed: not a stream FFmpeg can read (garbage.mp4)"
    assert states["gone"]["reason"] == "open failed: no such file or stream (missing.mp4)"
    answers = [listing, client.get("/api/v1/cameras/junk", headers=admin)]
    assert str(root) not in bodies(answers)
