"""The Ray engine's control: :class:`~feedtag.runtime.control.EngineControl` over shard
actors and their coordinator, so the API and the CLI work unchanged.

Camera changes go through the store: the API stores them in the catalog first
(``camera_records``), then calls this control, which asks the coordinator to reconcile at
once (:meth:`Coordinator.reconcile_now`); the coordinator reads the store and starts, changes
or stops the camera on its shard. The snapshot merges every shard's snapshot, each camera
marked with its shard and machine, with the cameras the coordinator holds offline (they
crashed their shards too often) added as offline with the reason.
:meth:`RayEngineControl.shards` asks every shard actor for its process, cameras, CPU and
memory; a shard that does not answer in time is listed as unreachable (or restarting, or
dead, as Ray reports it). The live event feed polls the store for events by time
(:data:`FEED_POLL_S`): shards do not push events to the driver.

``ray`` is imported only here and in the shard and coordinator modules (the ``ray`` extra).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Collection
from typing import Any, Final

from prometheus_client.core import Metric
from sqlalchemy import Engine

from feedtag.config.models import CameraConfig, FeedtagConfig
from feedtag.core import CameraState, VisionStageStatus
from feedtag.errors import CameraExists, CameraNotFound, StoreError
from feedtag.runtime.camera_metrics import camera_totals, merge_families
from feedtag.runtime.control import (
    DEFAULT_STOP_DEADLINE_S,
    CameraSnapshot,
    EngineSnapshot,
    EventListener,
    ShardSnapshot,
    ShardState,
    chosen,
    held_offline,
)
from feedtag.runtime.cores import shard_config
from feedtag.runtime.events import MEDIA_FOLDER
from feedtag.runtime.ray_coordinator import COORDINATOR_NAME, coordinator_actor_class
from feedtag.runtime.ray_shard import ShardEngineFactory, shard_actor_class, shard_name
from feedtag.store.feed import Phase, Position, missed_since
from feedtag.store.media import MediaStore
from feedtag.store.writer import WriterStats

log = logging.getLogger(__name__)

#: the Ray namespace every feedtag actor lives in
NAMESPACE: Final = "feedtag"
#: a shard's snapshot (and its figures) waits at most this long; a shard that does not
#: answer is left out of the snapshot (and listed as unreachable by ``shards()``)
SNAPSHOT_TIMEOUT_S: Final = 3.0
#: how much longer than the shards the coordinator's status may take to be part of an answer
COORDINATOR_GRACE_S: Final = 0.2
#: how often the live event feed reads new events from the store
FEED_POLL_S: Final = 1.0
#: how far each poll of the live feed looks back (shards' clocks and commits interleave)
FEED_LOOKBACK_S: Final = 5.0
#: the most events and ends one poll hands on
FEED_LIMIT: Final = 5000
#: Ray's switch between single-machine (loopback) and cluster networking
LOOPBACK_ONLY_ENV: Final = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: how long a camera change waits for the coordinator to apply it
APPLY_TIMEOUT_S: Final = 10.0
#: how long the shard a page of cameras was last seen on stands in for the coordinator's
#: word when a thumbnail of one of them is asked for (a dashboard asks for each shown
#: camera's thumbnail every 5 s, and its grid for the page's status every 3 s)
PLACED_TTL_S: Final = 10.0
#: cameras whose shard is remembered before the stale ones are dropped
PLACED_KEEP: Final = 4096
#: how long one gathering of every camera's state answers :meth:`RayEngineControl.states`:
#: every open dashboard grid asks for it every 3 s, and a summary a second old is as good
STATES_TTL_S: Final = 1.0


def init_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address``, or start a local Ray that listens on loopback only,
    without its dashboard (a new one, never a cluster found on this machine); False when
    this process was already connected.

    Ray turns a ``127.0.0.1`` node address into the machine's routable one unless it runs in
    single-machine mode (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read by
    ``ray._private.services.get_node_ip_address``); then its GCS, raylet and workers bind
    127.0.0.1 only. The variable is set for the processes Ray starts as well."""
    import ray  # noqa: PLC0415 - the ray extra is needed only by the Ray engine

    if ray.is_initialized():
        return False
    if address is not None:
        ray.init(address=address, namespace=NAMESPACE, include_dashboard=False)
        return True
    from ray._private import ray_constants  # noqa: PLC0415

    os.environ[LOOPBACK_ONLY_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    # "local": a new instance even where `ray start` left a cluster behind
    # (/tmp/ray/ray_current_cluster) or RAY_ADDRESS names one; ray.init() would join it
    ray.init(
        address="local", namespace=NAMESPACE, include_dashboard=False, num_cpus=num_cpus,
        configure_logging=False,
    )  # fmt: skip
    return True


def cluster_cpus() -> float:
    """The cores of the Ray cluster this process is connected to (Ray's ``CPU`` resource
    of every node; a KubeRay head started with ``num-cpus: "0"`` adds none)."""
    return _cluster_resource("CPU")


def cluster_gpus() -> float:
    """The GPUs of the Ray cluster this process is connected to (Ray's ``GPU`` resource)."""
    return _cluster_resource("GPU")


def _cluster_resource(name: str) -> float:
    import ray  # noqa: PLC0415

    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return float(resources.get(name, 0.0))


def shard_count(
    cores: float, cores_per_shard: float, gpus: float = 0.0, gpus_per_shard: float = 0.0
) -> int:
    """How many shards of ``cores_per_shard`` (and ``gpus_per_shard``, when above 0) the
    cluster's ``cores`` (and ``gpus``) hold; at least one (a shard Ray cannot place waits
    for cores).

    >>> shard_count(32, 4), shard_count(2, 1), shard_count(3, 2), shard_count(0, 1)
    (8, 2, 1, 1)
    >>> shard_count(64, 4, gpus=2, gpus_per_shard=0.25)  # 16 by cores, 8 by GPUs
    8
    """
    count = int(cores // cores_per_shard)
    if gpus_per_shard > 0:
        count = min(count, int(gpus // gpus_per_shard))
    return max(1, count)


class RayEngineControl:
    """``shards`` shard actors of ``shard_cpus`` cores each, and the coordinator, on the
    Ray cluster this process is connected to (:func:`init_ray`); ``database`` is the shared
    PostgreSQL store (already migrated). ``shard_engine`` replaces every shard's node engine
    (the control-plane benchmark's simulated cameras, :mod:`feedtag.runtime.ray_shard`);
    None, the default and the only value ``feedtag run`` passes, runs real cameras."""

    def __init__(
        self,
        config: FeedtagConfig,
        database: Engine,
        *,
        shards: int = 2,
        shard_cpus: float = 1.0,
        disconnect: bool = False,
        shard_engine: ShardEngineFactory | None = None,
    ) -> None:
        self.config = config
        self._shard_engine = shard_engine
        self._disconnect = disconnect
        self._database = database
        self._shard_ids = [shard_name(index) for index in range(shards)]
        self._shard_cpus = shard_cpus
        self._shard_gpus = config.engine.gpus_per_shard
        self._shards: dict[str, Any] = {}
        self._coordinator: Any = None
        self._listeners: list[EventListener] = []
        self._feed_stop = threading.Event()
        self._feed: threading.Thread | None = None
        #: cameras the coordinator holds offline: id -> (reason, since when this control saw it)
        self._offline: dict[str, tuple[str, float]] = {}
        # camera id -> (shard, monotonic time): where a snapshot of some cameras last saw it
        self._placed: dict[str, tuple[str, float]] = {}
        self._states: tuple[float, dict[str, CameraState]] | None = None  # (when, states)

    @property
    def coordinator(self) -> Any:
        """The coordinator's actor handle (after :meth:`start`)."""
        return self._coordinator

    def shard(self, shard_id: str) -> Any:
        return self._shards[shard_id]

    def start(self) -> None:
        # The API serves media from this machine's media root; each shard checks that it
        # writes to the same storage (the mark is there) and says so when it does not.
        media_root = self.config.store.resolved_data_dir() / MEDIA_FOLDER
        mark = MediaStore(media_root).mark()
        # detector workers: its share
        config = shard_config(self.config, self._shard_cpus, self._shard_gpus)
        for shard_id in self._shard_ids:
            shard_class = shard_actor_class(shard_id, self._shard_cpus, self._shard_gpus)
            self._shards[shard_id] = shard_class.remote(
                shard_id, config, COORDINATOR_NAME, mark, self._shard_engine
            )
        capacity = {shard_id: self._shard_cpus for shard_id in self._shard_ids}
        self._coordinator = coordinator_actor_class().remote(self.config, capacity)
        log.info("ray engine started: %d shard(s)", len(self._shard_ids))

    def stop(self, deadline_s: float = DEFAULT_STOP_DEADLINE_S) -> bool:
        import ray  # noqa: PLC0415

        self._feed_stop.set()
        end = time.monotonic() + deadline_s
        clean = True
        if self._coordinator is not None:
            with contextlib.suppress(Exception):
                ray.get(self._coordinator.stop.remote(), timeout=2.0)
            ray.kill(self._coordinator, no_restart=True)
            self._coordinator = None
        refs = {shard: handle.stop.remote() for shard, handle in self._shards.items()}
        for shard, ref in refs.items():
            try:
                clean = ray.get(ref, timeout=max(0.5, end - time.monotonic())) and clean
            except ray.exceptions.ActorDiedError:
                log.info("shard %s was gone already", shard)  # nothing of it to stop
            except ray.exceptions.RayError as error:
                log.warning("shard %s did not stop in time: %s", shard, type(error).__name__)
                clean = False
        for handle in self._shards.values():
            ray.kill(handle, no_restart=True)
        self._shards = {}
        if self._disconnect:
            ray.shutdown()
        return clean

    def _call(self, method: str, *args: Any, timeout: float = APPLY_TIMEOUT_S) -> Any:
        import ray  # noqa: PLC0415

        return ray.get(getattr(self._coordinator, method).remote(*args), timeout=timeout)

    def cameras(self) -> list[CameraConfig]:
        return list(self._call("running"))

    def add_camera(self, camera: CameraConfig) -> None:
        if self._call("shard_of", camera.id) is not None:
            raise CameraExists(camera.id)
        self._call("reconcile_now")

    def change_camera(self, camera: CameraConfig) -> None:
        if self._call("shard_of", camera.id) is None:
            raise CameraNotFound(camera.id)
        self._call("clear_offline", camera.id)
        self._call("reconcile_now")

    def remove_camera(self, camera_id: str) -> None:
        if self._call("shard_of", camera_id) is None:
            raise CameraNotFound(camera_id)
        self._call("reconcile_now")

    def restart_camera(self, camera_id: str) -> None:
        import ray  # noqa: PLC0415

        shard = self._call("shard_of", camera_id)
        if shard is None:
            raise CameraNotFound(camera_id)
        self._call("clear_offline", camera_id)
        ray.get(self._shards[shard].restart_camera.remote(camera_id), timeout=APPLY_TIMEOUT_S)

    def want_thumbnail(self, camera_id: str) -> None:
        """Tell the camera's shard (no answer awaited). The shard is the one a snapshot of
        a page saw the camera on in the last :data:`PLACED_TTL_S`, else the coordinator's:
        an open grid asks the coordinator nothing for its thumbnails."""
        placed = self._placed.get(camera_id)
        if placed is not None and time.monotonic() - placed[1] < PLACED_TTL_S:
            shard: str | None = placed[0]
        else:
            shard = self._call("shard_of", camera_id)
        if shard is not None and shard in self._shards:
            self._shards[shard].want_thumbnail.remote(camera_id)  # no answer awaited

    def snapshot(self, camera_ids: Collection[str] | None = None) -> EngineSnapshot:
        """Every shard's snapshot merged, with the cameras held offline by the coordinator;
        a shard that does not answer in time is left out (its cameras are missing until it
        answers again). With ``camera_ids`` each shard sends only those of its cameras."""
        wanted = None if camera_ids is None else tuple(dict.fromkeys(camera_ids))
        parts: list[EngineSnapshot] = self._from_shards("snapshot", wanted)
        if wanted is not None:
            self._remember_places(parts)
        return with_offline(merge_snapshots(parts), dict(chosen(self._offline, wanted)))

    def _remember_places(self, parts: list[EngineSnapshot]) -> None:
        now = time.monotonic()
        if len(self._placed) > PLACED_KEEP:  # drop what went stale
            fresh = now - PLACED_TTL_S
            self._placed = {c: seen for c, seen in list(self._placed.items()) if seen[1] > fresh}
        for part in parts:
            for camera in part.cameras:
                if camera.shard is not None:
                    self._placed[camera.camera_id] = (camera.shard, now)

    def states(self) -> dict[str, CameraState]:
        """Every shard's camera states, with the cameras held offline by the coordinator (a
        shard that does not answer in time is left out, as in :meth:`snapshot`); the same
        answer for :data:`STATES_TTL_S`, however many callers ask."""
        held = self._states
        if held is not None and time.monotonic() - held[0] < STATES_TTL_S:
            return dict(held[1])
        parts: list[dict[str, CameraState]] = self._from_shards("states")
        found = dict.fromkeys(self._offline, CameraState.OFFLINE)
        for part in parts:  # a camera a shard runs is not held (as in with_offline)
            found.update(part)
        self._states = (time.monotonic(), found)
        return dict(found)

    def camera_totals(self, camera_ids: Collection[str] | None = None) -> list[Metric]:
        """Each shard's totals over its own cameras (a few hundred series a shard, labelled
        with it), and the totals of the cameras held offline on no shard (shard ``""``); a
        shard that does not answer in time is left out, as in :meth:`snapshot`."""
        wanted = None if camera_ids is None else tuple(dict.fromkeys(camera_ids))
        parts: list[tuple[tuple[str, ...], list[Metric]]] = self._from_shards(
            "camera_totals", wanted
        )
        return merged_totals(parts, self._offline, wanted)

    def _from_shards(self, method: str, *args: Any) -> list[Any]:
        """The answers of every shard's ``method`` that came in time, and the coordinator's
        list of cameras it holds offline brought up to date on the way."""
        import ray  # noqa: PLC0415

        if not self._shards:  # not started, or stopped: no Ray call (it would start a Ray)
            return []
        refs = [getattr(handle, method).remote(*args) for handle in self._shards.values()]
        asked = self._ask_coordinator("status")
        ready = _answered(refs)
        parts = []
        for ref in refs:
            if ref in ready:
                with contextlib.suppress(Exception):  # a shard that died meanwhile is left out
                    parts.append(ray.get(ref, timeout=0))
        (status,) = _coordinator_answers(asked) or (None,)
        if status is not None:  # else (restarting) the last known list stands
            self._offline = held_since(self._offline, status["offline"])
        return parts

    def shards(self) -> list[ShardSnapshot]:
        """Every shard's process, cameras, CPU and memory, in shard order. A shard that does
        not answer within :data:`SNAPSHOT_TIMEOUT_S` is listed with the process and machine
        the coordinator last saw and the cameras assigned to it, as unreachable, restarting
        or dead (as Ray reports it)."""
        import ray  # noqa: PLC0415

        if not self._shards:  # not started, or stopped
            return []
        refs = {shard: handle.stats.remote() for shard, handle in self._shards.items()}
        asked = self._ask_coordinator("status", "assignment")
        ready = _answered(list(refs.values()))
        status, assignment = _coordinator_answers(asked) or (None, None)
        health = {} if status is None else status["shards"]
        found = []
        for shard, ref in refs.items():
            state = ShardState.UNREACHABLE
            if ref in ready:
                try:
                    found.append(ShardSnapshot.from_dict(ray.get(ref, timeout=0)))
                    continue
                except ray.exceptions.ActorDiedError:
                    state = ShardState.DEAD
                except ray.exceptions.ActorUnavailableError:
                    state = ShardState.RESTARTING
                except ray.exceptions.RayError:
                    pass
            found.append(silent_shard(shard, state, health.get(shard, {}), assignment or {}))
        return found

    def _ask_coordinator(self, *methods: str) -> list[Any]:
        """Calls to the coordinator under way (their references; none before start)."""
        if self._coordinator is None:
            return []
        return [getattr(self._coordinator, method).remote() for method in methods]

    def subscribe(self, listener: EventListener) -> None:
        self._listeners.append(listener)
        if self._feed is None:
            self._feed = threading.Thread(target=self._poll_events, name="feed", daemon=True)
            self._feed.start()

    def unsubscribe(self, listener: EventListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _poll_events(self) -> None:
        """What the shards' writers stored since the last poll, in stream order, to every
        listener (with its stream position, so a reconnecting client resumes). Each shard
        stamps with its own clock, so every poll looks back ``FEED_LOOKBACK_S`` and skips
        what it already sent."""
        after = Position(time.time(), "", Phase.START)
        sent: dict[tuple[str, Phase], float] = {}
        while not self._feed_stop.wait(FEED_POLL_S):
            look = Position(after.stamp - FEED_LOOKBACK_S, "", Phase.START)
            try:
                missed = missed_since(
                    self._database, look, None, limit=FEED_LIMIT, oldest=look.stamp
                )
            except StoreError:
                log.warning("live feed: the store cannot be read; trying again")
                continue
            for stored in missed.items:
                key = (stored.item.event_id, stored.position.phase)
                if key in sent:
                    continue
                sent[key] = stored.position.stamp
                after = max(after, stored.position)
                for listener in list(self._listeners):
                    listener(stored)
            horizon = after.stamp - FEED_LOOKBACK_S
            sent = {key: stamp for key, stamp in sent.items() if stamp >= horizon}


def _answered(refs: list[Any]) -> list[Any]:
    """Those of ``refs`` whose answer came within :data:`SNAPSHOT_TIMEOUT_S`."""
    import ray  # noqa: PLC0415

    if not refs:
        return []
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=SNAPSHOT_TIMEOUT_S)
    return list(ready)


def _coordinator_answers(refs: list[Any]) -> list[Any]:
    """The answers to the coordinator calls ``refs``, None for each that did not come within
    :data:`COORDINATOR_GRACE_S` (asked beside the shards, they have mostly come already): a
    restarting coordinator never holds a snapshot up."""
    import ray  # noqa: PLC0415

    if not refs:
        return []
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=COORDINATOR_GRACE_S)
    answers = []
    for ref in refs:
        answer = None
        if ref in ready:
            with contextlib.suppress(Exception):  # it died meanwhile: no answer
                answer = ray.get(ref, timeout=0)
        answers.append(answer)
    return answers


def held_since(
    before: dict[str, tuple[str, float]], offline: dict[str, str], now: float | None = None
) -> dict[str, tuple[str, float]]:
    """The cameras held offline now (``offline``: id -> reason), each with the time it was
    first seen held (kept from ``before`` while the camera stays held).

    >>> held_since({"a": ("crashed", 5.0)}, {"a": "crashed", "b": "crashed"}, now=9.0)
    {'a': ('crashed', 5.0), 'b': ('crashed', 9.0)}
    """
    at = time.time() if now is None else now
    return {
        camera_id: (reason, before[camera_id][1] if camera_id in before else at)
        for camera_id, reason in offline.items()
    }


def with_offline(snapshot: EngineSnapshot, offline: dict[str, tuple[str, float]]) -> EngineSnapshot:
    """``snapshot`` with the cameras held offline (id -> (reason, since)) added as offline
    cameras on no shard, unless a shard runs them (a change gave them another chance)."""
    running = {camera.camera_id for camera in snapshot.cameras}
    held = tuple(
        CameraSnapshot(
            camera_id=camera_id,
            ingest=held_offline(camera_id, reason, since),
            vision=None,
            queue_depth=0,
            event_counts={},
        )
        for camera_id, (reason, since) in sorted(offline.items())
        if camera_id not in running
    )
    return dataclasses.replace(snapshot, cameras=snapshot.cameras + held)


def silent_shard(
    shard: str, state: ShardState, health: dict[str, Any], assignment: dict[str, str]
) -> ShardSnapshot:
    """A shard that did not answer: the process and machine the coordinator last saw
    (``health``, its status entry) and the cameras assigned to it; no figures."""
    cameras = tuple(sorted(camera for camera, owner in assignment.items() if owner == shard))
    if state is ShardState.UNREACHABLE and health.get("dead"):
        state = ShardState.DEAD
    return ShardSnapshot(
        shard_id=shard, node=health.get("node"), pid=health.get("pid"), state=state,
        cameras=cameras, cpu_percent=None, rss_bytes=None,
    )  # fmt: skip


def merged_totals(
    parts: list[tuple[tuple[str, ...], list[Metric]]],
    offline: dict[str, tuple[str, float]],
    wanted: Collection[str] | None = None,
) -> list[Metric]:
    """The shards' totals (each with the cameras it counted) side by side, with the totals
    of the cameras held offline (id -> (reason, since)) that no shard ran, on shard ``""``;
    only ``wanted`` of the held cameras when given (the shards were asked for those)."""
    running = {camera_id for counted, _ in parts for camera_id in counted}
    held = {camera_id: entry for camera_id, entry in chosen(offline, wanted)
            if camera_id not in running}  # fmt: skip
    on_no_shard = with_offline(EngineSnapshot(time.time(), (), None), held)
    return merge_families([camera_totals(on_no_shard, sharded=True), *(f for _, f in parts)])


def merge_snapshots(parts: list[EngineSnapshot]) -> EngineSnapshot:
    """One snapshot of many shards: cameras side by side, store and vision figures added."""
    cameras: tuple[CameraSnapshot, ...] = tuple(c for part in parts for c in part.cameras)
    stores = [part.store for part in parts if part.store is not None]
    store = None
    if stores:
        numbers = {
            f.name: sum(getattr(s, f.name) for s in stores)
            for f in dataclasses.fields(WriterStats)
            if f.name != "available"
        }
        store = WriterStats(**numbers, available=all(s.available for s in stores))
    stages = [part.vision_stage for part in parts if part.vision_stage is not None]
    stage = None
    if stages:
        stage = VisionStageStatus(**{
            f.name: _merged(f.name, [getattr(s, f.name) for s in stages])
            for f in dataclasses.fields(VisionStageStatus)
        })  # fmt: skip
    return EngineSnapshot(time.time(), cameras, store, vision_stage=stage)


def _merged(name: str, values: list[Any]) -> Any:
    if isinstance(values[0], tuple):
        return tuple(item for value in values for item in value)
    if name.endswith("_s"):
        return max(values)  # a bound in force, not a count
    return sum(values)
