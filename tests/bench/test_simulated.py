"""The simulated cameras of the control-plane benchmark: status only, no threads, refused
for real cameras, never reachable from the config; a real shard runs a simulated camera as
a real one (it goes offline)."""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest

from feedtag.bench.simulated import (
    SIMULATED_REASON,
    SimulatedCameras,
    is_simulated,
    simulated_camera,
)
from feedtag.config import validate_config
from feedtag.config.models import CameraConfig, FeedtagConfig
from feedtag.core import CameraState
from feedtag.errors import CameraExists, CameraNotFound, ConfigError
from feedtag.runtime.control import EngineSnapshot
from feedtag.runtime.ray_shard import ShardWorker

from ..conftest import wait_for


def plain_config() -> FeedtagConfig:
    """No detector, so a real shard opens no store (the tests need no database)."""
    return validate_config({"detector": {"enabled": False}})


def camera(url: str) -> CameraConfig:
    return CameraConfig.model_validate({"id": "cam", "url": url})


@pytest.mark.parametrize(
    ("url", "simulated"),
    [
        ("rtsp://sim-000001.invalid/status", True),
        ("rtsp://SIM.INVALID/status", True),
        ("http://sim.invalid/stream.m3u8", True),
        ("rtsp://cam.example.com/stream", False),
        ("rtsp://invalid/stream", False),
        ("rtsp://sim.invalid.example.com/stream", False),
        ("rtsp://192.0.2.10/stream", False),
    ],
)
def test_simulated_cameras_refuse_every_real_camera(url: str, simulated: bool) -> None:
    shard = SimulatedCameras("shard-0", plain_config())
    assert is_simulated(camera(url)) is simulated
    if simulated:
        shard.add_camera(camera(url))
        assert [c.id for c in shard.cameras()] == ["cam"]
        return
    with pytest.raises(ConfigError) as refused:
        shard.add_camera(camera(url))
    assert "camera cam" in str(refused.value) and "url" in str(refused.value)
    assert shard.cameras() == []


@pytest.mark.parametrize("url", ["sim://sim-1.invalid/status", "sim:cam-1"])
def test_the_config_has_no_simulated_camera_scheme(url: str) -> None:
    with pytest.raises(ConfigError, match="url"):
        validate_config({"cameras": [{"id": "cam", "url": url}]})


def test_simulated_cameras_answer_like_an_engine() -> None:
    shard = SimulatedCameras("shard-0", plain_config())
    shard.start()
    first, second = simulated_camera(1), simulated_camera(2)
    shard.add_camera(first)
    shard.add_camera(second)
    with pytest.raises(CameraExists):
        shard.add_camera(first)
    before = shard.snapshot().camera(first.id)
    assert before is not None
    shard.restart_camera(first.id)
    after = shard.snapshot().camera(first.id)
    assert after is not None and after.ingest.since >= before.ingest.since
    shard.remove_camera(second.id)
    for missing in (lambda: shard.remove_camera(second.id),
                    lambda: shard.restart_camera(second.id)):  # fmt: skip
        with pytest.raises(CameraNotFound):
            missing()
    snapshot = shard.snapshot()
    assert [c.camera_id for c in snapshot.cameras] == [first.id]
    status = snapshot.cameras[0].ingest
    assert status.state is CameraState.ONLINE and status.reason == SIMULATED_REASON
    assert status.counters.frames_decoded == 0 and snapshot.store is None
    text = json.dumps(dataclasses.asdict(snapshot))
    assert EngineSnapshot.from_dict(json.loads(text)) == snapshot
    assert shard.stop() and shard.cameras() == []


def test_a_shard_runs_thousands_of_simulated_cameras_without_threads() -> None:
    threads = threading.active_count()
    shard = ShardWorker("feedtag-shard-7", plain_config(), engine=SimulatedCameras)
    cameras = [simulated_camera(index) for index in range(3000)]
    shard.adopt(cameras)
    assert threading.active_count() == threads
    snapshot = shard.snapshot()
    assert len(snapshot.cameras) == 3000
    assert {(c.shard, c.ingest.state) for c in snapshot.cameras} == {
        ("feedtag-shard-7", CameraState.ONLINE)
    }
    shard.adopt(cameras[:1000])  # the coordinator moved 2000 away
    assert len(shard.cameras()) == 1000 and shard.starts_of(cameras[0].id) == 1
    assert shard.stop()


def test_a_real_shard_runs_a_simulated_camera_as_a_real_one() -> None:
    """Without the seam the shard's node engine tries to open the camera: it is never
    reported online, and goes offline with the reason."""
    shard = ShardWorker("feedtag-shard-0", plain_config())
    try:
        shard.add_camera(simulated_camera(1))

        def state() -> CameraState | None:
            found = shard.snapshot().camera("sim-000001")
            assert found is not None and found.ingest.reason != SIMULATED_REASON
            assert found.ingest.state is not CameraState.ONLINE
            return found.ingest.state if found.ingest.state is CameraState.OFFLINE else None

        wait_for(state, 20, 0.2, "the camera offline")
    finally:
        assert shard.stop()
