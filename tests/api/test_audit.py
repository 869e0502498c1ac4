"""Every read of events, snapshots, clips and thumbnails is audited (who, what, when, from
where) before it is answered; when the audit log cannot be written the read fails with 503
and nothing is served. Admins read the log."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from .conftest import CAMERA_A, CAMERA_B, Setup

READS = [
    ("/api/v1/events?label=person", "events.search", None),
    ("/api/v1/events/{A}", "events.get", CAMERA_A),
    ("/api/v1/events/{A}/snapshot.jpg", "events.snapshot", CAMERA_A),
    ("/api/v1/events/{A}/clip.mp4", "events.clip", CAMERA_A),
    (f"/api/v1/cameras/{CAMERA_A}/thumbnail.jpg", "cameras.thumbnail", CAMERA_A),
    ("/api/v1/tags?label=person", "tags.search", None),
    ("/api/v1/stats", "stats", None),
]


def _path(setup: Setup, path: str) -> str:
    return path.replace("{A}", setup.events[CAMERA_A].event_id)


def audit_log(setup: Setup, **params: str) -> list[dict[str, object]]:
    answer = setup.client.get("/api/v1/audit", params=params, headers=setup.headers("admin"))
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


@pytest.mark.parametrize(("path", "action", "camera"), READS)
def test_each_read_is_audited(setup: Setup, path: str, action: str, camera: str | None) -> None:
    before = time.time()
    answer = setup.get("config_admin", _path(setup, path))
    assert answer.status_code == 200
    [entry] = audit_log(setup, action=action)
    assert entry["token_id"] == "config-admin" and entry["role"] == "admin"
    assert entry["client"] == "testclient"  # from where: the peer address
    assert before <= float(entry["at"]) <= time.time()  # type: ignore[arg-type]
    assert entry["camera_id"] == camera and entry["status"] == 200
    if "{A}" in path:
        assert entry["object_id"] == setup.events[CAMERA_A].event_id


def test_denied_reads_are_audited_with_their_status(setup: Setup) -> None:
    event_b = setup.events[CAMERA_B].event_id
    assert setup.get("viewer_a", f"/api/v1/events/{event_b}").status_code == 404
    [entry] = audit_log(setup, action="events.get", principal="viewer_a")
    assert entry["status"] == 404 and entry["object_id"] == event_b
    assert entry["camera_id"] is None  # the event was not visible to this caller


def test_search_filters_are_recorded_but_no_tokens(setup: Setup) -> None:
    setup.get("viewer", f"/api/v1/events?camera={CAMERA_A}&label=car")
    [entry] = audit_log(setup, action="events.search")
    assert entry["detail"] == f"camera=['{CAMERA_A}'] label=['car']"
    everything = str(audit_log(setup))
    for token in setup.tokens.values():
        assert token is None or token not in everything


def test_audit_log_filters_and_pages(setup: Setup) -> None:
    for _ in range(3):
        setup.get("viewer", "/api/v1/stats")
    setup.get("viewer_a", "/api/v1/stats")
    assert len(audit_log(setup, principal="viewer")) == 3
    first = setup.client.get(
        "/api/v1/audit", params={"limit": 2}, headers=setup.headers("admin")
    ).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = setup.client.get(
        "/api/v1/audit", params={"cursor": first["next_cursor"]}, headers=setup.headers("admin")
    ).json()
    ids = [e["audit_id"] for e in first["items"] + rest["items"]]
    assert len(ids) == len(set(ids)) == 4


def test_only_admins_read_the_audit_log(setup: Setup) -> None:
    for who in ("viewer", "operator", "viewer_a"):
        assert setup.get(who, "/api/v1/audit").status_code == 403


@pytest.mark.parametrize(("path", "action", "camera"), READS)
def test_no_audit_no_read(setup: Setup, path: str, action: str, camera: str | None) -> None:
    with setup.store.begin() as connection:
        connection.execute(text("DROP TABLE audit_log"))
    answer = setup.get("config_admin", _path(setup, path))
    assert answer.status_code == 503
    assert "audit" in answer.json()["detail"]
    assert answer.headers["content-type"] == "application/json"  # no image, no event


def test_repeated_thumbnail_reads_share_entries_and_are_counted(setup: Setup) -> None:
    path = f"/api/v1/cameras/{CAMERA_A}/thumbnail.jpg"
    state = setup.client.app.state.api  # type: ignore[attr-defined]
    for _ in range(5):  # a dashboard refreshing within one minute: one entry
        assert setup.get("viewer", path).status_code == 200
    assert len(audit_log(setup, action="cameras.thumbnail")) == 1
    assert setup.get("viewer_a", path).status_code == 200  # another caller: its own entry
    assert len(audit_log(setup, action="cameras.thumbnail")) == 2
    state.coalescer.window_s = 0.0  # the window has passed
    assert setup.get("viewer", path).status_code == 200
    newest = audit_log(setup, action="cameras.thumbnail", principal="viewer")[0]
    assert newest["detail"] == "+4 reads since the last entry"


def test_a_thumbnail_read_that_cannot_be_audited_is_refused_every_time(setup: Setup) -> None:
    path = f"/api/v1/cameras/{CAMERA_A}/thumbnail.jpg"
    with setup.store.begin() as connection:
        connection.execute(text("DROP TABLE audit_log"))
    for _ in range(2):  # a failed entry does not open a window that lets the next one pass
        assert setup.get("viewer", path).status_code == 503
