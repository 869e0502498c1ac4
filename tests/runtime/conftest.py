"""What the Ray engine tests share (``test_ray_engine.py``, ``test_ray_faults.py``,
``test_ray_run.py``): a throwaway PostgreSQL per module, a 16 s clip of real footage, the
config of cameras on it, and readers of what the engine analysed and stored.

Each module starts its own Ray (a local one, or a two-node cluster): they differ in shape,
and only one Ray can be connected in a process at a time."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from feedtag.bench.footage import encode_h264, vtest_path
from feedtag.config import validate_config
from feedtag.config.models import CameraConfig, FeedtagConfig
from feedtag.runtime import catalog as catalog_module
from feedtag.store.pgcluster import PgCluster
from feedtag.store.schema import events

from ..conftest import require_service
from ..store.conftest import started_cluster

RAY_INSTALLED = importlib.util.find_spec("ray") is not None
CROWD = {"kind": "crowding", "min_count": 2, "min_duration_s": 1, "grace_s": 2}


def require_ray() -> None:
    """Skip without Ray locally, fail under CI=true."""
    require_service(RAY_INSTALLED, "ray is not installed (pip install 'feedtag[ray]')")


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    """A PostgreSQL cluster for the module, the store every shard writes to."""
    yield from started_cluster()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 s of vtest.avi, 320x180, played at its own pace: long enough to kill a shard in
    the middle of it."""
    folder = tmp_path_factory.mktemp("ray-media")
    return encode_h264(vtest_path(), folder / "vtest_16s.mp4", width=320, height=180,
                       max_seconds=16)  # fmt: skip


def ray_config(
    url: str,
    clip: Path,
    models_dir: Path,
    ids: list[str],
    analytics: dict[str, Any],
    **camera: Any,
) -> FeedtagConfig:
    """A config of cameras ``ids`` on ``clip`` with ``analytics`` (and the ``camera``
    fields given), stored in the PostgreSQL database at ``url``."""
    cameras = [{"id": cid, "url": clip.name, "analytics": analytics, **camera} for cid in ids]
    return validate_config({
        "media_root": str(clip.parent), "store": {"url": url},
        "detector": {"models_dir": str(models_dir)}, "cameras": cameras,
    })  # fmt: skip


def analysed(control: Any, camera_id: str) -> int:
    """Frames the camera's shard analysed so far (0 while it runs nowhere)."""
    camera = control.snapshot().camera(camera_id)
    return 0 if camera is None else int(camera.ingest.counters.frames_analysed)


def stored(database: Engine, camera_id: str) -> int:
    """Events stored for the camera."""
    with database.connect() as connection:
        return int(
            connection.execute(
                select(func.count()).select_from(events).where(events.c.camera_id == camera_id)
            ).scalar_one()
        )


def counted(control: Any, camera_id: str) -> int:
    """Events the camera's shard counted (-1 while it runs nowhere)."""
    camera = control.snapshot().camera(camera_id)
    return -1 if camera is None else sum(camera.event_counts.values())


def event_totals(database: Engine) -> tuple[int, int]:
    """(stored events, distinct event ids): equal when none is stored twice."""
    with database.connect() as connection:
        total = connection.execute(select(func.count()).select_from(events)).scalar_one()
        unique = connection.execute(select(func.count(events.c.event_id.distinct()))).scalar_one()
    return int(total), int(unique)


@pytest.fixture
def validated(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the stored cameras validated (``catalog._held``, the costly step of a
    merge), in order, from now on."""
    calls: list[str] = []
    held = catalog_module._held

    def counting(settings: dict[str, Any], *args: Any) -> CameraConfig:
        calls.append(settings["id"])
        return held(settings, *args)

    monkeypatch.setattr(catalog_module, "_held", counting)
    return calls
