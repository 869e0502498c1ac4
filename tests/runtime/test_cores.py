"""Detector workers default to the cores this process may use; a Ray shard gets its share."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from feedtag.config import validate_config
from feedtag.config.models import DetectorConfig
from feedtag.runtime import cores, ray_engine
from feedtag.runtime.cores import available_cores, cgroup_cpu_quota, detector_workers
from feedtag.runtime.vision import VisionConsumer

from .test_vision import MovingBoxDetector

AFFINITY = len(os.sched_getaffinity(0))


def cgroup(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({}, None),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "250000 100000\n"}, 2.5),
        ({"cpu.max": "50000 100000\n"}, 0.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3.0),
        ({"cpu.max": "garbage\n"}, None),  # unreadable: no quota, and no error
    ],
)
def test_the_cgroup_cpu_quota_is_read_from_v2_or_v1(
    tmp_path: Path, files: dict[str, str], quota: float | None
) -> None:
    root = cgroup(tmp_path, files)
    assert cgroup_cpu_quota(root) == quota
    expected = AFFINITY if quota is None else min(AFFINITY, max(1, int(quota)))
    assert available_cores(root) == expected


def test_a_quota_below_the_affinity_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    root = cgroup(tmp_path, {"cpu.max": "400000 100000\n"})
    assert available_cores(root) == 4
    assert available_cores(cgroup(tmp_path / "none", {})) == 16


def test_the_default_is_one_worker_per_core_and_an_explicit_value_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert DetectorConfig().workers is None
    assert detector_workers(validate_config({}).detector) == available_cores()
    monkeypatch.setattr(cores, "available_cores", lambda: 6)
    assert detector_workers(validate_config({}).detector) == 6
    assert detector_workers(validate_config({"detector": {"threads": 2}}).detector) == 3
    assert detector_workers(validate_config({"detector": {"workers": 1}}).detector) == 1
    assert detector_workers(validate_config({"detector": {"workers": 9}}).detector) == 9


def test_the_vision_stage_runs_the_default_number_of_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cores, "available_cores", lambda: 3)
    consumer = VisionConsumer(MovingBoxDetector(), validate_config({}).detector, [])
    consumer.start()
    try:
        assert consumer.stage_status().detector_workers == 3
    finally:
        consumer.stop()


class _Recorder:
    """Stands in for a Ray actor class: records what ``.remote`` was given."""

    def __init__(self, calls: list[tuple[Any, ...]]) -> None:
        self.calls = calls

    def remote(self, *args: Any) -> object:
        self.calls.append(args)
        return object()


@pytest.mark.parametrize(
    ("detector", "shard_cpus", "gpus", "workers"),
    [
        ({}, 2.0, 0.0, 2),
        ({}, 0.5, 0.0, 1),
        ({"threads": 2}, 4.0, 0.0, 2),
        ({"workers": 3}, 1.0, 0.0, 3),
        ({}, 6.0, 0.25, 2),  # a share of a GPU: the GPU's two workers, not six
        ({"workers": 3}, 6.0, 0.25, 3),
    ],
)
def test_a_shard_runs_its_share_of_cores_not_the_machine(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    detector: dict[str, Any],
    shard_cpus: float,
    gpus: float,
    workers: int,
) -> None:
    monkeypatch.setattr(cores, "available_cores", lambda: 64)  # a big node under the shard
    shards: list[tuple[Any, ...]] = []
    asked: list[tuple[str, float, float]] = []
    coordinator: list[tuple[Any, ...]] = []

    def shard_class(name: str, cpus: float, shard_gpus: float) -> _Recorder:
        asked.append((name, cpus, shard_gpus))
        return _Recorder(shards)

    monkeypatch.setattr(ray_engine, "shard_actor_class", shard_class)
    monkeypatch.setattr(ray_engine, "coordinator_actor_class", lambda: _Recorder(coordinator))
    config = validate_config(
        {
            "detector": detector,
            "store": {"data_dir": str(tmp_path)},
            "engine": {"gpus_per_shard": gpus},
        }
    )
    control = ray_engine.RayEngineControl(config, database=None, shards=2, shard_cpus=shard_cpus)  # type: ignore[arg-type]
    control.start()
    assert len(shards) == 2
    assert all(call[1].detector.workers == workers for call in shards)
    assert {(cpus, shard_gpus) for _, cpus, shard_gpus in asked} == {(shard_cpus, gpus)}
    assert coordinator[0][0] is config  # the coordinator runs no detector


class GpuBoxDetector(MovingBoxDetector):
    """The fake detector, reporting ONNX Runtime providers as an OnnxDetector on a GPU does."""

    providers = ("CUDAExecutionProvider", "CPUExecutionProvider")


def test_on_a_gpu_two_workers_take_batches_of_32(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cores decode and the GPU detects: two workers and larger batches, unless set."""
    monkeypatch.setattr(cores, "available_cores", lambda: 16)
    for detector, workers, batch in ((GpuBoxDetector(), 2, 32), (MovingBoxDetector(), 16, 8)):
        consumer = VisionConsumer(detector, validate_config({}).detector, [])
        consumer.start()
        try:
            assert consumer.stage_status().detector_workers == workers
            assert consumer._scheduler.max_batch == batch
        finally:
            consumer.stop()
    chosen = validate_config({"detector": {"workers": 5, "max_batch": 4}}).detector
    consumer = VisionConsumer(GpuBoxDetector(), chosen, [])
    consumer.start()
    try:
        assert consumer.stage_status().detector_workers == 5
        assert consumer._scheduler.max_batch == 4
    finally:
        consumer.stop()
