"""A shard of the Ray engine: one node engine, in a Ray actor, running a set of cameras.

:class:`ShardWorker` is the shard itself and knows nothing of Ray: it builds a
:class:`~feedtag.runtime.node.NodeEngine` the way the composition root does (detector, store
writer with its outage spool over the shared PostgreSQL, media store on this machine) and
answers camera operations and snapshots as plain values. :func:`shard_actor_class` wraps it
in a Ray actor that Ray restarts when its process dies (``max_restarts``); a restarted shard
asks the coordinator for its cameras (:meth:`ShardWorker.adopt`), so a crash costs its
cameras a few seconds, never their place.

Frames never leave the shard's process: only snapshots (a few kB) and camera settings cross.

A shard may be given ``engine``, a :data:`ShardEngineFactory`, in place of its node engine:
the control-plane benchmark (``feedtag bench control-plane``) runs thousands of status-only
simulated cameras this way (:mod:`feedtag.bench.simulated`). Only Python code that builds
the shards can pass one (:class:`~feedtag.runtime.ray_engine.RayEngineControl`'s
``shard_engine``); no config key or command option reaches it, and ``runtime`` never imports
``bench``, so ``feedtag run`` always runs real cameras.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from prometheus_client.core import Metric
from sqlalchemy import Engine

from feedtag.alerts.routes import build_router
from feedtag.config.models import CameraConfig, FeedtagConfig
from feedtag.core import CameraState
from feedtag.errors import CameraNotFound
from feedtag.runtime.camera_metrics import camera_totals
from feedtag.runtime.control import EngineControl, EngineSnapshot
from feedtag.runtime.database import open_database
from feedtag.runtime.detection import build_detector
from feedtag.runtime.events import SPOOL_FOLDER, OpenStore, open_store
from feedtag.runtime.local import LocalEngineControl
from feedtag.runtime.node import NodeEngine

log = logging.getLogger(__name__)

#: Ray restarts a dead shard process this many times (-1: always); its cameras wait for it
SHARD_MAX_RESTARTS: Final = -1
#: a call that failed because the shard died is retried once it is back
SHARD_MAX_TASK_RETRIES: Final = 3
#: calls a shard serves at once (a slow snapshot must not hold a ping)
SHARD_MAX_CONCURRENCY: Final = 4
#: how long a shard's stop waits for its engine's threads
SHARD_STOP_DEADLINE_S: Final = 4.0

#: builds a shard's engine from its id and the config file's config, in place of the node
#: engine (a benchmark and test seam: see the module docstring)
ShardEngineFactory = Callable[[str, FeedtagConfig], EngineControl]


def shard_name(index: int) -> str:
    """The Ray actor name of shard ``index`` (the coordinator finds shards by it)."""
    return f"feedtag-shard-{index}"


class ShardWorker:
    """One node engine over the shared store; cameras come and go at run time.

    ``config`` is the config file's (the engine trusts only hosts it wrote); the cameras
    arrive through :meth:`add_camera` (resolved: as they run). ``engine`` replaces the node
    engine (the benchmark's simulated cameras); None, the default, runs real cameras.
    """

    def __init__(
        self,
        shard_id: str,
        config: FeedtagConfig,
        media_mark: str | None = None,
        engine: ShardEngineFactory | None = None,
    ) -> None:
        self.shard_id = shard_id
        self.config = config
        self.node_name = socket.gethostname()
        self.started_at = time.time()
        self._lock = threading.Lock()
        self._adopt_lock = threading.Lock()
        #: how many times each camera was started on this shard (restarts included)
        self.starts: dict[str, int] = {}
        self._database: Engine | None = None
        self._store: OpenStore | None = None
        self._control: EngineControl = (
            LocalEngineControl(self._build()) if engine is None else engine(shard_id, config)
        )
        #: whether this shard's media root is the one the API serves (None: not checked)
        self.media_shared = self._check_media(media_mark)
        self._control.start()

    def _build(self) -> NodeEngine:
        config = self.config
        if not config.detector.enabled:
            return NodeEngine(config, cameras=[])
        database = self._database = open_database(config.store)
        detector = build_detector(config.detector)
        alerting = bool(config.alerts.webhooks) or config.alerts.mqtt is not None
        router = build_router(config.alerts) if alerting else None
        # Shards on one machine share its data folder; each spools to a folder of its own
        # (a restarted shard, with the same id, replays what its predecessor spooled).
        spool = f"{SPOOL_FOLDER}-{self.shard_id}"
        self._store = open_store(config.store, database, router=router, spool_folder=spool)
        return NodeEngine.from_config(config, detector=detector, store=self._store, cameras=[])

    def _check_media(self, mark: str | None) -> bool | None:
        """Whether the media root holds the driver's ``mark``: snapshots and thumbnails this
        shard writes are served by the API only from storage every machine mounts at the same
        path. A shard that writes elsewhere still analyses and stores events; its images are
        not served, and it says so."""
        if mark is None or self._store is None:
            return None
        shared = self._store.media.has_mark(mark)
        if not shared:
            log.error(
                "shard %s on %s: the media root is not the one the API serves (no driver "
                "mark in it): snapshots and thumbnails written here will not be served; mount "
                "the same shared storage at store.data_dir on every machine (docs/cluster.md)",
                self.shard_id, self.node_name,
            )  # fmt: skip
        return shared

    def ping(self) -> dict[str, Any]:
        """Who answers: the shard, its process and machine, since when it runs, and whether
        its media root is the one the API serves."""
        return {
            "shard": self.shard_id, "pid": os.getpid(), "node": self.node_name,
            "started_at": self.started_at, "media_shared": self.media_shared,
        }  # fmt: skip

    def stats(self) -> dict[str, Any]:
        """This shard as a plain dict (rebuilt with ``ShardSnapshot.from_dict``): its
        process, machine, cameras, CPU (percent of one core) and resident memory."""
        (local,) = self._control.shards()
        shard = dataclasses.replace(local, shard_id=self.shard_id, node=self.node_name)
        return dataclasses.asdict(shard)

    def cameras(self) -> list[CameraConfig]:
        """The cameras this shard runs, as they run."""
        return self._control.cameras()

    def adopt(self, cameras: list[CameraConfig]) -> None:
        """Run exactly ``cameras``: start the new, change the changed, stop the rest;
        cameras whose settings are unchanged keep running untouched."""
        with self._adopt_lock:  # the coordinator and a restarted shard's recovery may race
            wanted = {camera.id: camera for camera in cameras}
            running = {camera.id: camera for camera in self.cameras()}
            for camera_id in running.keys() - wanted.keys():
                self.remove_camera(camera_id)
            for camera_id, camera in wanted.items():
                if camera_id not in running:
                    self.add_camera(camera)
                elif running[camera_id] != camera:
                    self.change_camera(camera)

    def add_camera(self, camera: CameraConfig) -> None:
        with self._lock:
            self._control.add_camera(camera)
            self.starts[camera.id] = self.starts.get(camera.id, 0) + 1
        log.info("shard %s: camera %s started", self.shard_id, camera.id)

    def change_camera(self, camera: CameraConfig) -> None:
        with self._lock:
            self._control.change_camera(camera)
            self.starts[camera.id] = self.starts.get(camera.id, 0) + 1

    def remove_camera(self, camera_id: str) -> None:
        with self._lock:
            try:
                self._control.remove_camera(camera_id)
            except CameraNotFound:
                return  # already gone: removing is idempotent across retries
        log.info("shard %s: camera %s stopped", self.shard_id, camera_id)

    def restart_camera(self, camera_id: str) -> None:
        with self._lock:
            self._control.restart_camera(camera_id)
            self.starts[camera_id] = self.starts.get(camera_id, 0) + 1

    def starts_of(self, camera_id: str) -> int:
        """How many times ``camera_id`` was started on this shard."""
        return self.starts.get(camera_id, 0)

    def want_thumbnail(self, camera_id: str) -> None:
        self._control.want_thumbnail(camera_id)

    def snapshot(self, camera_ids: tuple[str, ...] | None = None) -> EngineSnapshot:
        """The engine's snapshot (only ``camera_ids`` of its cameras when given), each
        camera marked with this shard and machine. Ray pickles the frozen value as it is:
        turning it into a dict here and back on the driver cost more than twice as much
        (2,500 cameras, both ends: 0.21 s against 0.08 s on a 2-vCPU machine)."""
        snapshot = self._control.snapshot(camera_ids)
        cameras = tuple(
            dataclasses.replace(camera, shard=self.shard_id, node=self.node_name)
            for camera in snapshot.cameras
        )
        return dataclasses.replace(snapshot, cameras=cameras)

    def camera_totals(
        self, camera_ids: tuple[str, ...] | None = None
    ) -> tuple[tuple[str, ...], list[Metric]]:
        """(the cameras counted, the per-camera families of ``/metrics`` in totals over
        them, labelled with this shard): a few hundred series whatever the cameras."""
        snapshot = self.snapshot(camera_ids)
        counted = tuple(camera.camera_id for camera in snapshot.cameras)
        return counted, camera_totals(snapshot, sharded=True)

    def states(self) -> dict[str, CameraState]:
        """The state of each of this shard's cameras: what a summary of states needs, about
        16 bytes a camera pickled against 170-230 for its snapshot (measured with the
        simulated cameras and bench/metrics_scrape.py's made-up ones)."""
        return self._control.states()

    def stop(self) -> bool:
        """Stop the engine, then write (or spool) what the store writer holds."""
        clean = self._control.stop(SHARD_STOP_DEADLINE_S)
        if self._store is not None:
            self._store.writer.close()
            self._store.retention.stop(1.0)
            self._store = None
        if self._database is not None:
            self._database.dispose()
            self._database = None
        return clean


class ShardActor(ShardWorker):
    """The Ray actor body: a shard that, when it starts (first time or after Ray restarted
    its process), asks the coordinator which cameras it runs."""

    def __init__(
        self,
        shard_id: str,
        config: FeedtagConfig,
        coordinator_name: str,
        media_mark: str | None = None,
        engine: ShardEngineFactory | None = None,
    ) -> None:
        super().__init__(shard_id, config, media_mark, engine)
        self._coordinator_name = coordinator_name
        threading.Thread(target=self._recover, name="shard-recover", daemon=True).start()

    def _recover(self) -> None:
        import ray  # noqa: PLC0415 - only inside a Ray actor

        try:
            coordinator = ray.get_actor(self._coordinator_name)
            cameras: list[CameraConfig] = ray.get(
                coordinator.cameras_for.remote(self.shard_id, os.getpid()), timeout=30
            )
        except Exception:  # noqa: BLE001 - any Ray failure: the coordinator's reconcile puts the cameras here anyway
            log.warning("shard %s: could not ask the coordinator for its cameras", self.shard_id)
            return
        self.adopt(cameras)


def shard_actor_options(name: str, num_cpus: float, num_gpus: float = 0.0) -> dict[str, Any]:
    """The Ray actor options of shard ``name``: its cores, its share of a GPU when it has one
    (Ray then places it on a machine with a GPU and sets ``CUDA_VISIBLE_DEVICES`` for it),
    and restarts.

    >>> shard_actor_options("s0", 2.0)["num_cpus"], "num_gpus" in shard_actor_options("s0", 2.0)
    (2.0, False)
    >>> shard_actor_options("s0", 2.0, 0.25)["num_gpus"]
    0.25
    """
    options: dict[str, Any] = {
        "name": name,
        "num_cpus": num_cpus,
        "max_restarts": SHARD_MAX_RESTARTS,
        "max_task_retries": SHARD_MAX_TASK_RETRIES,
        "max_concurrency": SHARD_MAX_CONCURRENCY,
    }
    if num_gpus > 0:
        options["num_gpus"] = num_gpus
    return options


def shard_actor_class(name: str, num_cpus: float, num_gpus: float = 0.0) -> Any:
    """:class:`ShardActor` as the Ray actor ``name`` (:func:`shard_actor_options`), restarted
    by Ray when its process dies; call ``.remote(shard_id, config, coordinator_name,
    media_mark, engine)`` on it (a restarted process gets the same arguments)."""
    import ray  # noqa: PLC0415 - the ray extra is needed only by the Ray engine

    return ray.remote(ShardActor).options(**shard_actor_options(name, num_cpus, num_gpus))
