"""The Ray engine on a real local Ray and a real PostgreSQL: shards, failover, cameras added
through the store, and a coordinator restart. One Ray instance for the module (2 s to start,
about 0.5 GB), cameras on short live-paced clips of real footage."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from feedtag.api.metrics import engine_registry
from feedtag.core import CameraState
from feedtag.runtime.bus import EventBus
from feedtag.runtime.catalog import CameraCatalog
from feedtag.runtime.control import ShardState
from feedtag.runtime.database import open_database
from feedtag.store.pgcluster import PgCluster

from ..conftest import REPO, wait_for
from .conftest import CROWD, analysed, counted, event_totals, ray_config, require_ray, stored

pytestmark = [pytest.mark.slow, pytest.mark.system, pytest.mark.timeout(400)]


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    require_ray()
    import ray

    from feedtag.runtime.ray_engine import init_ray

    init_ray(None, num_cpus=4)  # logical cores: the shards take 1 each, the coordinator 0
    yield
    ray.shutdown()


def ray_listeners() -> list[str]:
    """The addresses every process of this Ray session listens on."""
    import ray

    session = ray._private.worker._global_node.get_session_dir_path()
    me = psutil.Process()
    processes = [me, *me.children(recursive=True)]
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if session in " ".join(process.cmdline()) and process not in processes:
                processes.append(process)
    found = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            found += [c.laddr.ip for c in process.net_connections("inet") if c.status == "LISTEN"]
    return found


def _runs_anew(control: object, camera_id: str, old_pid: int) -> bool:
    """The camera runs, in a shard process other than ``old_pid``."""
    import ray

    camera = control.snapshot().camera(camera_id)  # type: ignore[attr-defined]
    if camera is None or camera.shard is None:
        return False
    shard = control.shard(camera.shard)  # type: ignore[attr-defined]
    return bool(ray.get(shard.ping.remote(), timeout=5)["pid"] != old_pid)


def _runs_elsewhere(control: object, camera_id: str, lost: str) -> bool:
    camera = control.snapshot().camera(camera_id)  # type: ignore[attr-defined]
    return camera is not None and camera.shard != lost and camera.ingest.counters.frames_decoded > 0


def _stored_as_counted(control: object, database: Engine, camera_id: str) -> bool:
    return stored(database, camera_id) == counted(control, camera_id)


def test_the_ray_engine_needs_postgresql(tmp_path: Path, vtest_clip: Path) -> None:
    config = tmp_path / "feedtag.yaml"
    config.write_text(
        f"media_root: {vtest_clip.parent}\ncameras: [{{id: a, url: {vtest_clip.name}}}]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "feedtag.cli", "run", str(config), "--engine", "ray"],
        check=False, capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "store.url" in result.stderr and "PostgreSQL" in result.stderr


def test_failover_additions_and_coordinator_restart(
    pg: PgCluster, ray_local: None, clip: Path, models_dir: Path
) -> None:
    import ray

    from feedtag.runtime.ray_engine import RayEngineControl

    listening = ray_listeners()
    assert listening and all(ip in {"127.0.0.1", "::ffff:127.0.0.1"} for ip in listening)
    url = pg.create_database("feedtag_ray")
    cameras = ["cam-a", "cam-b", "cam-c", "cam-d"]
    config = ray_config(url, clip, models_dir, cameras, {"rules": [CROWD]})
    database = open_database(config.store)
    control = RayEngineControl(config, database, shards=2)
    try:
        control.start()
        ids = [camera.id for camera in config.cameras]
        for camera_id in ids:
            wait_for(lambda c=camera_id: analysed(control, c) > 0, 60, 0.5, f"{camera_id} analysed")
        snapshot = control.snapshot()
        shards = {c.camera_id: c.shard for c in snapshot.cameras}
        assert set(shards.values()) == {"feedtag-shard-0", "feedtag-shard-1"}, shards
        assert all(c.node for c in snapshot.cameras)
        # a page of cameras: each shard sends only those it runs; the store figures stay whole
        page = control.snapshot(["cam-c", "cam-a", "no-such-camera"])
        assert sorted((c.camera_id, c.shard) for c in page.cameras) == [
            ("cam-a", shards["cam-a"]), ("cam-c", shards["cam-c"])
        ]  # fmt: skip
        assert page.store is not None and page.store.available
        assert control.snapshot(()).cameras == ()
        # a thumbnail of a camera of that page goes to the shard the page saw it on, without
        # asking the coordinator; of another camera, the coordinator says where
        asked: list[str] = []
        call = control._call

        def counting(method: str, *args: Any, **kwargs: Any) -> Any:
            asked.append(method)
            return call(method, *args, **kwargs)

        control._call = counting  # type: ignore[method-assign]
        control.want_thumbnail("cam-a")
        control.want_thumbnail("cam-b")
        control._call = call  # type: ignore[method-assign]
        assert asked == ["shard_of"]
        # every camera's state: gathered from the shards once for all callers in a second
        time.sleep(1.1)  # past any states gathered before
        gathered: list[str] = []
        from_shards = control._from_shards

        def gathering(method: str, *args: Any) -> list[Any]:
            gathered.append(method)
            return from_shards(method, *args)

        control._from_shards = gathering  # type: ignore[method-assign]
        first = control.states()
        assert control.states() == first and set(first) == set(ids)
        control._from_shards = from_shards  # type: ignore[method-assign]
        assert gathered == ["states"]
        states = control.states()
        assert set(states) == set(ids) and all(isinstance(s, CameraState) for s in states.values())
        # one view of the cluster: each shard's process and cameras; shards in the metrics
        listed = {shard.shard_id: shard for shard in control.shards()}
        assert set(listed) == set(shards.values())
        for shard_id, shard in listed.items():
            assert shard.state is ShardState.RUNNING and shard.rss_bytes and shard.node
            assert set(shard.cameras) == {c for c, s in shards.items() if s == shard_id}
        pids = {shard.pid for shard in listed.values()}
        assert len(pids) == 2 and os.getpid() not in pids and None not in pids
        text = generate_latest(engine_registry(control, EventBus())).decode()
        for camera_id, shard_id in shards.items():
            assert f'queue_depth{{camera="{camera_id}",shard="{shard_id}"}}' in text
            assert f'feedtag_shard_cameras{{shard="{shard_id}"}}' in text
        # in totals each shard combines its own cameras: the states sum to its cameras
        totals = generate_latest(engine_registry(control, EventBus(), None, False)).decode()
        in_state: Counter[str] = Counter()
        for family in text_string_to_metric_families(totals):
            assert not any("camera" in sample.labels for sample in family.samples), family
            if family.name == "feedtag_camera_state":
                for sample in family.samples:
                    in_state[sample.labels["shard"]] += sample.value
        assert in_state == Counter(shards.values()), (in_state, shards)

        # kill -9 one shard's process: every camera is analysed again within 20 s
        victim = shards["cam-a"]
        pid = ray.get(control.shard(victim).ping.remote())["pid"]
        moved = [c for c, s in shards.items() if s == victim]
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: all(analysed(control, c) > 0 and _runs_anew(control, c, pid)
                             for c in moved), 20, 0.5, "the victim's cameras analysed again")  # fmt: skip
        recovered_s = time.monotonic() - killed_at
        print(
            f"\nfailover: {len(moved)} camera(s) analysed again {recovered_s:.1f} s after kill -9"
        )
        status = ray.get(control.coordinator.status.remote())
        print(
            "coordinator:",
            status["reassignments"],
            {s: (h["pid"], h["cameras"]) for s, h in status["shards"].items()},
        )

        # a camera added through the catalog (as the API does) starts on a shard within 5 s
        catalog = CameraCatalog(config, database)
        extra = config.cameras[0].model_copy(update={"id": "cam-new"})
        catalog.put(extra)
        added_at = time.monotonic()
        wait_for(lambda: control.snapshot().camera("cam-new") is not None, 5, 0.2, "cam-new runs")
        print(f"added camera running after {time.monotonic() - added_at:.1f} s")

        # coordinator restart: healthy cameras keep running, none restarted
        keep = "cam-new"
        keeper = control.snapshot().camera(keep)
        assert keeper is not None and keeper.shard is not None
        starts = ray.get(control.shard(keeper.shard).starts_of.remote(keep))
        before = analysed(control, keep)
        coordinator_pid = ray.get(control.coordinator.ping.remote())["pid"]
        os.kill(coordinator_pid, signal.SIGKILL)
        wait_for(lambda: _answers(control, coordinator_pid), 30, 0.5, "coordinator back")
        time.sleep(3)  # a few reconcile rounds
        assert analysed(control, keep) > before
        assert ray.get(control.shard(keeper.shard).starts_of.remote(keep)) == starts
        assert ray.get(control.coordinator.assignment.remote()).get(keep) == keeper.shard

        # every event the surviving shard made is stored exactly once
        survivor = next(s for s in set(shards.values()) if s != victim)
        kept = [c for c, s in shards.items() if s == survivor]
        wait_for(lambda: all(_stored_as_counted(control, database, c) for c in kept), 15, 0.5,
                 "stored events equal the shard's counts")  # fmt: skip
        total, unique = event_totals(database)
        assert total == unique and total > 0

        # a shard Ray reports dead for good: its cameras move to the live shard
        lost = keeper.shard
        ray.kill(control.shard(lost), no_restart=True)
        lost_at = time.monotonic()
        wait_for(lambda: all(_runs_elsewhere(control, c.id, lost) for c in config.cameras), 20,
                 0.5, "every camera on the live shard")  # fmt: skip
        print(
            f"shard lost for good: its cameras run again after {time.monotonic() - lost_at:.1f} s"
        )
        moved_records = ray.get(control.coordinator.status.remote())["reassignments"]
        assert moved_records and moved_records[-1]["moved"] >= 1, moved_records
        assert lost in moved_records[-1]["reason"]
        assert {s.shard_id: s.state for s in control.shards()}[lost] is ShardState.DEAD
    finally:
        assert control.stop(8.0)
        database.dispose()


def _answers(control: object, old_pid: int) -> bool:
    import ray

    try:
        info = ray.get(control.coordinator.ping.remote(), timeout=2)  # type: ignore[attr-defined]
    except ray.exceptions.RayError:
        return False
    return bool(info["pid"] != old_pid and info["ready"])
