"""Faults of the Ray engine on a real two-node Ray cluster (Ray's own ``cluster_utils``: a
head and a worker node, both on 127.0.0.1) and a real PostgreSQL: a PostgreSQL outage that
the shards spool through, a camera that crash-loops its shard, a camera whose shard is
killed mid-clip and still stores exactly the events of an undisturbed run, and the loss of
a node.

One cluster for the module: the head and the worker have one logical core each, so the two
shards (one core each) land one on each node. Ray's node health checks are tightened
(:data:`HEALTH_CHECKS`, documented in docs/cluster.md) so that a lost node is marked dead in
seconds. The crash seam is Ray's own ``worker_process_setup_hook``: in every worker process
of this module's job, a shard that starts a camera whose id begins with ``crash-`` kills its
own process (SIGKILL) a moment later, as a camera that crashes its decoder would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from feedtag.config.models import FeedtagConfig
from feedtag.core import CameraState
from feedtag.runtime.assignment import assign
from feedtag.runtime.database import open_database
from feedtag.store.pgcluster import PgCluster
from feedtag.store.schema import events

from ..conftest import wait_for
from .conftest import CROWD, analysed, counted, event_totals, ray_config, require_ray, stored

pytestmark = [pytest.mark.slow, pytest.mark.system, pytest.mark.timeout(400)]

#: Ray's node health checks in this module (the GCS checks each raylet): a killed raylet is
#: marked dead after about failure_threshold x period (5 s) instead of Ray's default 5 x 3 s,
#: a silent one after 5 checks of up to 2 s instead of up to 10 s each.
HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 2000,
    "health_check_failure_threshold": 5,
}
SHARDS = ["feedtag-shard-0", "feedtag-shard-1"]
#: the left half of the frame: people walking in and out of it make many events
LEFT = {"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
ENTER_EXIT = {"kind": "zone_enter_exit", "zone": "left", "labels": ["person"],
              "min_duration_s": 0}  # fmt: skip


def crash_seam() -> Callable[[], None]:
    """The hook Ray runs in every worker process of the module's job (a nested function, so
    that Ray pickles it by value): ``ShardWorker.add_camera`` of a camera whose id starts
    with ``crash-`` kills its process 0.5 s later; the coordinator's trials last 5 s."""

    def install() -> None:
        import os
        import signal
        import threading

        from feedtag.runtime import crashes, ray_shard

        crashes.TRIAL_S = 5.0  # type: ignore[misc]

        original = ray_shard.ShardWorker.add_camera

        def add_camera(self: Any, camera: Any) -> None:
            original(self, camera)
            if camera.id.startswith("crash-"):
                threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGKILL)).start()

        ray_shard.ShardWorker.add_camera = add_camera  # type: ignore[method-assign]

    return install


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head and a worker node on loopback, this process connected as the driver."""
    require_ray()
    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    from feedtag.runtime.ray_engine import LOOPBACK_ONLY_ENV, NAMESPACE

    assert not ray.is_initialized(), "another Ray is connected in this process"
    previous = os.environ.get(LOOPBACK_ONLY_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_ONLY_ENV] = "0"  # as init_ray: every node binds 127.0.0.1 only
    ray_constants.ENABLE_RAY_CLUSTER = False
    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1"}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={**node, "include_dashboard": False, "_system_config": HEALTH_CHECKS},
    )
    try:
        cluster.worker = cluster.add_node(**node)
        ray.init(
            address=cluster.address, namespace=NAMESPACE, configure_logging=False,
            runtime_env={"worker_process_setup_hook": crash_seam()},
        )  # fmt: skip
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if previous[0] is None:
            os.environ.pop(LOOPBACK_ONLY_ENV, None)
        else:
            os.environ[LOOPBACK_ONLY_ENV] = previous[0]
        ray_constants.ENABLE_RAY_CLUSTER = previous[1]


def faults_config(
    url: str, clip: Path, models_dir: Path, ids: list[str], *, loop: bool = False
) -> FeedtagConfig:
    """The cameras ``ids`` on ``clip``, played once unless ``loop``."""
    analytics = {"zones": [LEFT], "rules": [CROWD, ENTER_EXIT]}
    return ray_config(url, clip, models_dir, ids, analytics, loop=loop)


@contextlib.contextmanager
def running(config: FeedtagConfig) -> Iterator[tuple[Any, Engine]]:
    """The Ray engine over ``config`` with two shards; stopped, and its actor names freed,
    at the end."""
    import ray

    from feedtag.runtime.ray_engine import RayEngineControl

    database = open_database(config.store)
    control = RayEngineControl(config, database, shards=len(SHARDS))
    try:
        control.start()
        yield control, database
    finally:
        control.stop(8.0)
        database.dispose()
        wait_for(lambda: not any(_named(name) for name in SHARDS), 20, 0.2, "shards gone")
        assert ray.is_initialized()


def _named(name: str) -> bool:
    import ray

    try:
        ray.get_actor(name)
    except ValueError:
        return False
    return True


def finished(control: Any, camera_id: str) -> bool:
    """The camera read its file to the end."""
    camera = control.snapshot().camera(camera_id)
    return camera is not None and camera.ingest.reason == "end of file"


def ids_placed(prefixes: dict[str, str]) -> dict[str, str]:
    """One id per role (role -> id prefix) such that every role but the one named
    ``alone`` lands on one shard and ``alone`` on the other, by the engine's own
    rendezvous hashing over :data:`SHARDS`."""
    capacity = dict.fromkeys(SHARDS, 1.0)
    for number in range(1000):
        ids = {role: f"{prefix}{number}" for role, prefix in prefixes.items()}
        placed = assign(ids.values(), capacity)
        others = {placed[cid] for role, cid in ids.items() if role != "alone"}
        if len(others) == 1 and placed[ids["alone"]] not in others:
            return ids
    raise AssertionError("no ids found")  # pragma: no cover - about 1 number in 4 fits


def test_shards_spool_through_a_postgresql_outage(
    pg: PgCluster, cluster: Any, clip: Path, models_dir: Path
) -> None:
    """PostgreSQL stops for 5 s while every camera makes events: the shards spool them and
    store them when it is back, each exactly once."""
    url = pg.create_database("feedtag_ray_spool")
    ids = ["cam-a", "cam-b", "cam-c"]
    config = faults_config(url, clip, models_dir, ids)
    with running(config) as (control, database):
        for camera_id in ids:
            wait_for(lambda c=camera_id: analysed(control, c) > 0, 60, 0.5, f"{camera_id} runs")
        pg.stop()
        down_at = time.monotonic()
        try:
            wait_for(lambda: control.snapshot().store.spooled > 0, 10, 0.5, "a shard spools")
            time.sleep(max(0.0, 5.0 - (time.monotonic() - down_at)))
        finally:
            pg.start()
        up_at = time.monotonic()
        wait_for(lambda: all(finished(control, c) for c in ids), 40, 0.5, "clips played")
        wait_for(
            lambda: all(stored(database, c) == counted(control, c) for c in ids), 30, 0.5,
            "every event counted by the shards is stored",
        )  # fmt: skip
        figures = control.snapshot().store
        total, unique = event_totals(database)
        print(
            f"\noutage of {up_at - down_at:.1f} s: {figures.spooled} record(s) spooled, "
            f"{figures.replayed} replayed; {total} event(s) stored, {unique} distinct"
        )
        assert figures.spooled > 0 and figures.replayed >= figures.spooled
        assert figures.spool_records == 0 and figures.dropped == 0
        assert total == unique == sum(counted(control, c) for c in ids) > 0


def test_a_camera_that_crash_loops_its_shard_goes_offline(
    pg: PgCluster, cluster: Any, clip: Path, models_dir: Path
) -> None:
    """The crashing camera is put offline with the reason after the crash budget and runs
    on no shard. The camera started with it on its shard shares its first strikes, is held
    back with it, runs again after its trial; the camera on the other shard keeps running."""
    import ray

    from feedtag.runtime.crashes import CRASH_BUDGET

    roles = ids_placed({"alone": "cam-b", "crasher": "crash-", "mate": "cam-a"})
    crasher, mate, other = roles["crasher"], roles["mate"], roles["alone"]
    url = pg.create_database("feedtag_ray_crash")
    config = faults_config(url, clip, models_dir, [crasher, mate, other], loop=True)
    with running(config) as (control, _):
        started = time.monotonic()
        wait_for(lambda: analysed(control, other) > 0, 60, 0.5, f"{other} runs")
        coordinator = control.coordinator
        wait_for(lambda: crasher in ray.get(coordinator.status.remote())["offline"], 90, 0.5,
                 f"{crasher} put offline")  # fmt: skip
        offline_s = time.monotonic() - started
        wait_for(lambda: not ray.get(coordinator.status.remote())["held"], 30, 0.5,
                 "every held camera tried")  # fmt: skip
        status = ray.get(coordinator.status.remote())
        print(f"\n{crasher} put offline {offline_s:.1f} s after the start: "
              f"{status['offline'][crasher]}")  # fmt: skip
        # the budget spent with its mate, then one more crash on its trial
        assert f"crashed {CRASH_BUDGET + 1} times" in status["offline"][crasher]
        assert set(status["offline"]) == {crasher}
        wait_for(lambda: analysed(control, mate) > 0, 20, 0.5, f"{mate} runs after its trial")
        before = {c: analysed(control, c) for c in (mate, other)}
        time.sleep(4)  # a few reconcile rounds: the crasher stays on no shard
        assert crasher not in ray.get(coordinator.assignment.remote())
        # the API shows it offline with the reason, on no shard
        held = control.snapshot().camera(crasher)
        assert held is not None and held.shard is None, held
        assert held.ingest.state is CameraState.OFFLINE, held
        assert f"crashed {CRASH_BUDGET + 1} times" in held.ingest.reason, held
        # ... in a page of one camera and in the summary of states too
        page = control.snapshot([crasher, "no-such-camera"])
        assert [c.camera_id for c in page.cameras] == [crasher], page.cameras
        assert page.cameras[0].ingest.state is CameraState.OFFLINE
        states = control.states()
        assert states[crasher] is CameraState.OFFLINE and {mate, other} <= set(states), states
        assert all(analysed(control, c) > before[c] for c in (mate, other)), before
        # the camera on the other shard ran throughout: started once there
        shard = control.snapshot().camera(other).shard
        assert ray.get(control.shard(shard).starts_of.remote(other)) == 1


def stored_ids(database: Engine, camera_id: str) -> list[str]:
    with database.connect() as connection:
        rows = connection.execute(select(events.c.event_id).where(events.c.camera_id == camera_id))
        return sorted(row.event_id for row in rows)


def _settled(control: Any, database: Engine, ids: list[str], seen: dict[str, list[str]]) -> bool:
    """Every camera read its file to the end, and what is stored did not change since the
    last look (the shards' writers have written what they hold)."""
    if not all(finished(control, c) for c in ids) or control.snapshot().store.queued:
        return False
    now = {c: stored_ids(database, c) for c in ids}
    settled = now == seen
    seen.clear()
    seen.update(now)
    return settled


def test_a_camera_killed_mid_clip_stores_every_event_exactly_once(
    pg: PgCluster, cluster: Any, clip: Path, models_dir: Path
) -> None:
    """kill -9 of the shard of a file camera in the middle of its clip: it is analysed
    again within 20 s, replays the clip on the timeline it was given, and the event ids
    stored for it are exactly those of an undisturbed run of the same cameras on the same
    timeline (none twice, none lost)."""
    import ray

    roles = ids_placed({"alone": "victim-", "witness": "witness-"})
    victim, witness = roles["alone"], roles["witness"]
    ids = [victim, witness]
    config = faults_config(pg.create_database("feedtag_ray_once"), clip, models_dir, ids)
    with running(config) as (control, database):
        for camera_id in ids:
            wait_for(lambda c=camera_id: analysed(control, c) > 0, 60, 0.5, f"{camera_id} runs")
        origins = {c.id: c.origin for c in ray.get(control.coordinator.running.remote())}
        assert all(origins[c] is not None for c in ids), origins
        wait_for(lambda: stored(database, victim) > 0 and analysed(control, victim) >= 6, 20,
                 0.2, f"{victim} a third into its clip, with an event stored")  # fmt: skip
        shard = control.snapshot().camera(victim).shard
        pid = ray.get(control.shard(shard).ping.remote())["pid"]
        at_kill = analysed(control, victim)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: analysed(control, victim) > 0 and _pid_of(control, shard) != pid, 20,
                 0.5, f"{victim} analysed again")  # fmt: skip
        again_s = time.monotonic() - killed_at
        seen: dict[str, list[str]] = {}
        wait_for(lambda: _settled(control, database, ids, seen), 60, 1.0, "clips played, stored")
        disturbed = dict(seen)
        # a restart through the API plays the file again, on a new timeline
        control.restart_camera(witness)
        wait_for(lambda: _origin(control, witness) not in {None, origins[witness]}, 10, 0.2,
                 f"{witness} on a new timeline")  # fmt: skip
        wait_for(lambda: not finished(control, witness), 10, 0.2, f"{witness} plays again")
    print(f"\n{victim} killed after {at_kill} analysed frame(s), analysed again after "
          f"{again_s:.1f} s")  # fmt: skip

    # the same cameras on the same timelines, undisturbed (the clip is due already: each
    # catches up as fast as its shard analyses it)
    reference_config = faults_config(pg.create_database("feedtag_ray_ref"), clip, models_dir, ids)
    fixed = [c.model_copy(update={"origin": origins[c.id]}) for c in reference_config.cameras]
    reference_config = reference_config.model_copy(update={"cameras": fixed})
    with running(reference_config) as (control, database):
        seen = {}
        wait_for(lambda: _settled(control, database, ids, seen), 60, 1.0, "reference stored")
        reference = dict(seen)
    for camera_id in ids:
        print(f"{camera_id}: {len(disturbed[camera_id])} event(s) stored, "
              f"{len(reference[camera_id])} in the undisturbed run")  # fmt: skip
    assert reference[victim] and reference[witness]
    assert disturbed == reference


