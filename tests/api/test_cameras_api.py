"""Cameras added or changed through the API: the config file's validation (field-named 422s)
plus the network check (loopback, link-local, unspecified, multicast and metadata addresses
refused unless ``api.allow_networks`` permits them)."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Collection
from pathlib import Path

import pytest

from feedtag.api.app import create_app
from feedtag.api.netcheck import check_camera_address, refusal
from feedtag.core import CameraState
from feedtag.errors import SourceRejected
from feedtag.runtime.control import EngineSnapshot
from feedtag.runtime.local import LocalEngineControl
from feedtag.runtime.node import NodeEngine
from feedtag.urls import CameraUrl

from .conftest import CAMERA_A, CAMERA_B, Setup, TestClient, api_config

REFUSED = [
    ("rtsp://127.0.0.1/s", "loopback"),
    ("rtsp://127.8.9.10:8554/s", "loopback"),
    ("rtsp://[::1]/s", "loopback"),
    ("rtsp://[::ffff:127.0.0.1]/s", "loopback"),
    ("http://localhost/s", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]/latest/", "metadata"),
    ("http://100.100.100.200/latest/", "metadata"),
    ("rtsp://169.254.10.20/s", "link-local"),
    ("rtsp://[fe80::1]/s", "link-local"),
    ("rtsp://0.0.0.0/s", "unspecified"),
    ("rtsp://[::]/s", "unspecified"),
    ("rtsp://224.0.0.1/s", "multicast"),
    ("rtsp://[ff02::1]/s", "multicast"),
]
ACCEPTED = ["rtsp://203.0.113.7/s", "rtsps://[2001:db8::7]/s", "http://192.0.2.1:8080/mjpg"]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_refused_addresses(url: str, reason: str) -> None:
    with pytest.raises(SourceRejected, match=reason):
        check_camera_address(CameraUrl.parse(url), [])


@pytest.mark.parametrize("url", ACCEPTED)
def test_accepted_addresses(url: str) -> None:
    check_camera_address(CameraUrl.parse(url), [])


@pytest.mark.parametrize(
    ("url", "allowed"),
    [("rtsp://127.0.0.1/s", ["127.0.0.0/8"]), ("rtsp://[::1]/s", ["::1/128"]),
     ("rtsp://169.254.10.20/s", ["169.254.0.0/16"])],
)  # fmt: skip
def test_allow_networks_permits_a_range(url: str, allowed: list[str]) -> None:
    check_camera_address(CameraUrl.parse(url), allowed)


def test_a_name_is_checked_by_every_address_it_resolves_to() -> None:
    def resolve(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return [ipaddress.ip_address("203.0.113.9"), ipaddress.ip_address("169.254.169.254")]

    with pytest.raises(SourceRejected, match="metadata"):
        check_camera_address(CameraUrl.parse("rtsp://cam.example/s"), [], resolve)


def test_an_unresolvable_name_is_refused() -> None:
    with pytest.raises(SourceRejected, match="does not resolve"):
        check_camera_address(CameraUrl.parse("rtsp://no-such-host.invalid/s"), [])


def test_refusal_reasons() -> None:
    assert refusal(ipaddress.ip_address("8.8.8.8")) is None
    assert refusal(ipaddress.ip_address("10.1.2.3")) is None  # private LANs hold cameras


# -- through the API -----------------------------------------------------------------------


def post(setup: Setup, body: dict[str, object]) -> object:
    return setup.client.post("/api/v1/cameras", json=body, headers=setup.headers("admin"))


@pytest.mark.parametrize(("url", "reason"), REFUSED[:6])
def test_the_api_refuses_cameras_on_refused_addresses(setup: Setup, url: str, reason: str) -> None:
    answer = post(setup, {"id": "probe", "url": url})
    assert answer.status_code == 422
    [problem] = answer.json()["detail"]
    assert problem["loc"] == ["body", "url"] and reason in problem["msg"]
    assert setup.get("admin", "/api/v1/cameras/probe").status_code == 404


def test_a_changed_url_is_checked_too(setup: Setup) -> None:
    answer = setup.client.patch(
        f"/api/v1/cameras/{CAMERA_A}", json={"url": "http://169.254.169.254/"},
        headers=setup.headers("admin"),
    )  # fmt: skip
    assert answer.status_code == 422
    assert (
        setup.get("admin", f"/api/v1/cameras/{CAMERA_A}")
        .json()["url"]
        .startswith("rtsp://cam-a.example")
    )


INVALID = [
    ({"id": "bad id!", "url": "rtsp://203.0.113.7/s"}, ["body", "id"]),
    ({"id": "x", "url": "pipe:0"}, ["body", "url"]),
    ({"id": "x", "url": "concat:a|b"}, ["body", "url"]),
    ({"id": "x", "url": "/etc/passwd"}, ["body", "url"]),  # no media_root: files refused
    ({"id": "x", "url": "rtsp://203.0.113.7/s", "analysis_fps": 0}, ["body", "analysis_fps"]),
    ({"id": "x", "url": "rtsp://203.0.113.7/s", "surprise": 1}, ["body", "surprise"]),
    ({"id": "x"}, ["body", "url"]),
    ({"id": "x", "url": "rtsp://203.0.113.7/s", "loop": True}, ["body"]),
]


@pytest.mark.parametrize(("body", "loc"), INVALID)
def test_invalid_cameras_get_field_named_errors(setup: Setup, body: dict[str, object],
                                                loc: list[str]) -> None:  # fmt: skip
    answer = post(setup, body)
    assert answer.status_code == 422, answer.text
    assert loc in [problem["loc"] for problem in answer.json()["detail"]]


def test_duplicate_ids_are_a_conflict(setup: Setup) -> None:
    answer = post(setup, {"id": CAMERA_A, "url": "rtsp://203.0.113.7/s"})
    assert answer.status_code == 409


def test_patch_keeps_credentials_and_cannot_rename(setup: Setup) -> None:
    answer = setup.client.patch(
        "/api/v1/cameras/cam-b", json={"analysis_fps": 2.0}, headers=setup.headers("admin")
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["url"] == "rtsp://u:***@cam-b.example/s"
    camera = setup.app.state.api.registry.get("cam-b")
    assert camera.analysis_fps == 2.0 and camera.url.password.get_secret_value() == "hunter2"
    rename = setup.client.patch(
        "/api/v1/cameras/cam-b", json={"id": "other"}, headers=setup.headers("admin")
    )
    assert rename.status_code == 422


def test_the_server_refuses_to_start_without_an_admin_credential(tmp_path: Path) -> None:
    from feedtag.errors import ConfigError

    config = api_config(tmp_path, secrets.token_urlsafe(32)).model_copy(
        update={"api": api_config(tmp_path, "x" * 32).api.model_copy(update={"admin_token": None})}
    )
    with pytest.raises(ConfigError, match="admin credential"):
        create_app(config, LocalEngineControl(NodeEngine(config)))


def test_a_stored_admin_token_is_an_admin_credential(tmp_path: Path) -> None:
    from feedtag.store.engine import create_store_engine
    from feedtag.store.migrations import upgrade
    from feedtag.store.tokens import Role, create_token

    base = api_config(tmp_path, "x" * 32)
    config = base.model_copy(update={"api": base.api.model_copy(update={"admin_token": None})})
    store = create_store_engine(config.store.resolved_url())
    upgrade(store)
    token, _ = create_token(store, "ops", Role.ADMIN)
    with TestClient(
        create_app(config, LocalEngineControl(NodeEngine(config)), store=store)
    ) as client:
        answer = client.get("/api/v1/audit", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
    store.dispose()


# -- the list in pages ---------------------------------------------------------------------


def listed(setup: Setup, who: str = "admin", **params: object) -> dict[str, object]:
    answer = setup.get(who, "/api/v1/cameras", params=params)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def ids(page: dict[str, object]) -> list[str]:
    items = page["items"]
    assert isinstance(items, list)
    return [item["id"] for item in items]


def test_the_camera_list_pages_in_id_order_and_filters(setup: Setup) -> None:
    for number in (5, 3, 1, 4, 2):  # added out of order
        body = {"id": f"pole-{number}", "name": f"Pole {number}", "url": ACCEPTED[0],
                "enabled": False}  # fmt: skip
        assert post(setup, body).status_code == 201
    everything = listed(setup)
    # without a limit: every camera, in config order, then as added
    assert ids(everything) == [CAMERA_A, CAMERA_B, "pole-5", "pole-3", "pole-1", "pole-4", "pole-2"]
    assert everything["next_cursor"] is None and everything["total"] == 7
    first = listed(setup, limit=3)
    assert ids(first) == [CAMERA_A, CAMERA_B, "pole-1"]
    assert (first["next_cursor"], first["total"]) == ("pole-1", 7)
    # a camera added before the cursor is not on a later page, and nothing is repeated
    assert post(setup, {"id": "pole-0", "url": ACCEPTED[0], "enabled": False}).status_code == 201
    second = listed(setup, limit=3, cursor=first["next_cursor"])
    assert ids(second) == ["pole-2", "pole-3", "pole-4"] and second["total"] == 8
    last = listed(setup, limit=3, cursor=second["next_cursor"])
    assert ids(last) == ["pole-5"] and last["next_cursor"] is None
    # by id or name, any case; by state, with every state counted for a summary
    assert ids(listed(setup, q="POLE 4")) == ["pole-4"]
    assert ids(listed(setup, q="cam-", limit=10)) == [CAMERA_A, CAMERA_B]
    states = listed(setup, q="pole", state="disabled")
    assert states["total"] == 6
    assert states["states"] == {"online": 0, "connecting": 0, "stalled": 0, "offline": 0,
                                "stopped": 0, "disabled": 6}  # fmt: skip
    online = listed(setup, state="online")
    assert (online["items"], online["total"]) == ([], 0)
    # a token for one camera pages over that camera only
    mine = listed(setup, "viewer_a", limit=1)
    assert (ids(mine), mine["total"], mine["next_cursor"]) == ([CAMERA_A], 1, None)
    # names only, for a list of every camera that stays cheap with thousands
    brief = listed(setup, brief=True, q="pole-1")
    assert brief["items"] == [{"id": "pole-1", "name": "Pole 1", "enabled": False}]
    assert (brief["total"], brief["states"]) == (1, None)


def test_a_page_asks_the_engine_for_its_own_cameras_only(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With thousands of cameras on many shards, a page of the grid must not gather every
    camera's status: the engine is asked for every camera's state and the page's status."""
    for number in range(5):
        assert post(setup, {"id": f"pole-{number}", "url": ACCEPTED[0]}).status_code == 201
    engine = setup.app.state.api.engine
    asked: list[tuple[str, list[str] | None]] = []
    snapshot, states = engine.snapshot, engine.states

    def asking_snapshot(camera_ids: Collection[str] | None = None) -> EngineSnapshot:
        asked.append(("snapshot", None if camera_ids is None else list(camera_ids)))
        return snapshot(camera_ids)  # type: ignore[no-any-return]

    def asking_states() -> dict[str, CameraState]:
        asked.append(("states", None))
        return states()  # type: ignore[no-any-return]

    monkeypatch.setattr(engine, "snapshot", asking_snapshot)
    monkeypatch.setattr(engine, "states", asking_states)
    page = listed(setup, limit=2, cursor="pole-0")
    assert ids(page) == ["pole-1", "pole-2"]
    assert asked == [("states", None), ("snapshot", ["pole-1", "pole-2"])]
    running = {c.camera_id: c.ingest.state.value for c in snapshot().cameras}
    assert {item["id"]: item["status"]["state"] for item in page["items"]} == {
        "pole-1": running["pole-1"], "pole-2": running["pole-2"]
    }  # fmt: skip
    assert sum(page["states"].values()) == page["total"] == 7  # type: ignore[union-attr]
    asked.clear()
    assert setup.get("admin", "/api/v1/cameras/pole-3").json()["id"] == "pole-3"
    assert asked == [("snapshot", ["pole-3"])]
    asked.clear()
    assert listed(setup)["total"] == 7  # the whole list: every camera, not every id sent
    assert asked == [("states", None), ("snapshot", None)]
    asked.clear()
    assert listed(setup, brief=True)["total"] == 7
    assert setup.get("anonymous", "/health").status_code == 200
    assert asked == [("snapshot", [])]  # health needs only the store's figures


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"cursor": "../x"}, "cursor"),
     ({"state": "asleep"}, "state"), ({"q": "x" * 201}, "q"),
     ({"brief": "true", "state": "online"}, "state"), ({"brief": "maybe"}, "brief")],
)  # fmt: skip
def test_bad_list_parameters_are_named(setup: Setup, params: dict[str, object], field: str) -> None:
    answer = setup.get("admin", "/api/v1/cameras", params=params)
    assert answer.status_code == 422
    assert [problem["loc"] for problem in answer.json()["detail"]] == [["query", field]]
