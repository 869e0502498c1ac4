"""The KubeRay manifests (``deploy/kuberay/feedtag.yaml``, and ``feedtag-gpu.yaml`` with its shards
on GPUs), checked without a Kubernetes cluster:

- every Kubernetes object (ConfigMap, PersistentVolumeClaim, Service, and the pod templates
  inside the RayCluster) is walked against the official Kubernetes Python client's models, so
  a misspelt or misplaced field fails;
- the RayCluster's own fields are checked against KubeRay's ``ray.io/v1`` ``RayClusterSpec``
  (``HeadGroupSpec``, ``WorkerGroupSpec``), restated below as strict models: KubeRay publishes
  its CRD only in its Go module, which no package registry here serves;
- Ray's autoscaler reads it as KubeRay's operator hands it over (the resources it derives);
- the GPU manifest's shards fit its GPUs, which the worker pods ask Kubernetes for;
- the feedtag config inside is valid, runs the ray engine on PostgreSQL, and every pod mounts
  the one shared volume at ``store.data_dir`` (where shards write media the API serves).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes.client as kubernetes_client
import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from feedtag.config.loading import load_config

from ..conftest import REPO

MANIFEST = REPO / "deploy" / "kuberay" / "feedtag.yaml"
GPU_MANIFEST = MANIFEST.with_name("feedtag-gpu.yaml")
#: each manifest with its worker group
MANIFESTS = pytest.mark.parametrize(
    ("manifest", "group"), [(MANIFEST, "shards"), (GPU_MANIFEST, "gpu-shards")], ids=["cpu", "gpu"]
)
#: types the Kubernetes client's models name that are plain JSON values
_SCALARS = {"str": str, "int": int, "bool": bool, "float": float, "object": object,
            "datetime": str, "date": str}  # fmt: skip


def _documents(manifest: Path = MANIFEST) -> dict[str, dict[str, Any]]:
    documents = [d for d in yaml.safe_load_all(manifest.read_text()) if d is not None]
    by_kind = {document["kind"]: document for document in documents}
    assert len(by_kind) == len(documents), "one object of each kind"
    return by_kind


def check_kubernetes(value: Any, model: str, where: str) -> None:
    """``value`` fits the Kubernetes client's model ``model`` (e.g. ``V1PodTemplateSpec``):
    every key is one of the model's fields, recursively; scalars have the model's type."""
    listed = re.fullmatch(r"List\[(.+)\]", model)
    mapped = re.fullmatch(r"Dict\[str, (.+)\]", model)
    if listed:
        assert isinstance(value, list), f"{where}: expected a list"
        for index, item in enumerate(value):
            check_kubernetes(item, listed.group(1), f"{where}[{index}]")
        return
    if mapped:
        assert isinstance(value, dict), f"{where}: expected a mapping"
        for key, item in value.items():
            check_kubernetes(item, mapped.group(1), f"{where}.{key}")
        return
    if model in _SCALARS:
        assert isinstance(value, _SCALARS[model]), f"{where}: expected {model}, got {value!r}"
        return
    cls = getattr(kubernetes_client, model)
    assert isinstance(value, dict), f"{where}: expected a {model} mapping"
    fields = {json: name for name, json in cls.attribute_map.items()}
    for key, item in value.items():
        assert key in fields, f"{where}: {key!r} is not a field of {model}"
        check_kubernetes(item, cls.openapi_types[fields[key]], f"{where}.{key}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class HeadGroupSpec(_Strict):
    """KubeRay v1 ``HeadGroupSpec``."""

    serviceType: str | None = None
    headService: dict[str, Any] | None = None
    enableIngress: bool | None = None
    rayStartParams: dict[str, str]  # KubeRay takes strings only: "8", not 8
    template: dict[str, Any]


class WorkerGroupSpec(_Strict):
    """KubeRay v1 ``WorkerGroupSpec``."""

    groupName: str
    replicas: int | None = Field(default=None, ge=0)
    minReplicas: int = Field(ge=0)
    maxReplicas: int = Field(ge=0)
    numOfHosts: int | None = None
    rayStartParams: dict[str, str]
    template: dict[str, Any]
    scaleStrategy: dict[str, list[str]] | None = None


class RayClusterSpec(_Strict):
    """KubeRay v1 ``RayClusterSpec``."""

    headGroupSpec: HeadGroupSpec
    workerGroupSpecs: list[WorkerGroupSpec] = []
    rayVersion: str | None = None
    enableInTreeAutoscaling: bool | None = None
    autoscalerOptions: dict[str, Any] | None = None
    headServiceAnnotations: dict[str, str] | None = None
    suspend: bool | None = None


@MANIFESTS
def test_the_kubernetes_objects_fit_the_kubernetes_api(manifest: Path, group: str) -> None:
    documents = _documents(manifest)
    assert set(documents) == {"ConfigMap", "PersistentVolumeClaim", "RayCluster", "Service"}
    for kind, model in (("ConfigMap", "V1ConfigMap"), ("Service", "V1Service"),
                        ("PersistentVolumeClaim", "V1PersistentVolumeClaim")):  # fmt: skip
        document = documents[kind]
        assert document["apiVersion"] == "v1"
        check_kubernetes(document, model, kind)
    cluster = documents["RayCluster"]
    check_kubernetes(cluster["metadata"], "V1ObjectMeta", "RayCluster.metadata")
    spec = RayClusterSpec.model_validate(cluster["spec"])
    assert [g.groupName for g in spec.workerGroupSpecs] == [group]
    for where, pods in [("head", spec.headGroupSpec), *(
            (g.groupName, g) for g in spec.workerGroupSpecs)]:  # fmt: skip
        check_kubernetes(pods.template, "V1PodTemplateSpec", f"{where}.template")
    assert documents["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]


def test_the_checks_catch_a_wrong_field() -> None:
    """The walk above fails on what kubectl would refuse (it can fail)."""
    template = _documents()["RayCluster"]["spec"]["headGroupSpec"]["template"]
    template["spec"]["containers"][0]["volumeMount"] = []  # the field is volumeMounts
    with pytest.raises(AssertionError, match="volumeMount"):
        check_kubernetes(template, "V1PodTemplateSpec", "head.template")
    spec = _documents()["RayCluster"]["spec"]
    spec["workerGroupSpecs"][0]["rayStartParams"]["num-cpus"] = 8  # not a string
    with pytest.raises(ValueError, match="rayStartParams"):
        RayClusterSpec.model_validate(spec)


def _autoscaler_node_types(cluster: dict[str, Any]) -> dict[str, Any]:
    from ray.autoscaler._private.kuberay.autoscaling_config import (
        _derive_autoscaling_config_from_ray_cr,
    )

    cluster["metadata"]["namespace"] = "default"  # set by the API server on `kubectl apply`
    types: dict[str, Any] = _derive_autoscaling_config_from_ray_cr(cluster)["available_node_types"]
    return types


@MANIFESTS
def test_rays_autoscaler_reads_the_cluster(manifest: Path, group: str) -> None:
    types = _autoscaler_node_types(_documents(manifest)["RayCluster"])
    assert types["headgroup"]["resources"]["CPU"] == 0  # no shard on the head
    assert types["headgroup"]["resources"].get("GPU", 0) == 0
    assert types[group]["resources"]["CPU"] == 8
    assert types[group]["resources"].get("GPU", 0) == (1 if manifest == GPU_MANIFEST else 0)
    assert types[group]["min_workers"] == 1 and types[group]["max_workers"] == 16


def test_the_gpu_manifests_shards_fit_its_gpus(tmp_path: Path) -> None:
    """Each worker pod asks Kubernetes for the GPU Ray is told it has, and the shards' GPU
    shares fit the workers' GPUs (a shard Ray cannot place would wait for ever)."""
    documents = _documents(GPU_MANIFEST)
    path = tmp_path / "feedtag.yaml"
    path.write_text(documents["ConfigMap"]["data"]["feedtag.yaml"])
    environ = {"FEEDTAG_STORE_URL": "postgresql://feedtag@db/feedtag",
               "FEEDTAG_ADMIN_TOKEN": "t" * 43}  # fmt: skip
    config = load_config(path, environ)
    assert config.engine.gpus_per_shard > 0
    cluster = documents["RayCluster"]
    workers = cluster["spec"]["workerGroupSpecs"][0]
    gpus = int(workers["rayStartParams"]["num-gpus"])
    (container,) = workers["template"]["spec"]["containers"]
    for kind in ("requests", "limits"):
        assert int(container["resources"][kind]["nvidia.com/gpu"]) == gpus, kind
    driver = next(c for c in _containers(cluster) if c["name"] == "feedtag")
    shards = int(driver["command"][driver["command"].index("--shards") + 1])
    assert shards * config.engine.gpus_per_shard <= int(workers["replicas"]) * gpus
    # the CPU manifest's shards need no GPU
    cpu = _documents()["ConfigMap"]["data"]["feedtag.yaml"]
    assert "gpus_per_shard" not in cpu


