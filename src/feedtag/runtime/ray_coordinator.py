"""The coordinator of the Ray engine: which shard runs which camera, kept true.

One named Ray actor (:data:`COORDINATOR_NAME`). Every :data:`RECONCILE_INTERVAL_S` it

1. pings every shard (:data:`PING_TIMEOUT_S`); a shard whose process changed was restarted
   by Ray (its recently started cameras get a strike), a shard that has not answered for
   :data:`SHARD_GRACE_S` or that Ray reports dead loses its cameras to the live shards. A
   shard that only stopped answering is not yet counted as a crash: it is when it answers
   again from a new process, when Ray reports it dead, or after :data:`SILENT_CRASH_S` of
   silence; one that answers again from the same process was only slow;
2. reads the cameras from the store: the config file's with the changes stored through the
   API laid over them (:class:`~feedtag.runtime.catalog.CameraMerger`), so a camera added,
   changed or removed through the API reaches a shard within one interval. Only records
   whose ``updated_at`` changed are loaded (:class:`~feedtag.store.cameras.StoredRecords`)
   and only those are validated again, so a round with nothing changed costs one small
   query and a pass over the cameras, not a validation of each;
3. assigns them to the live shards by capacity-weighted rendezvous hashing
   (:mod:`feedtag.runtime.assignment`), records how many moved when shards came or went,
   and tells each shard whose cameras differ what to run (:meth:`ShardWorker.adopt`:
   unchanged cameras keep running).

A camera that keeps crashing its shard is put offline with the reason instead of moving
from shard to shard for ever (:class:`~feedtag.runtime.crashes.CrashBudget`: the cameras
started on a shard within :data:`SUSPECT_WINDOW_S` before it crashed are the suspects);
changing or restarting it gives it another chance.

When the coordinator itself restarts, it asks every live shard what it runs and takes that
as the current assignment, so healthy cameras are not restarted.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Final

from feedtag.config.models import CameraConfig, FeedtagConfig
from feedtag.errors import StoreError
from feedtag.runtime.assignment import assign, moves
from feedtag.runtime.catalog import CameraMerger
from feedtag.runtime.crashes import CrashBudget
from feedtag.runtime.database import open_database
from feedtag.store.cameras import StoredRecords
from feedtag.store.sealing import SecretBox

log = logging.getLogger(__name__)

#: the coordinator's Ray actor name (in the engine's namespace)
COORDINATOR_NAME: Final = "feedtag-coordinator"
#: how often cameras and shard health are reconciled
RECONCILE_INTERVAL_S: Final = 1.0
#: a shard that does not answer a ping within this is not healthy
PING_TIMEOUT_S: Final = 2.0
#: a shard unhealthy this long loses its cameras to the live shards (Ray may still bring
#: it back; then rendezvous hashing gives its cameras back)
SHARD_GRACE_S: Final = 6.0
#: how long a shard's change of cameras may take (starting cameras opens their streams)
ADOPT_TIMEOUT_S: Final = 30.0
#: cameras started on a shard this recently are suspects when it crashes
SUSPECT_WINDOW_S: Final = 60.0
#: a shard silent this long counts as crashed (hung) for the crash budget, even if Ray
#: never reports it dead
SILENT_CRASH_S: Final = 60.0
#: reassignments kept for the status
REASSIGNMENTS_KEPT: Final = 50


@dataclass(frozen=True, slots=True)
class Reassignment:
    """Cameras moved between shards because a shard came or went."""

    at: float
    reason: str
    moved: int


@dataclass(slots=True)
class ShardHealth:
    pid: int | None = None
    node: str | None = None
    healthy_at: float = 0.0
    live: bool = True
    dead: bool = False


def _ray() -> Any:
    import ray  # noqa: PLC0415 - the ray extra is needed only by the Ray engine

    return ray


class Coordinator:
    """Assigns the store's cameras to ``shard_ids`` (shard id -> capacity) and keeps them
    running; the Ray actor body (:func:`coordinator_actor_class`)."""

    def __init__(self, config: FeedtagConfig, shard_ids: dict[str, float]) -> None:
        self.config = config
        self._capacity = dict(shard_ids)
        self._database = open_database(config.store)
        self._records = StoredRecords(self._database)
        # os.environ as it is at each round: a reference whose variable changes is resolved
        # again (CameraMerger keys each camera by the values of the variables it uses)
        self._merger = CameraMerger(
            box=SecretBox.from_environ(os.environ), environ=os.environ,
            media_root=config.media_root,
        )  # fmt: skip
        self._lock = threading.RLock()
        self._health = {shard: ShardHealth(healthy_at=time.monotonic()) for shard in shard_ids}
        #: what each shard runs (as told to it, or as it said when this coordinator started)
        self._running: dict[str, dict[str, CameraConfig]] = {shard: {} for shard in shard_ids}
        self._started_at: dict[tuple[str, str], float] = {}
        #: shards that stopped answering: since when, and the suspects of a crash then
        self._silent: dict[str, tuple[float, list[str]]] = {}
        self._assignment: dict[str, str] = {}
        self._wanted: dict[str, CameraConfig] = {}
        #: the timeline of each file camera played once (see :meth:`_as_run`)
        self._origins: dict[str, float] = {}
        self._problems: dict[str, str] = {}
        self._crashes = CrashBudget()
        self.reassignments: deque[Reassignment] = deque(maxlen=REASSIGNMENTS_KEPT)
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        #: reconcile_now's requests so far, and how many of them the last round served
        self._asked = self._answered = 0
        self._round_done = threading.Condition()
        #: each camera's shard while the live shards stay as they are (see _assign)
        self._owners: dict[str, str] = {}
        self._owners_live: dict[str, float] = {}
        self._recover()
        self._thread = threading.Thread(target=self._loop, name="coordinator", daemon=True)
        self._thread.start()

    # -- what shards and the control ask ------------------------------------------------

    def ping(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "ready": self._ready.is_set()}

    def cameras_for(self, shard_id: str, pid: int | None = None) -> list[CameraConfig]:
        """What ``shard_id`` should run now. A restarted shard asks this from its new process
        ``pid``, before the next ping would tell: the crash is counted first, so that a
        camera that crashed it is not handed back."""
        self._ready.wait(10.0)
        with self._lock:
            if pid is not None:
                self._note_process(shard_id, pid)
            return [
                self._as_run(self._wanted[c])
                for c, s in self._assignment.items()
                if s == shard_id and c not in self._crashes.kept_out()
            ]

    def assignment(self) -> dict[str, str]:
        with self._lock:
            return dict(self._assignment)

    def shard_of(self, camera_id: str) -> str | None:
        """The shard ``camera_id`` is assigned to, or None: what a camera change or a
        thumbnail request asks, without the whole assignment crossing to the caller."""
        with self._lock:
            return self._assignment.get(camera_id)

    def running(self) -> list[CameraConfig]:
        with self._lock:
            return [camera for cams in self._running.values() for camera in cams.values()]

    def reconcile_now(self, wait_s: float = 5.0) -> None:
        """Reconcile at once (a camera was changed through the API) and wait, at most
        ``wait_s``, until a round that began after this call has ended: the round under way
        may have read the store before the change."""
        with self._round_done:
            self._asked += 1
            ticket = self._asked
        self._wake.set()
        with self._round_done:
            self._round_done.wait_for(lambda: self._answered >= ticket, timeout=wait_s)

    @property
    def offline(self) -> dict[str, str]:
        """Cameras put offline for crashing their shards, and why."""
        return self._crashes.offline

    def clear_offline(self, camera_id: str) -> None:
        """Give a camera another chance (it was changed or restarted): a camera put offline
        for crashing its shard runs again, and a file played once starts on a new timeline
        (played again, as a restart on one machine does)."""
        with self._lock:
            self._crashes.clear(camera_id)
            self._origins.pop(camera_id, None)

    def status(self) -> dict[str, Any]:
        """Shards, the assignment's size per shard, cameras offline and why, reassignments."""
        with self._lock:
            per_shard = {shard: 0 for shard in self._capacity}
            for shard in self._assignment.values():
                per_shard[shard] += 1
            return {
                "shards": {
                    shard: asdict(health) | {"cameras": per_shard[shard]}
                    for shard, health in self._health.items()
                },
                "offline": dict(self._crashes.offline),
                "held": [*self._crashes.held, *filter(None, [self._crashes.trial])],
                "problems": dict(self._problems),
                "reassignments": [asdict(r) for r in self.reassignments],
            }  # fmt: skip

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._database.dispose()

    # -- the loop -----------------------------------------------------------------------

    _reconciles = 0

    def _recover(self) -> None:
        """Take what live shards already run as the assignment (after a restart of this
        coordinator nothing healthy is restarted)."""
        ray = _ray()
        for shard in self._capacity:
            try:
                handle = ray.get_actor(shard)
                cameras = ray.get(handle.cameras.remote(), timeout=PING_TIMEOUT_S * 2)
                info = ray.get(handle.ping.remote(), timeout=PING_TIMEOUT_S)
            except Exception as error:  # noqa: BLE001 - not started yet, or restarting
                log.info("shard %s not recovered (%s): reconcile finds out", shard, error)
                continue
            self._running[shard] = {camera.id: camera for camera in cameras}
            self._health[shard].pid, self._health[shard].node = info["pid"], info["node"]
            for camera in cameras:
                self._assignment[camera.id] = shard
                if camera.origin is not None:
                    self._origins[camera.id] = camera.origin
                self._started_at[(shard, camera.id)] = 0.0  # not new: never a suspect
        if any(self._running.values()):
            log.info("coordinator recovered %d camera(s) from the shards", len(self._assignment))

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._round_done:
                serves = self._asked  # the requests this round began after
            try:
                self._reconcile()
            except StoreError as error:  # an outage: the shards spool, cameras keep running
                log.warning("reconcile skipped: %s; trying again", error)
            except Exception:
                log.exception("reconcile failed; trying again")
            self._ready.set()
            self._reconciles += 1
            with self._round_done:
                self._answered = serves
                self._round_done.notify_all()
            self._wake.wait(RECONCILE_INTERVAL_S)
            self._wake.clear()

    def _reconcile(self) -> None:
        round_at = time.monotonic()
        changed_shards = self._check_shards()
        wanted = self._read_cameras()
        with self._lock:
            self._wanted = wanted
            live = {s: c for s, c in self._capacity.items() if self._health[s].live}
            self._crashes.next_trial(wanted)
            kept_out = self._crashes.kept_out()
            ids = [c for c in wanted if c not in kept_out]
            after = self._assign(ids, live) if live else {}
            changes = [] if after == self._assignment else moves(self._assignment, after)
            moved = [m for m in changes if m.source and m.target]
            if moved and changed_shards:
                record = Reassignment(time.time(), changed_shards, len(moved))
                self.reassignments.append(record)
                log.warning("%d camera(s) moved: %s", record.moved, record.reason)
            self._assignment = after
            # Only to shards that answered this round: a push to one that stopped answering
            # (its node lost, not yet past the grace) would hold the loop for the adopt
            # timeout, and with it the failover of its cameras.
            pushed = [s for s in live if self._health[s].healthy_at >= round_at]
            per_shard: dict[str, list[str]] = {shard: [] for shard in pushed}
            for camera_id, shard in after.items():
                if shard in per_shard:
                    per_shard[shard].append(camera_id)
        for shard, camera_ids in per_shard.items():
            self._push(shard, camera_ids)

    def _assign(self, ids: list[str], live: dict[str, float]) -> dict[str, str]:
        """:func:`~feedtag.runtime.assignment.assign` of ``ids`` over ``live``, working out
        only the shard of cameras new since the live shards last changed: a camera's shard
        depends on nothing but its id and the live shards."""
        if live != self._owners_live:
            self._owners, self._owners_live = {}, dict(live)
        known = self._owners
        new = assign([camera_id for camera_id in ids if camera_id not in known], live)
        after = {camera_id: new.get(camera_id) or known[camera_id] for camera_id in ids}
        self._owners = dict(after)
        return after

    def _read_cameras(self) -> dict[str, CameraConfig]:
        entries = self._merger.merge(self.config.cameras, self._records.read())
        problems = {e.camera.id: e.problem for e in entries if e.problem is not None}
        for camera_id in problems.keys() - self._problems.keys():
            log.warning("camera %s is held offline: %s", camera_id, problems[camera_id])
        self._problems = problems
        wanted = {}
        for entry in entries:
            runnable = entry.runnable
            if runnable is None or not runnable.enabled:
                continue
            previous = self._wanted.get(runnable.id)
            if previous is not None and previous is not runnable and previous != runnable:
                self.clear_offline(runnable.id)  # changed: another chance, a new timeline
            wanted[runnable.id] = runnable
        with self._lock:
            self._origins = {c: t for c, t in self._origins.items() if c in wanted}
        return wanted

    def _as_run(self, camera: CameraConfig) -> CameraConfig:
        """``camera`` as shards run it: a file played once gets a fixed ``origin`` (when it
        was first run), so that where it runs again after a crash or a move, it replays
        the file on the same timeline and its events keep their ids (stored once)."""
        if not camera.replayable or camera.origin is not None:
            return camera
        origin = self._origins.setdefault(camera.id, time.time())
        return camera.model_copy(update={"origin": origin})

    def _push(self, shard: str, camera_ids: list[str]) -> None:
        """Tell ``shard`` to run ``camera_ids`` unless it runs exactly those already."""
        with self._lock:
            want = {c: self._as_run(self._wanted[c]) for c in camera_ids}
            if want == self._running[shard]:
                return
        ray = _ray()
        try:
            handle = ray.get_actor(shard)
            ray.get(handle.adopt.remote(list(want.values())), timeout=ADOPT_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - any Ray failure: retried next round
            log.warning("shard %s did not take its cameras: %s", shard, type(error).__name__)
            return
        now = time.monotonic()
        with self._lock:
            before = self._running[shard]
            for camera_id, camera in want.items():
                if before.get(camera_id) != camera:
                    self._started_at[(shard, camera_id)] = now
            self._running[shard] = want

    def _check_shards(self) -> str:
        """Ping every shard; what changed, in words ('' when nothing did)."""
        ray = _ray()
        pending = {}
        for shard, health in self._health.items():
            if health.dead:
                continue
            try:
                pending[shard] = ray.get_actor(shard).ping.remote()
            except Exception:  # noqa: BLE001 - gone from Ray's registry: dead for good
                pending[shard] = None
        now = time.monotonic()
        changes = []
        for shard, ref in pending.items():
            health = self._health[shard]
            try:
                if ref is None:
                    raise LookupError(shard)
                info = ray.get(ref, timeout=PING_TIMEOUT_S)
            except Exception as error:  # noqa: BLE001 - timeouts and every actor error
                dead = isinstance(error, ray.exceptions.ActorDiedError | LookupError)
                if (dead or now - health.healthy_at > SHARD_GRACE_S) and health.live:
                    health.live, health.dead = False, dead
                    changes.append(f"shard {shard} lost ({type(error).__name__})")
                    if dead:
                        self._strike(self._suspects(shard, now))
                    else:  # silent: a crash, or only slow (a busy machine)? see below
                        self._silent[shard] = (now, self._suspects(shard, now))
                elif shard in self._silent:
                    since, suspects = self._silent[shard]
                    if dead or now - since > SILENT_CRASH_S:
                        del self._silent[shard]
                        log.warning(
                            "shard %s %s: counted as a crash", shard,
                            "died" if dead else f"silent for {now - since:.0f} s",
                        )  # fmt: skip
                        self._strike(suspects)
                continue
            self._note_process(shard, info["pid"])
            if not health.live:
                changes.append(f"shard {shard} back")
                with self._lock:
                    self._running[shard] = {}
            health.node, health.healthy_at, health.live = info["node"], now, True
        return "; ".join(changes)

    def _note_process(self, shard: str, pid: int) -> None:
        """``shard`` answers from process ``pid``. Another process than before is a restart
        Ray made: a crash, whose suspects are those of when the shard fell silent if it did.
        The same process after a silence was only slow (a busy machine): no strike."""
        with self._lock:
            health = self._health[shard]
            silent = self._silent.pop(shard, None)
            if health.pid is not None and pid != health.pid:
                if health.live:  # restarted within the grace
                    self._strike(self._suspects(shard, time.monotonic()))
                    self._running[shard] = {}  # the new process runs what it adopts
                elif silent is not None:
                    self._strike(silent[1])
            elif silent is not None:
                log.info("shard %s answers again from the same process: it was slow", shard)
            health.pid = pid

    def _suspects(self, shard: str, now: float) -> list[str]:
        """The cameras started on ``shard`` within :data:`SUSPECT_WINDOW_S` before ``now``."""
        with self._lock:
            return [
                camera_id
                for camera_id in self._running.get(shard, {})
                if now - self._started_at.get((shard, camera_id), 0.0) <= SUSPECT_WINDOW_S
            ]

    def _strike(self, suspects: list[str]) -> None:
        """A shard crashed with ``suspects`` on it (:meth:`CrashBudget.crashed`)."""
        with self._lock:
            self._crashes.crashed(suspects)


def coordinator_actor_class() -> Any:
    """:class:`Coordinator` as the Ray actor :data:`COORDINATOR_NAME`, restarted by Ray
    when its process dies; call ``.remote(config, shard_capacities)`` on it."""
    options: dict[str, Any] = {
        "name": COORDINATOR_NAME, "num_cpus": 0, "max_restarts": -1, "max_task_retries": 3,
        "max_concurrency": 8,
    }  # fmt: skip
    return _ray().remote(Coordinator).options(**options)
