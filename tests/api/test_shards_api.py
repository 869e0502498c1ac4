"""``GET /api/v1/shards`` on the engine in one process: one shard, ``local``, that is this
process and runs exactly the cameras the API serves as running; admins for every camera only.
And every camera says its shard and machine (None in one process)."""

from __future__ import annotations

import os
import socket

import psutil
import pytest

from .conftest import CAMERA_A, CAMERA_B, Setup

ADDED = "added"


@pytest.mark.parametrize(
    ("who", "code"),
    [("anonymous", 401), ("viewer", 403), ("operator", 403), ("admin_a", 403), ("admin", 200),
     ("config_admin", 200)],
)  # fmt: skip
def test_only_an_admin_for_every_camera_lists_the_shards(setup: Setup, who: str, code: int) -> None:
    answer = setup.get(who, "/api/v1/shards")
    assert answer.status_code == code, answer.text
    if code != 200:
        assert "items" not in answer.text and "local" not in answer.text


def test_the_local_engine_is_one_shard_running_the_served_cameras(setup: Setup) -> None:
    admin = setup.headers("admin")
    added = setup.client.post(
        "/api/v1/cameras", json={"id": ADDED, "url": "rtsp://203.0.113.7/s"}, headers=admin
    )
    assert added.status_code == 201, added.text
    enabled = setup.client.patch(f"/api/v1/cameras/{CAMERA_A}", json={"enabled": True},
                                 headers=admin)  # fmt: skip
    assert enabled.status_code == 200, enabled.text
    answer = setup.get("admin", "/api/v1/shards")
    assert answer.status_code == 200, answer.text
    [shard] = answer.json()["items"]
    assert set(shard) == {"id", "node", "pid", "state", "cameras", "cpu", "rss_mb"}
    assert shard["id"] == "local" and shard["state"] == "running"
    assert shard["node"] == socket.gethostname() and shard["pid"] == os.getpid()
    assert sorted(shard["cameras"]) == sorted([ADDED, CAMERA_A])  # cam-b is disabled
    assert isinstance(shard["cpu"], float) and shard["cpu"] >= 0.0
    rss_mb = psutil.Process().memory_info().rss / 2**20
    assert isinstance(shard["rss_mb"], float) and 0.5 * rss_mb < shard["rss_mb"] < 2 * rss_mb


def test_every_camera_says_its_shard_and_node_none_in_one_process(setup: Setup) -> None:
    items = setup.get("admin", "/api/v1/cameras").json()["items"]
    assert {item["id"] for item in items} == {CAMERA_A, CAMERA_B}
    assert all(item["shard"] is None and item["node"] is None for item in items)
    one = setup.get("viewer", f"/api/v1/cameras/{CAMERA_A}").json()
    assert (one["shard"], one["node"]) == (None, None)