def _containers(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    spec = cluster["spec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [c for group in groups for c in group["template"]["spec"]["containers"]]


@MANIFESTS
def test_the_feedtag_config_inside_runs_the_ray_engine_on_shared_storage(
    tmp_path: Path, manifest: Path, group: str
) -> None:
    documents = _documents(manifest)
    path = tmp_path / "feedtag.yaml"  # where the pod mounts it, as feedtag reads it
    path.write_text(documents["ConfigMap"]["data"]["feedtag.yaml"])
    environ = {"FEEDTAG_STORE_URL": "postgresql://feedtag@db/feedtag",
               "FEEDTAG_ADMIN_TOKEN": "t" * 43}  # fmt: skip
    config = load_config(path, environ)
    assert config.store.resolved_url().startswith("postgresql://")
    data_dir = str(config.store.resolved_data_dir())
    cluster = documents["RayCluster"]
    containers = _containers(cluster)
    driver = next(c for c in containers if c["name"] == "feedtag")
    command = driver["command"]
    assert command[:3] == ["feedtag", "run", "/etc/feedtag/feedtag.yaml"]
    assert command[command.index("--engine") + 1] == "ray"
    shards = int(command[command.index("--shards") + 1])
    shard_cpus = float(command[command.index("--shard-cpus") + 1])
    workers = cluster["spec"]["workerGroupSpecs"][0]
    cores = int(workers["replicas"]) * int(workers["rayStartParams"]["num-cpus"])
    assert shards * shard_cpus <= cores, "every shard finds its cores"
    # every Ray container (where shards may run) and the driver (the API) mount the shared
    # volume at store.data_dir
    for container in containers:
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        assert mounts.get(data_dir) == "data", container["name"]
    volumes = [cluster["spec"]["headGroupSpec"]["template"]["spec"]["volumes"],
               workers["template"]["spec"]["volumes"]]  # fmt: skip
    claim = documents["PersistentVolumeClaim"]["metadata"]["name"]
    for listed in volumes:
        data = next(v for v in listed if v["name"] == "data")
        assert data["persistentVolumeClaim"]["claimName"] == claim
    probe = driver["readinessProbe"]["httpGet"]
    assert probe["path"] == "/health" and config.api.port == 8080


def test_the_manifests_are_where_the_docs_say() -> None:
    docs = (REPO / "docs" / "cluster.md").read_text()
    assert "deploy/kuberay/feedtag.yaml" in docs
    assert "deploy/kuberay/feedtag-gpu.yaml" in docs
