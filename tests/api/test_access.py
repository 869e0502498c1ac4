"""The role x route x object table: who gets what for camera A's and camera B's objects.

``viewer_a``, ``operator_a`` and ``admin_a`` may see camera A only: every object of camera B
answers 404 for them (exactly like a missing object), by id as well as in lists. Clips (raw
media) need admin. Changing cameras needs admin, restarting one needs operator. Powers beyond
cameras (tokens, the audit log, adding cameras) need an admin token for every camera, else a
restricted admin could mint itself an unrestricted token.
"""

from __future__ import annotations

import pytest

from feedtag.core import EventKind

from .conftest import CAMERA_A, CAMERA_B, Setup
from .server import insert_event

CALLERS = [
    "anonymous", "viewer_a", "viewer", "operator_a", "operator", "admin_a", "admin",
    "config_admin",
]  # fmt: skip


def _row(path: str, **codes: int) -> list[tuple[str, str, int]]:
    """One route, the expected status per caller (callers not named: 200)."""
    return [(path, caller, codes.get(caller, 200)) for caller in CALLERS]


A_ONLY = {"anonymous": 401}
NOT_B = {"anonymous": 401, "viewer_a": 404, "operator_a": 404, "admin_a": 404}
ADMIN_ONLY = {
    "anonymous": 401, "viewer_a": 403, "viewer": 403, "operator_a": 403, "operator": 403,
}  # fmt: skip
FULL_ADMIN_ONLY = {**ADMIN_ONLY, "admin_a": 403}

READS = [
    *_row("/api/v1/cameras/{A}", **A_ONLY),
    *_row("/api/v1/cameras/{B}", **NOT_B),
    *_row("/api/v1/cameras/{A}/thumbnail.jpg", **A_ONLY),
    *_row("/api/v1/cameras/{B}/thumbnail.jpg", **NOT_B),
    *_row(
        "/api/v1/cameras/no-such/thumbnail.jpg",
        **{**NOT_B, "viewer": 404, "operator": 404, "admin": 404, "config_admin": 404},
    ),
    *_row("/api/v1/events/{event_A}", **A_ONLY),
    *_row("/api/v1/events/{event_B}", **NOT_B),
    *_row("/api/v1/events/{event_A}/snapshot.jpg", **A_ONLY),
    *_row("/api/v1/events/{event_B}/snapshot.jpg", **NOT_B),
    *_row("/api/v1/events/{event_A}/clip.mp4", **ADMIN_ONLY),
    *_row("/api/v1/events/{event_B}/clip.mp4", **ADMIN_ONLY, admin_a=404),
    *_row("/api/v1/cameras", **A_ONLY),
    *_row("/api/v1/events", **A_ONLY),
    *_row("/api/v1/tags?label=person", **A_ONLY),
    *_row("/api/v1/stats", **A_ONLY),
    *_row("/metrics", **A_ONLY),
    *_row("/api/v1/session", **A_ONLY),
    *_row("/api/v1/audit", **FULL_ADMIN_ONLY),
    *_row("/api/v1/tokens", **FULL_ADMIN_ONLY),
    *_row("/health"),
    *_row("/api/v1/openapi.json"),
    *_row("/"),
    *_row("/static/app.js"),
]


def _fill(path: str, setup: Setup) -> str:
    return path.format(
        A=CAMERA_A, B=CAMERA_B,
        event_A=setup.events[CAMERA_A].event_id, event_B=setup.events[CAMERA_B].event_id,
    )  # fmt: skip


@pytest.mark.parametrize(("path", "caller", "expected"), READS)
def test_reads(setup: Setup, path: str, caller: str, expected: int) -> None:
    answer = setup.get(caller, _fill(path, setup))
    assert answer.status_code == expected, answer.text[:200]
    if expected == 404:
        # the same answer whether the object is missing or another camera's
        missing_path = _fill(path, setup).replace(CAMERA_B, "no-such")
        missing_path = missing_path.replace(setup.events[CAMERA_B].event_id, "0" * 32)
        missing = setup.get(caller, missing_path)
        assert (missing.status_code, missing.json()) == (404, answer.json())


@pytest.mark.parametrize("caller", ["viewer_a", "operator_a", "admin_a"])
def test_lists_hold_only_the_callers_cameras(setup: Setup, caller: str) -> None:
    cameras = setup.get(caller, "/api/v1/cameras").json()["items"]
    assert [camera["id"] for camera in cameras] == [CAMERA_A]
    for query in ("", f"?camera={CAMERA_B}", f"?camera={CAMERA_A}&camera={CAMERA_B}"):
        events = setup.get(caller, f"/api/v1/events{query}").json()["items"]
        assert {event["camera_id"] for event in events} <= {CAMERA_A}
    assert setup.get(caller, f"/api/v1/events?camera={CAMERA_B}").json()["items"] == []
    stats = setup.get(caller, "/api/v1/stats").json()
    assert {bucket["camera_id"] for bucket in stats["buckets"]} == {CAMERA_A}
    stats_b = setup.get(caller, f"/api/v1/stats?camera={CAMERA_B}").json()
    assert stats_b["buckets"] == [] and stats_b["by_kind"] == {}


