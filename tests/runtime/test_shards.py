"""One view of the engine's shards without Ray: the local engine as one shard (its process,
cameras, CPU and memory), the metrics' ``shard`` label and per-shard series, and how the Ray
control lists cameras held offline and shards that do not answer."""

from __future__ import annotations

import dataclasses
import os
import pickle
import socket
import time
from collections.abc import Collection
from pathlib import Path

import psutil
from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from feedtag.api.metrics import engine_registry
from feedtag.config import validate_config
from feedtag.core import CameraState, VisionStatus
from feedtag.runtime.bus import EventBus
from feedtag.runtime.camera_metrics import camera_totals
from feedtag.runtime.control import (
    CameraSnapshot,
    EngineSnapshot,
    ShardSnapshot,
    ShardState,
    held_offline,
)
from feedtag.runtime.local import LocalEngineControl, ProcessMeter
from feedtag.runtime.node import NodeEngine
from feedtag.runtime.ray_engine import held_since, merged_totals, silent_shard, with_offline

SHARD_0, SHARD_1 = "feedtag-shard-0", "feedtag-shard-1"


def test_the_local_engine_is_one_shard_of_this_process(vtest_clip: Path) -> None:
    config = validate_config({
        "media_root": str(vtest_clip.parent), "detector": {"enabled": False},
        "cameras": [{"id": cid, "url": vtest_clip.name, "loop": True} for cid in ("a", "b")],
    })  # fmt: skip
    control = LocalEngineControl(NodeEngine(config))
    control.start()
    try:
        [shard] = control.shards()
        assert (shard.shard_id, shard.state, shard.cameras) == ("local", ShardState.RUNNING,
                                                                ("a", "b"))  # fmt: skip
        assert (shard.node, shard.pid) == (socket.gethostname(), os.getpid())
        rss = psutil.Process().memory_info().rss
        assert shard.rss_bytes is not None and 0.5 * rss < shard.rss_bytes < 2 * rss
        control.remove_camera("a")
        assert control.shards()[0].cameras == ("b",)
    finally:
        assert control.stop()


def test_cpu_is_a_percent_of_one_core_over_the_last_window() -> None:
    process = psutil.Process()

    def used() -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    meter = ProcessMeter()
    start, start_used = time.monotonic(), used()
    while time.monotonic() - start < 1.2:  # busy: close to one core, as the machine allows
        sum(range(1000))
    percent, _ = meter.read()
    expected = 100.0 * (used() - start_used) / (time.monotonic() - start)
    assert expected > 10.0, "the busy loop got no CPU"
    assert abs(percent - expected) < 0.2 * expected + 5.0, (percent, expected)
    assert meter.read()[0] == percent, "reads within the window repeat the last figure"


class FixedControl:
    """An engine control that answers one snapshot and one list of shards, and totals as
    the Ray engine makes them: each shard's cameras combined apart (passed through pickle,
    as Ray passes them), the cameras on no shard as held offline."""

    def __init__(self, snapshot: EngineSnapshot, shards: list[ShardSnapshot]) -> None:
        self._snapshot, self._shards = snapshot, shards

    def snapshot(self, camera_ids: Collection[str] | None = None) -> EngineSnapshot:
        return self._of(camera_ids)

    def _of(self, camera_ids: Collection[str] | None) -> EngineSnapshot:
        if camera_ids is None:
            return self._snapshot
        cameras = tuple(c for c in self._snapshot.cameras if c.camera_id in set(camera_ids))
        return dataclasses.replace(self._snapshot, cameras=cameras)

    def camera_totals(self, camera_ids: Collection[str] | None = None) -> list[Metric]:
        asked = self._of(camera_ids).cameras
        parts = []
        for shard in sorted({c.shard for c in asked if c.shard is not None}):
            own = tuple(c for c in asked if c.shard == shard)
            built = camera_totals(dataclasses.replace(self._snapshot, cameras=own), sharded=True)
            counted = tuple(c.camera_id for c in own)
            parts.append(pickle.loads(pickle.dumps((counted, built))))  # noqa: S301 - our own
        offline = {c.camera_id: (c.ingest.reason, c.ingest.since) for c in self._snapshot.cameras
                   if c.shard is None}  # fmt: skip
        return merged_totals(parts, offline, camera_ids)

    def shards(self) -> list[ShardSnapshot]:
        return self._shards


def camera(camera_id: str, shard: str | None) -> CameraSnapshot:
    ingest = held_offline(camera_id, "test", 1.0)
    node = None if shard is None else "node-1"
    return CameraSnapshot(camera_id, ingest, None, 2, {"crowding": 3}, shard=shard, node=node)


