"""Ray shards with a share of a GPU (``engine.gpus_per_shard``): the shard count the cluster's
GPUs allow, a clear error where it has none, and the GPU's detector defaults in each shard.

The cluster is played by fakes behind :mod:`feedtag.runtime.ray_engine`'s functions (no GPU
here, and a Ray cluster that declares GPUs it does not have proves no more than the fakes);
the actor options Ray gets are :func:`~feedtag.runtime.ray_shard.shard_actor_options`'s."""

from __future__ import annotations

from typing import Any

import pytest

from feedtag.config import validate_config
from feedtag.errors import ConfigError
from feedtag.runtime import ray_engine
from feedtag.runtime.app import NodeApp, RayOptions
from feedtag.runtime.ray_shard import shard_actor_options


class Started:
    """Stands in for RayEngineControl: records what the app asked for."""

    def __init__(self, config: Any, database: Any, **kwargs: Any) -> None:
        self.kwargs = kwargs


def ray_app(monkeypatch: pytest.MonkeyPatch, gpus: float, **engine: Any) -> NodeApp:
    monkeypatch.setattr(ray_engine, "init_ray", lambda address: False)
    monkeypatch.setattr(ray_engine, "cluster_cpus", lambda: 64.0)
    monkeypatch.setattr(ray_engine, "cluster_gpus", lambda: gpus)
    monkeypatch.setattr(ray_engine, "RayEngineControl", Started)
    config = validate_config(
        {"store": {"url": "postgresql://feedtag@127.0.0.1/feedtag"}, "engine": engine}
    )
    return NodeApp(config, ray=RayOptions())


def test_the_clusters_gpus_bound_the_shard_count(monkeypatch: pytest.MonkeyPatch) -> None:
    app = ray_app(monkeypatch, gpus=2.0, cores_per_shard=4, gpus_per_shard=0.25)
    started = app._ray_engine(RayOptions(), database=None)  # type: ignore[arg-type]
    assert isinstance(started, Started)
    assert started.kwargs["shards"] == 8  # 16 by cores, 8 by GPUs
    cpu_only = ray_app(monkeypatch, gpus=2.0, cores_per_shard=4)
    assert cpu_only._ray_engine(RayOptions(), None).kwargs["shards"] == 16  # type: ignore[arg-type,attr-defined]


def test_gpus_per_shard_on_a_cluster_without_gpus_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = ray_app(monkeypatch, gpus=0.0, gpus_per_shard=0.5)
    with pytest.raises(ConfigError, match=r"engine.gpus_per_shard: 0.5 GPU per shard, but the Ray"):
        app._ray_engine(RayOptions(), database=None)  # type: ignore[arg-type]


def test_a_gpu_shard_asks_ray_for_its_share_of_a_gpu() -> None:
    """What reaches Ray; the workers each shard runs are in test_cores.py."""
    assert shard_actor_options("feedtag-shard-0", 4.0, 0.25)["num_gpus"] == 0.25
    assert "num_gpus" not in shard_actor_options("feedtag-shard-0", 4.0)
