"""How many cores this process may use, and so how many detector workers run by default.

``os.cpu_count()`` counts the machine's cores; a process pinned to fewer (``taskset``, a
cpuset) or given a CPU quota (a container's ``--cpus``, a Kubernetes CPU limit) may use
fewer. One detector worker with one inference thread keeps one core busy, so
``detector.workers`` unset means one worker per core this process may use, divided by the
threads each inference call takes (``detector.threads``). On a GPU the cores decode and the
GPU detects: two workers keep it busy (one batch runs while the next is prepared), with
batches of up to 32 frames instead of 8.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Final

from feedtag.config.models import DetectorConfig, FeedtagConfig

log = logging.getLogger(__name__)

#: where the CPU quota of this process's cgroup is read: cgroup v2, then v1
CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
#: the most workers the default gives (the bound of ``detector.workers``)
WORKERS_LIMIT: Final = 64
#: workers on a GPU: one batch on the GPU while the other's frames are letterboxed and its
#: results decoded
GPU_WORKERS: Final = 2
#: frames per inference call by default: a CPU gains nothing from more (docs/performance.md),
#: a GPU does its work per call, so larger batches serve more frames per second
CPU_MAX_BATCH: Final = 8
GPU_MAX_BATCH: Final = 32


def available_cores(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The cores this process may use: those it may run on (its CPU affinity), fewer when
    its cgroup has a CPU quota (rounded down, at least 1)."""
    cores = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return cores


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup in cores (``2.5`` for 250 ms per 100 ms), or
    ``None`` when there is none or it cannot be read. cgroup v2 ``cpu.max`` ("max 100000"
    or "250000 100000"), else v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1: none);
    the files of the cgroup namespace's root, which is the container's own cgroup."""
    try:
        v2 = cgroup_root / "cpu.max"
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1 = cgroup_root / "cpu"
        if (v1 / "cpu.cfs_quota_us").is_file():
            quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
            period_us = int((v1 / "cpu.cfs_period_us").read_text())
            return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    except (OSError, ValueError) as error:
        log.debug("no CPU quota read from %s: %s", cgroup_root, error)
    return None


def detector_workers(
    settings: DetectorConfig, cores: float | None = None, *, gpu: bool = False
) -> int:
    """``detector.workers`` when set; otherwise one per ``cores`` (default: the cores this
    process may use, :func:`available_cores`) for each ``detector.threads``, at least 1; on a
    GPU (``gpu``), :data:`GPU_WORKERS`.

    >>> detector_workers(DetectorConfig(workers=3), cores=16)
    3
    >>> detector_workers(DetectorConfig(), cores=8)
    8
    >>> detector_workers(DetectorConfig(threads=2), cores=8)
    4
    >>> detector_workers(DetectorConfig(), cores=0.5)  # a shard of half a core
    1
    >>> detector_workers(DetectorConfig(), cores=16, gpu=True)
    2
    """
    if settings.workers is not None:
        return settings.workers
    if gpu:
        return GPU_WORKERS
    if cores is None:
        cores = available_cores()
    return max(1, min(WORKERS_LIMIT, math.floor(cores) // settings.threads))


def detector_batch(settings: DetectorConfig, *, gpu: bool = False) -> int:
    """``detector.max_batch`` when set; otherwise :data:`CPU_MAX_BATCH`, or
    :data:`GPU_MAX_BATCH` on a GPU.

    >>> detector_batch(DetectorConfig()), detector_batch(DetectorConfig(), gpu=True)
    (8, 32)
    >>> detector_batch(DetectorConfig(max_batch=4), gpu=True)
    4
    """
    if settings.max_batch is not None:
        return settings.max_batch
    return GPU_MAX_BATCH if gpu else CPU_MAX_BATCH


def shard_config(
    config: FeedtagConfig, shard_cpus: float, shard_gpus: float = 0.0
) -> FeedtagConfig:
    """The config a Ray shard of ``shard_cpus`` cores runs its node engine with: unset
    ``detector.workers`` becomes the shard's share of cores, not every core of the machine
    it lands on (Ray reserves cores for an actor but does not pin it to them), or, for a
    shard with a share of a GPU (``shard_gpus``), the GPU's :data:`GPU_WORKERS`. A set value
    stays.

    >>> from feedtag.config import validate_config
    >>> shard_config(validate_config({}), 2.0).detector.workers
    2
    >>> shard_config(validate_config({"detector": {"workers": 5}}), 2.0).detector.workers
    5
    >>> shard_config(validate_config({}), 6.0, shard_gpus=0.5).detector.workers
    2
    """
    if config.detector.workers is not None:
        return config
    workers = detector_workers(config.detector, cores=shard_cpus, gpu=shard_gpus > 0)
    detector = config.detector.model_copy(update={"workers": workers})
    return config.model_copy(update={"detector": detector})