SHARDS = [
    ShardSnapshot(SHARD_0, "node-1", 11, ShardState.RUNNING, ("a",), 12.5, 64 * 2**20),
    ShardSnapshot(SHARD_1, "node-2", 12, ShardState.UNREACHABLE, ("b", "c"), None, None),
]


def samples(
    snapshot: EngineSnapshot, cameras: frozenset[str] | None = None, per_camera: bool = True
) -> list[Sample]:
    control = FixedControl(snapshot, SHARDS)
    registry = engine_registry(control, EventBus(), cameras, per_camera)  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def held_camera(camera_id: str) -> CameraSnapshot:
    """A camera the coordinator holds offline, as the Ray engine lists it: no events, no
    queue, on no shard."""
    return dataclasses.replace(camera(camera_id, None), queue_depth=0, event_counts={})


def seen(
    camera_id: str, shard: str | None, *, frames: int, gated: int, latency_ms: float, queue: int
) -> CameraSnapshot:
    vision = VisionStatus(camera_id, frames, frames - gated, gated, 0, latency_ms, {}, 1)
    return dataclasses.replace(camera(camera_id, shard), vision=vision, queue_depth=queue)


def test_totals_combine_each_shards_cameras_into_one_series_set() -> None:
    cameras = (
        seen("a", SHARD_0, frames=10, gated=5, latency_ms=40.0, queue=1),
        seen("b", SHARD_1, frames=10, gated=2, latency_ms=90.0, queue=3),
        seen("c", SHARD_1, frames=10, gated=8, latency_ms=30.0, queue=4),
        held_camera("held"),  # held offline by the coordinator: on no shard
    )
    snapshot = EngineSnapshot(1.0, cameras, None)
    per_camera = samples(snapshot)
    totals = samples(snapshot, per_camera=False)
    assert not any("camera" in s.labels for s in totals)
    found = {(s.name, s.labels.get("shard"), s.labels.get("state") or s.labels.get("kind")): s.value
             for s in totals}  # fmt: skip
    # one-hot states sum to how many cameras are in each (all three are held offline)
    assert found[("feedtag_camera_state", SHARD_1, "offline")] == 2
    assert found[("feedtag_camera_state", SHARD_1, "online")] == 0
    assert found[("feedtag_camera_state", SHARD_0, "offline")] == 1
    assert found[("feedtag_camera_state", "", "offline")] == 1  # the held camera
    assert found[("feedtag_camera_queue_depth", "", None)] == 0
    assert found[("feedtag_camera_queue_depth", SHARD_1, None)] == 7
    assert found[("feedtag_events_total", SHARD_1, "crowding")] == 6
    assert found[("feedtag_camera_frames_detected_total", SHARD_1, None)] == 8 + 2
    assert found[("feedtag_camera_detector_latency_seconds", SHARD_1, None)] == 0.09  # largest
    assert found[("feedtag_camera_gate_ratio", SHARD_1, None)] == 0.5  # mean of 0.2 and 0.8
    # a sum over the cameras reads the same either way
    for name in ("feedtag_camera_state", "feedtag_camera_frames_dropped_total",
                 "feedtag_events_total", "feedtag_camera_tracks"):  # fmt: skip
        assert sum(s.value for s in per_camera if s.name == name) == sum(
            s.value for s in totals if s.name == name
        ), name
    names = {s.name for s in per_camera if "camera" in s.labels}
    assert names == {
        s.name for s in totals if s.name.startswith(("feedtag_camera_", "feedtag_events"))
    }
    assert len([s for s in totals if s.name.startswith("feedtag_camera_")]) < len(
        [s for s in per_camera if "camera" in s.labels]
    )
    # a token restricted to some cameras sees the totals of those only
    restricted = samples(snapshot, frozenset({"b"}), per_camera=False)
    depth = {
        s.labels["shard"]: s.value for s in restricted if s.name == "feedtag_camera_queue_depth"
    }
    assert depth == {SHARD_1: 3}