def test_unrestricted_callers_see_both_cameras(setup: Setup) -> None:
    events = setup.get("viewer", "/api/v1/events").json()["items"]
    assert {event["camera_id"] for event in events} == {CAMERA_A, CAMERA_B}
    cameras = setup.get("viewer", "/api/v1/cameras").json()["items"]
    assert [camera["id"] for camera in cameras] == [CAMERA_A, CAMERA_B]


STATS_FILTERS = [
    # (caller, query, the totals per kind); seeded: a line_cross on each camera
    ("viewer", "", {"line_cross": 2, "dwell": 1, "zone_enter": 1}),
    ("viewer", f"?camera={CAMERA_A}", {"line_cross": 1, "dwell": 1}),
    ("viewer", "?kind=dwell&kind=zone_enter", {"dwell": 1, "zone_enter": 1}),
    ("viewer", "?label=car", {"dwell": 1}),
    ("viewer", f"?camera={CAMERA_B}&label=person", {"zone_enter": 1}),
    ("viewer_a", "", {"line_cross": 1, "dwell": 1}),
    ("viewer_a", f"?camera={CAMERA_B}", {}),
]  # fmt: skip


@pytest.mark.parametrize(("caller", "query", "by_kind"), STATS_FILTERS)
def test_stats_totals_per_kind_follow_the_filters(
    setup: Setup, caller: str, query: str, by_kind: dict[str, int]
) -> None:
    api = setup.app.state.api
    insert_event(setup.store, api.media, CAMERA_A, EventKind.DWELL, label="car", snapshot=False)
    insert_event(setup.store, api.media, CAMERA_B, EventKind.ZONE_ENTER, snapshot=False)
    stats = setup.get(caller, f"/api/v1/stats{query}").json()
    assert stats["by_kind"] == by_kind
    assert stats["total"] == sum(by_kind.values())


def test_stats_by_label_count_every_camera_and_rank_the_cameras(setup: Setup) -> None:
    """``by=label``: the buckets add up every camera's (as many rows however many cameras),
    ``top`` keeps the cameras with the most events, and a restricted token ranks its own."""
    api = setup.app.state.api
    for _ in range(2):
        insert_event(setup.store, api.media, CAMERA_B, EventKind.ZONE_ENTER, snapshot=False)
    per_camera = setup.get("viewer", "/api/v1/stats").json()
    by_label = setup.get("viewer", "/api/v1/stats?by=label&top=1").json()
    assert all(bucket["camera_id"] is None for bucket in by_label["buckets"])
    assert by_label["total"] == per_camera["total"] == 4
    assert by_label["by_kind"] == per_camera["by_kind"]
    assert (by_label["by_camera"], by_label["cameras"]) == ({CAMERA_B: 3}, 2)
    assert sum(row["count"] for row in by_label["top_cameras"]) == 3
    assert {row["camera_id"] for row in by_label["top_cameras"]} == {CAMERA_B}
    mine = setup.get("viewer_a", "/api/v1/stats?by=label").json()
    assert (mine["by_camera"], mine["cameras"], mine["total"]) == ({CAMERA_A: 1}, 1, 1)
    for bad in ("by=zone", "by=label&top=0", "by=label&top=1001"):
        answer = setup.get("viewer", f"/api/v1/stats?{bad}")
        assert answer.status_code == 422, bad
        assert answer.json()["detail"][0]["loc"][-1] == bad.split("&")[-1].split("=")[0]


NEW_CAMERA = {"id": "new-cam", "url": "rtsp://203.0.113.7/stream", "enabled": False}
CHANGES = [
    ("POST", "/api/v1/cameras", NEW_CAMERA, {"admin": 201, "config_admin": 201}),
    ("PATCH", "/api/v1/cameras/{A}", {"name": "Gate"},
     {"admin_a": 200, "admin": 200, "config_admin": 200}),
    ("PATCH", "/api/v1/cameras/{B}", {"name": "Gate"},
     {"admin_a": 404, "admin": 200, "config_admin": 200}),
    ("DELETE", "/api/v1/cameras/{A}", None, {"admin_a": 204, "admin": 204, "config_admin": 204}),
    ("DELETE", "/api/v1/cameras/{B}", None, {"admin_a": 404, "admin": 204, "config_admin": 204}),
    # restarting a disabled camera is a conflict; restricted operators get 404 for B
    ("POST", "/api/v1/cameras/{A}/restart", None,
     {"operator_a": 409, "operator": 409, "admin_a": 409, "admin": 409, "config_admin": 409}),
    ("POST", "/api/v1/cameras/{B}/restart", None,
     {"operator_a": 404, "operator": 409, "admin_a": 404, "admin": 409, "config_admin": 409}),
    ("POST", "/api/v1/tokens", {"name": "x", "role": "viewer"},
     {"admin": 201, "config_admin": 201}),
]  # fmt: skip


@pytest.mark.parametrize("change", CHANGES, ids=[f"{c[0]} {c[1]}" for c in CHANGES])
@pytest.mark.parametrize("caller", CALLERS)
def test_changes(
    setup: Setup, caller: str, change: tuple[str, str, object, dict[str, int]]
) -> None:
    method, path, body, allowed = change
    default = 401 if caller == "anonymous" else 403
    expected = allowed.get(caller, default)
    answer = setup.client.request(
        method, _fill(path, setup), headers=setup.headers(caller), json=body
    )
    assert answer.status_code == expected, answer.text[:300]
