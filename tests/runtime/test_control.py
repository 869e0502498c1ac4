"""The engine's control interface and the composition root, on real parts: a looping file
camera, the real detector, a real SQLite store and the real API under uvicorn."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

import feedtag.runtime.database as database_module
from feedtag.api.app import (
    admin_credential_present,
    close_app,
    create_app,
    missing_admin_credential,
)
from feedtag.api.metrics import engine_registry
from feedtag.config import validate_config
from feedtag.config.models import CameraConfig, FeedtagConfig
from feedtag.core import CameraState
from feedtag.errors import CameraExists, CameraNotFound, ConfigError, FeedtagError
from feedtag.runtime.app import STOP_DEADLINE_S, ApiParts, NodeApp
from feedtag.runtime.bus import EventBus
from feedtag.runtime.control import EngineSnapshot, ShardSnapshot
from feedtag.runtime.local import LocalEngineControl
from feedtag.runtime.node import NodeEngine

from ..conftest import wait_for

EVERYWHERE = [[0, 0], [1, 0], [1, 1], [0, 1]]


def node_config(clip: Path, tmp_path: Path, **overrides: Any) -> FeedtagConfig:
    analytics = {
        "zones": [{"name": "all", "polygon": EVERYWHERE}],
        "rules": [{"kind": "crowding", "zone": "all", "min_count": 2, "min_duration_s": 1}],
    }
    camera = {"id": "door", "url": clip.name, "loop": True, "analysis_fps": 2,
              "analytics": analytics}  # fmt: skip
    data = {
        "media_root": str(clip.parent),
        "store": {"data_dir": str(tmp_path / "data")},
        "engine": {"status_interval_s": 0.2},
        "cameras": [camera],
        **overrides,
    }
    return validate_config(data, source="test")


def api_parts() -> ApiParts:
    return ApiParts(
        credential_present=admin_credential_present,
        missing_credential=missing_admin_credential,
        create=lambda config, engine, store, catalog: create_app(
            config, engine, store=store, catalog=catalog
        ),
        close=close_app,
    )


class FixedControl:
    """An engine control that answers one snapshot and no shards (only ``snapshot``, of every
    camera, and ``shards`` are called)."""

    def __init__(self, snapshot: EngineSnapshot) -> None:
        self._snapshot = snapshot

    def snapshot(self, camera_ids: object = None) -> EngineSnapshot:
        assert camera_ids is None, "the full view of the metrics takes every camera"
        return self._snapshot

    def shards(self) -> list[ShardSnapshot]:
        return []


def metrics_of(snapshot: EngineSnapshot) -> str:
    registry = engine_registry(FixedControl(snapshot), EventBus())  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def test_the_node_app_runs_serves_and_stops_within_its_deadline(
    vtest_clip: Path, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrations: list[object] = []
    real_upgrade = database_module.upgrade

    def counting_upgrade(engine: Any) -> None:
        migrations.append(engine)
        real_upgrade(engine)

    monkeypatch.setattr(database_module, "upgrade", counting_upgrade)
    token = secrets.token_urlsafe(32)
    config = node_config(
        vtest_clip, tmp_path, detector={"models_dir": str(models_dir)},
        api={"enabled": True, "port": 0, "admin_token": token},
    )  # fmt: skip
    urls: list[str] = []
    app = NodeApp(config, api=api_parts(), on_api=urls.append)
    app.start()
    try:
        assert len(migrations) == 1, "the store is opened and migrated once"
        assert urls == [app.api_url]

        def detected_and_counted() -> EngineSnapshot | None:
            snapshot = app.control.snapshot()
            door = snapshot.camera("door")
            ready = door is not None and door.vision is not None and door.vision.detected >= 2
            return snapshot if ready and door is not None and door.event_counts else None

        snapshot = wait_for(detected_and_counted, 30, what="detections and an event")
        # a plain value: it round-trips through JSON and shows what /metrics shows
        copy = EngineSnapshot.from_dict(json.loads(json.dumps(dataclasses.asdict(snapshot))))
        assert copy == snapshot
        text = metrics_of(copy)
        assert text == metrics_of(snapshot)
        for name in (
            "camera_state",
            "camera_queue_depth",
            "camera_detector_latency_seconds",
            "camera_frames_detected",
            "events_total",
            "store_written",
            "spool_bytes",
        ):
            assert f'feedtag_{name}' in text, name  # fmt: skip
        assert snapshot.store is not None and snapshot.store.available
        headers = {"Authorization": f"Bearer {token}"}
        served = httpx.get(f"{app.api_url}/metrics", headers=headers, timeout=5).text
        assert 'feedtag_camera_frames_detected_total{camera="door"}' in served
        # the adaptive analysis rate: busy footage without a motion rule runs at analysis_fps
        assert 'feedtag_camera_analysis_fps{camera="door"} 2.0' in served
        assert 'feedtag_camera_analysis_level{camera="door",level="normal"} 1.0' in served
        assert 'feedtag_camera_analysis_level{camera="door",level="floor"} 0.0' in served
        assert 'feedtag_camera_packet_gate{camera="door",state="believed"} ' in served
        door = httpx.get(f"{app.api_url}/api/v1/cameras/door", headers=headers, timeout=5)
        status = door.json()["status"]
        assert (status["analysis_level"], status["target_fps"]) == ("normal", 2.0)
        assert status["packet_gate"] in {"learning", "believed", "not_believed"}  # on: default
        assert status["keyframes_unchanged"] == 0  # busy: never at the floor

        # what the camera costs: its ingest thread's CPU, its share of the detector, the CPU
        # of its frames outside the detector, and that of its event's snapshot (written by
        # the media thread, so perhaps a moment after the event)
        def media_counted() -> bool:
            seen = app.control.snapshot().camera("door")
            return seen is not None and seen.media_cpu_s > 0

        wait_for(media_counted, 10, what="the snapshot's CPU counted")
        door = httpx.get(f"{app.api_url}/api/v1/cameras/door", headers=headers, timeout=5)
        served = httpx.get(f"{app.api_url}/metrics", headers=headers, timeout=5).text
        vision = door.json()["vision"]
        assert status["ingest_cpu_s"] > 0
        assert vision["detector_s"] > 0 and vision["analysis_cpu_s"] > 0
        assert vision["media_cpu_s"] > 0
        for name in ("ingest_cpu", "detector", "analysis_cpu", "media_cpu"):
            assert f'feedtag_camera_{name}_seconds_total{{camera="door"}} ' in served, name
        assert httpx.get(f"{app.api_url}/health", timeout=5).json() == {"status": "ok"}
    finally:
        began = time.monotonic()
        assert app.stop()
        took = time.monotonic() - began
    assert took < STOP_DEADLINE_S, took
    assert app.last_stop is not None and app.last_stop.clean and app.last_stop.seconds <= took
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{urls[0]}/health", timeout=2)
    after = app.control.snapshot()
    assert after.camera("door") is not None
    assert after.store is not None and after.store.queued == 0  # written or spooled


def test_metrics_in_totals_have_no_camera_label(vtest_clip: Path, tmp_path: Path) -> None:
    token = secrets.token_urlsafe(32)
    config = node_config(
        vtest_clip, tmp_path, detector={"enabled": False},
        api={"enabled": True, "port": 0, "admin_token": token, "metrics": "totals"},
    )  # fmt: skip
    second = config.cameras[0].model_copy(update={"id": "gate"})
    config = config.model_copy(update={"cameras": [config.cameras[0], second]})
    app = NodeApp(config, api=api_parts())
    app.start()
    try:
        headers = {"Authorization": f"Bearer {token}"}

        def both_online() -> str | None:
            text = httpx.get(f"{app.api_url}/metrics", headers=headers, timeout=5).text
            return text if 'feedtag_camera_state{state="online"} 2.0' in text else None

        text = wait_for(both_online, 20, what="two cameras online in the totals")
        camera_lines = [line for line in text.splitlines() if line.startswith("feedtag_camera_")]
        assert camera_lines and not any("camera=" in line for line in camera_lines)
        assert 'feedtag_camera_analysis_level{level="normal"} 2.0' in text
        frames = [
            line for line in camera_lines if line.startswith("feedtag_camera_frames_analysed")
        ]
        assert len(frames) == 1 and float(frames[0].split()[-1]) > 0
    finally:
        assert app.stop()


def test_run_stops_on_sigterm_and_gives_the_handlers_back(vtest_clip: Path, tmp_path: Path) -> None:
    config = node_config(vtest_clip, tmp_path, detector={"enabled": False}, api={"enabled": False})
    app = NodeApp(config, api=api_parts())
    before = signal.getsignal(signal.SIGTERM)
    seen: list[EngineSnapshot] = []
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    began = time.monotonic()
    try:
        last = app.run(None, seen.append)
    finally:
        timer.cancel()
    assert time.monotonic() - began < 1.5 + STOP_DEADLINE_S
    assert signal.getsignal(signal.SIGTERM) is before
    assert seen and all(s.store is None for s in seen)  # detection off: nothing is written
    door = last.camera("door")
    assert door is not None and door.ingest.state is CameraState.STOPPED
    assert app.api_url is None  # api.enabled: false


def test_a_missing_admin_credential_stops_the_start_before_anything_runs(
    vtest_clip: Path, tmp_path: Path
) -> None:
    config = node_config(vtest_clip, tmp_path, detector={"enabled": False},
                         api={"enabled": True, "port": 0})  # fmt: skip
    threads = set(threading.enumerate())
    app = NodeApp(config, api=api_parts())
    with pytest.raises(ConfigError, match=r"api\.admin_token"):
        app.start()
    assert set(threading.enumerate()) <= threads


def camera(clip: Path, camera_id: str) -> CameraConfig:
    config = validate_config(
        {"media_root": str(clip.parent), "cameras": [{"id": camera_id, "url": clip.name}]}
    )
    return config.cameras[0]


@pytest.mark.parametrize(
    ("operation", "error", "camera_id"),
    [
        ("add", CameraExists, "door"),
        ("change", CameraNotFound, "gone"),
        ("remove", CameraNotFound, "gone"),
        ("restart", CameraNotFound, "gone"),
    ],
)
def test_control_errors_name_the_camera(
    vtest_clip: Path, tmp_path: Path, operation: str, error: type[FeedtagError], camera_id: str
) -> None:
    config = node_config(vtest_clip, tmp_path, detector={"enabled": False})
    control = LocalEngineControl(NodeEngine(config))
    calls = {
        "add": lambda: control.add_camera(camera(vtest_clip, camera_id)),
        "change": lambda: control.change_camera(camera(vtest_clip, camera_id)),
        "remove": lambda: control.remove_camera(camera_id),
        "restart": lambda: control.restart_camera(camera_id),
    }
    with pytest.raises(error, match=repr(camera_id)) as raised:
        calls[operation]()
    assert raised.value.camera_id == camera_id  # type: ignore[attr-defined]
    assert not isinstance(raised.value, KeyError | ValueError)
    assert [c.camera_id for c in control.snapshot().cameras] == ["door"]  # nothing changed
    assert control.stop()


def test_restart_keeps_the_camera_and_its_settings(vtest_clip: Path, tmp_path: Path) -> None:
    config = node_config(vtest_clip, tmp_path, detector={"enabled": False})
    control = LocalEngineControl(NodeEngine(config))
    control.start()
    try:
        wait_for(lambda: control.snapshot().cameras[0].ingest.counters.frames_decoded > 0, 15)
        control.restart_camera("door")
        assert control.cameras() == [config.cameras[0]]
        door = control.snapshot().camera("door")
        assert door is not None and door.ingest.counters.frames_decoded == 0  # a fresh start
        # a page of cameras, and the states alone
        assert [c.camera_id for c in control.snapshot(["gone", "door"]).cameras] == ["door"]
        assert control.snapshot(()).cameras == ()
        assert control.states() == {"door": control.snapshot().cameras[0].ingest.state}
    finally:
        assert control.stop()