def test_totals_built_on_each_shard_read_as_totals_of_the_whole_snapshot() -> None:
    """What the shards build apart and the API merges is what one pass over every camera
    gives, and a scrape in totals asks the engine for no camera's status."""
    cameras = (
        seen("a", SHARD_0, frames=10, gated=5, latency_ms=40.0, queue=1),
        seen("b", SHARD_1, frames=12, gated=2, latency_ms=90.0, queue=3),
        seen("c", SHARD_1, frames=10, gated=8, latency_ms=30.0, queue=4),
        held_camera("held"),
    )
    snapshot = EngineSnapshot(1.0, cameras, None)
    whole = camera_totals(snapshot, sharded=True)
    merged = FixedControl(snapshot, SHARDS).camera_totals()
    assert [f.name for f in merged] == [f.name for f in whole]
    assert {
        (s.name, tuple(sorted(s.labels.items())), s.value) for f in merged for s in f.samples
    } == {(s.name, tuple(sorted(s.labels.items())), s.value) for f in whole for s in f.samples}
    asked: list[Collection[str] | None] = []
    control = FixedControl(snapshot, SHARDS)
    snapshot_of = control.snapshot

    def asking(camera_ids: Collection[str] | None = None) -> EngineSnapshot:
        asked.append(camera_ids)
        return snapshot_of(camera_ids)

    control.snapshot = asking  # type: ignore[method-assign]
    registry = engine_registry(control, EventBus(), None, False)  # type: ignore[arg-type]
    assert b"feedtag_camera_state" in generate_latest(registry)
    assert asked == [()], asked  # the node-wide figures only


def test_every_per_camera_series_has_the_shard_when_the_engine_is_sharded() -> None:
    snapshot = EngineSnapshot(1.0, (camera("a", SHARD_0), camera("held", None)), None)
    per_camera = [s for s in samples(snapshot) if "camera" in s.labels]
    names = {s.name for s in per_camera}
    assert {"feedtag_camera_state", "feedtag_camera_queue_depth", "feedtag_events_total"} <= names
    assert all(s.labels["shard"] == {"a": SHARD_0, "held": ""}[s.labels["camera"]]
               for s in per_camera), per_camera  # fmt: skip
    unsharded = EngineSnapshot(1.0, (camera("a", None),), None)
    assert not any("shard" in s.labels for s in samples(unsharded) if "camera" in s.labels)


def test_per_shard_series_in_the_full_view_only() -> None:
    snapshot = EngineSnapshot(1.0, (camera("a", SHARD_0),), None)
    found = {(s.name, s.labels.get("shard"), s.labels.get("state")): s.value
             for s in samples(snapshot) if s.name.startswith("feedtag_shard_")}  # fmt: skip
    assert found[("feedtag_shard_cameras", SHARD_1, None)] == 2
    assert found[("feedtag_shard_state", SHARD_1, "unreachable")] == 1
    assert found[("feedtag_shard_state", SHARD_1, "running")] == 0
    assert found[("feedtag_shard_cpu_percent", SHARD_0, None)] == 12.5
    assert found[("feedtag_shard_rss_bytes", SHARD_0, None)] == 64 * 2**20
    assert ("feedtag_shard_rss_bytes", SHARD_1, None) not in found  # no figures: no answer
    restricted = samples(snapshot, frozenset({"a"}))
    assert not any(s.name.startswith("feedtag_shard_") for s in restricted)


def test_cameras_held_offline_are_listed_with_the_reason_unless_a_shard_runs_them() -> None:
    running = EngineSnapshot(5.0, (camera("a", SHARD_0),), None)
    held = held_since({}, {"a": "crashed", "b": "its shard crashed 3 times"}, now=7.0)
    merged = with_offline(running, held)
    assert [c.camera_id for c in merged.cameras] == ["a", "b"]
    assert merged.camera("a") == running.camera("a")  # running again: as the shard says
    b = merged.camera("b")
    assert b is not None and (b.shard, b.node, b.vision) == (None, None, None)
    assert (b.ingest.state, b.ingest.reason, b.ingest.since) == (
        CameraState.OFFLINE, "its shard crashed 3 times", 7.0)  # fmt: skip
    later = held_since(held, {"b": "its shard crashed 3 times"}, now=9.0)
    assert later == {"b": ("its shard crashed 3 times", 7.0)}
    assert EngineSnapshot.from_dict(dataclasses.asdict(merged)) == merged


def test_a_shard_that_does_not_answer_is_listed_as_the_coordinator_last_saw_it() -> None:
    assignment = {"a": SHARD_0, "c": SHARD_1, "b": SHARD_1}
    health = {"pid": 12, "node": "node-2", "live": False, "dead": False}
    shard = silent_shard(SHARD_1, ShardState.UNREACHABLE, health, assignment)
    assert shard == ShardSnapshot(SHARD_1, "node-2", 12, ShardState.UNREACHABLE, ("b", "c"),
                                  None, None)  # fmt: skip
    gone = silent_shard(SHARD_1, ShardState.UNREACHABLE, {**health, "dead": True}, {})
    assert (gone.state, gone.cameras) == (ShardState.DEAD, ())
    unknown = silent_shard(SHARD_0, ShardState.RESTARTING, {}, assignment)
    assert (unknown.state, unknown.pid, unknown.cameras) == (ShardState.RESTARTING, None, ("a",))
