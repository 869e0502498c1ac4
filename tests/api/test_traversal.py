"""Paths from outside never leave their root: static files against the dashboard folder,
media against the media root. ``..``, ``%2e%2e%2f``, ``..\\``, absolute paths and symlinks
pointing out all answer 404 (or 4xx for what is not even a valid id), never a file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from feedtag.store.schema import events as events_table

from .conftest import CAMERA_A, Setup

SECRET = "top-secret-outside-the-roots"

STATIC_ATTACKS = [
    "/static/../conftest.py",
    "/static/%2e%2e/secret.txt",
    "/static/%2e%2e%2fsecret.txt",
    "/static/..%2fsecret.txt",
    "/static/..%5csecret.txt",
    "/static/..\\secret.txt",
    "/static/%252e%252e%252fsecret.txt",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/out-link.txt",
    "/static/out-dir/secret.txt",
]


@pytest.fixture
def outside(setup: Setup) -> Path:
    """A secret file beside the web folder, and symlinks to it from inside."""
    secret = setup.web_dir.parent / "secret.txt"
    secret.write_text(SECRET)
    os.symlink(secret, setup.web_dir / "out-link.txt")
    os.symlink(setup.web_dir.parent, setup.web_dir / "out-dir")
    return secret


@pytest.mark.parametrize("path", STATIC_ATTACKS)
def test_static_paths_stay_in_the_web_folder(setup: Setup, outside: Path, path: str) -> None:
    answer = setup.get("anonymous", path)
    assert answer.status_code in (400, 404), (path, answer.status_code)
    assert SECRET not in answer.text and "root:" not in answer.text


def test_static_files_inside_are_served(setup: Setup, outside: Path) -> None:
    assert setup.get("anonymous", "/static/app.js").text == "export const ok = true;\n"


def _tamper(setup: Setup, attribute: str, value: str) -> str:
    """Point camera A's event's media at ``value`` (as a broken or hostile writer could)."""
    event = setup.events[CAMERA_A]
    attributes = {**event.attributes, attribute: value}
    with setup.store.begin() as connection:
        connection.execute(
            events_table.update()
            .where(events_table.c.event_id == event.event_id)
            .values(attributes=attributes)
        )
    return event.event_id


MEDIA_ATTACKS = [
    "../../secret.txt",
    "../../../../../../etc/passwd",
    "%2e%2e%2f%2e%2e%2fsecret.txt",
    "..\\..\\secret.txt",
    "/etc/passwd",
    "{outside}",
    "snapshots/link-out.jpg",
    "snapshots/dir-out/secret.txt",
]


@pytest.mark.parametrize("attack", MEDIA_ATTACKS)
@pytest.mark.parametrize(("attribute", "route"), [("snapshot", "snapshot.jpg"),
                                                  ("clip", "clip.mp4")])  # fmt: skip
def test_media_paths_stay_in_the_media_root(
    setup: Setup, attack: str, attribute: str, route: str
) -> None:
    media_root = setup.app.state.api.media.root
    secret = media_root.parent / "secret.txt"
    secret.write_text(SECRET)
    (media_root / "snapshots").mkdir(parents=True, exist_ok=True)
    link = media_root / "snapshots" / "link-out.jpg"
    if not link.exists():
        os.symlink(secret, link)
        os.symlink(media_root.parent, media_root / "snapshots" / "dir-out")
    event_id = _tamper(setup, attribute, attack.format(outside=secret))
    answer = setup.get("admin", f"/api/v1/events/{event_id}/{route}")
    assert answer.status_code == 404, answer.text
    assert SECRET not in answer.text


def test_a_thumbnail_symlinked_out_of_the_media_root_is_not_served(setup: Setup) -> None:
    media_root = setup.app.state.api.media.root
    secret = media_root.parent / "secret.txt"
    secret.write_text(SECRET)
    thumbnail = media_root / "thumbnails" / f"{CAMERA_A}.jpg"
    thumbnail.unlink()
    os.symlink(secret, thumbnail)
    answer = setup.get("viewer", f"/api/v1/cameras/{CAMERA_A}/thumbnail.jpg")
    assert answer.status_code == 404
    assert SECRET not in answer.text


@pytest.mark.parametrize(
    "camera", ["..", "..%2f..%2fsecret", "%2e%2e", "..%5c..", "%2fetc%2fpasswd", "a/../../b"]
)
def test_camera_ids_with_traversal_are_not_found(setup: Setup, camera: str) -> None:
    answer = setup.get("admin", f"/api/v1/cameras/{camera}/thumbnail.jpg")
    assert answer.status_code in (404, 422), answer.text
    assert SECRET not in answer.text