def _origin(control: Any, camera_id: str) -> float | None:
    import ray

    running = ray.get(control.coordinator.running.remote())
    return next((c.origin for c in running if c.id == camera_id), None)


def _pid_of(control: Any, shard: str) -> int | None:
    import ray

    try:
        return int(ray.get(control.shard(shard).ping.remote(), timeout=2)["pid"])
    except ray.exceptions.RayError:
        return None


def _actor_nodes() -> dict[str, str]:
    """Each live named actor's node id."""
    import ray

    return {
        actor["Name"]: actor["Address"]["NodeID"]
        for actor in ray._private.state.actors().values()
        if actor["Name"] and actor["State"] == "ALIVE"
    }


def _node_alive(node_id: str) -> bool:
    import ray

    return any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes())


def _runs_on(control: Any, camera_id: str, shards: set[str]) -> bool:
    camera = control.snapshot().camera(camera_id)
    return (
        camera is not None and camera.shard in shards and camera.ingest.counters.frames_analysed > 0
    )


def test_a_lost_nodes_cameras_move_to_the_live_shards(
    pg: PgCluster, cluster: Any, clip: Path, models_dir: Path
) -> None:
    """The worker node's raylet and processes are killed (no graceful drain, as when a
    machine is lost): its cameras run on the head's shard within 30 s of Ray marking the
    node dead. Last in the module: the cluster has one node afterwards."""
    import ray

    url = pg.create_database("feedtag_ray_node")
    ids = ["cam-a", "cam-b", "cam-c", "cam-d"]
    config = faults_config(url, clip, models_dir, ids)
    worker_id = cluster.worker.node_id
    with running(config) as (control, _):
        for camera_id in ids:
            wait_for(lambda c=camera_id: analysed(control, c) > 0, 60, 0.5, f"{camera_id} runs")
        nodes = _actor_nodes()
        assert {nodes[s] for s in SHARDS} == {worker_id, cluster.head_node.node_id}, nodes
        where = "worker" if nodes["feedtag-coordinator"] == worker_id else "head"
        lost = next(s for s in SHARDS if nodes[s] == worker_id)
        live = {s for s in SHARDS if s != lost}
        moving = [c.camera_id for c in control.snapshot().cameras if c.shard == lost]
        assert moving, "no camera on the worker node's shard"
        removed_at, removed_wall = time.monotonic(), time.time()
        cluster.remove_node(cluster.worker, allow_graceful=False)
        wait_for(lambda: not _node_alive(worker_id), 30, 0.2, "Ray marks the node dead")
        dead_at = time.monotonic()
        wait_for(lambda: all(_runs_on(control, c, live) for c in moving), 30, 0.5,
                 "the lost node's cameras run on the live shard")  # fmt: skip
        moved_at = time.monotonic()
        record = ray.get(control.coordinator.status.remote())["reassignments"][-1]
        assert lost in record["reason"] and record["moved"] == len(moving), record
        print(
            f"\nnode lost: Ray marked it dead {dead_at - removed_at:.1f} s after its raylet "
            f"was killed; its {len(moving)} camera(s) ran on the live shard "
            f"{moved_at - removed_at:.1f} s after the kill ({moved_at - dead_at:+.1f} s "
            f"from the mark; the coordinator moved them {record['at'] - removed_wall:.1f} s "
            f"after the kill); the coordinator ran on the {where} node"
        )
        assert all(_runs_on(control, c, live) for c in ids)
