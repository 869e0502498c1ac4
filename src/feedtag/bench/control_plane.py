"""The Ray engine's control plane at scale: ``feedtag bench control-plane``.

Starts a local Ray and a throwaway PostgreSQL (:class:`~feedtag.store.pgcluster.PgCluster`),
stores N status-only simulated cameras in the camera catalog (:mod:`feedtag.bench.simulated`),
runs the Ray engine over them with S shards, and measures, for each N:

- ``start_s``: from the engine's start until the last camera started on a shard (each
  simulated camera's status says when it started, so polling does not blur the figure);
- ``round_s``, ``round_cpu_s``, ``coordinator_cpu_share``, ``coordinator_rss_mb``: the
  coordinator's reconcile round in steady state (wall time of the round itself, without the
  :data:`~feedtag.runtime.ray_coordinator.RECONCILE_INTERVAL_S` pause), its process's CPU
  seconds per round and per wall second, and its resident memory (psutil on its process;
  the benchmark's own reads of the round counter, twice a second, are included);
- ``add_one_s``: from storing one more camera through the catalog (as the API does) until it
  runs on a shard, and ``add_call_s``, how long the control's ``add_camera`` call took;
- ``snapshot_s`` and ``snapshot_bytes_per_camera``: :meth:`RayEngineControl.snapshot` (the
  median of three) and its size as JSON per camera;
- ``page_s`` and ``states_s``: what one page of the dashboard grid asks of the engine (the
  median of three each): the snapshot of :data:`PAGE` cameras spread over the shards, and
  :meth:`RayEngineControl.states`, every camera's state (gathered anew: the benchmark
  waits out :data:`~feedtag.runtime.ray_engine.STATES_TTL_S` before each); ``totals_s``:
  what a ``/metrics`` scrape in totals asks, :meth:`RayEngineControl.camera_totals`
  (median of three);
- ``restart_share``, ``restart_s``, ``restart_moved``: a shard's process killed with
  SIGKILL, which Ray restarts: how many cameras it ran, from the kill until the last of them
  ran again (in the new process, or moved if it took longer than
  :data:`~feedtag.runtime.ray_coordinator.SHARD_GRACE_S`), and how many moved;
- ``lost_share``, ``moved``, ``reassign_s``: a shard killed for good (``ray.kill``, no
  restart): how many cameras it ran, how many the coordinator recorded as moved, and from
  the kill until the last of them started on a live shard.

One Ray and one PostgreSQL serve the whole sweep; each N gets a fresh database and engine.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import psutil
from sqlalchemy import Engine

from feedtag.bench.simulated import SimulatedCameras, simulated_camera
from feedtag.config import validate_config
from feedtag.config.models import FeedtagConfig
from feedtag.errors import CameraExists, FeedtagError, StoreError
from feedtag.runtime.catalog import CameraCatalog, sealed_secrets
from feedtag.runtime.database import open_database
from feedtag.runtime.ray_coordinator import RECONCILE_INTERVAL_S
from feedtag.runtime.ray_shard import shard_name
from feedtag.store.cameras import CameraRecord, camera_settings
from feedtag.store.pgcluster import PgCluster, find_pg_bin
from feedtag.store.schema import camera_records
from feedtag.store.sealing import SecretBox

#: camera counts of the full sweep and of ``--quick``
DEFAULT_COUNTS: Final = (1000, 3000, 10000)
QUICK_COUNTS: Final = (200,)
DEFAULT_SHARDS: Final = 4
#: steady-state measuring window: at least this long and this many reconcile rounds
STEADY_WINDOW_S: Final = 5.0
STEADY_ROUNDS: Final = 3
#: how long a step may take before the benchmark gives up on it
STEP_TIMEOUT_S: Final = 300.0
#: how often the benchmark polls while it waits
POLL_S: Final = 0.5
#: the cameras of one page of the dashboard grid (web/grid.js)
PAGE: Final = 48
#: camera records written per transaction when storing the simulated cameras
INSERT_BATCH: Final = 1000

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ControlPlaneRow:
    """The control plane's figures for one camera count (see the module docstring)."""

    cameras: int
    shards: int
    start_s: float
    round_s: float
    round_cpu_s: float
    coordinator_cpu_share: float
    coordinator_rss_mb: float
    add_one_s: float
    add_call_s: float
    snapshot_s: float
    snapshot_bytes_per_camera: int
    page_s: float
    states_s: float
    totals_s: float
    restart_share: int
    restart_s: float
    restart_moved: int
    lost_share: int
    moved: int
    reassign_s: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class BenchError(FeedtagError):
    """A step of the benchmark did not finish (the message says which)."""


def store_simulated(database: Engine, config: FeedtagConfig, count: int) -> None:
    """Store simulated cameras ``0 .. count - 1`` as the catalog stores an API camera (one
    transaction per :data:`INSERT_BATCH`, instead of one per camera)."""
    box = SecretBox.from_environ(os.environ)
    now = time.time()
    for first in range(0, count, INSERT_BATCH):
        rows = []
        for index in range(first, min(count, first + INSERT_BATCH)):
            camera = simulated_camera(index)
            record = CameraRecord(
                camera.id, camera_settings(camera), sealed_secrets(camera, None, box),
                changes_config=False, deleted=False, updated_at=now,
            )  # fmt: skip
            rows.append(dataclasses.asdict(record))
        with database.begin() as connection:
            connection.execute(camera_records.insert(), rows)


def _wait(what: str, done: Callable[[], Any], say: Say, timeout_s: float = STEP_TIMEOUT_S) -> Any:
    """Poll ``done`` until it returns something truthy; say progress every 10 s."""
    started = time.monotonic()
    told = started
    while True:
        value = done()
        if value:
            return value
        now = time.monotonic()
        if now - started > timeout_s:
            raise BenchError(f"{what}: not done after {timeout_s:.0f} s")
        if now - told >= 10.0:
            say(f"  still waiting for {what} ({now - started:.0f} s)")
            told = now
        time.sleep(POLL_S)


def _reconcile_count(coordinator: Any) -> int:
    """Run inside the coordinator's actor (``__ray_call__``): its completed rounds (an
    AttributeError, raised by ``ray.get``, if the coordinator stops counting them)."""
    return int(coordinator._reconciles)


class Measured:
    """One engine over ``count`` stored simulated cameras, and the measurements on it."""

    def __init__(self, control: Any, count: int, say: Say) -> None:
        self.control = control
        self.count = count
        self.say = say

    def wait_running(self, count: int, what: str, exclude_shard: str | None = None) -> Any:
        def done() -> Any:
            snapshot = self.control.snapshot()
            cameras = [c for c in snapshot.cameras if c.shard != exclude_shard]
            return snapshot if len(cameras) >= count else None

        return _wait(what, done, self.say)

    def steady(self) -> tuple[float, float, float, float]:
        """(round_s, round_cpu_s, cpu_share, rss_mb) of the coordinator in steady state."""
        import ray  # noqa: PLC0415 - the ray extra

        coordinator = self.control.coordinator
        process = psutil.Process(ray.get(coordinator.ping.remote(), timeout=10)["pid"])

        def rounds() -> int:
            return int(ray.get(coordinator.__ray_call__.remote(_reconcile_count), timeout=60))

        def cpu() -> float:
            times = process.cpu_times()
            return float(times.user + times.system)

        first = rounds()
        _wait("a reconcile round", lambda: rounds() > first, self.say)
        start_round, started, start_cpu = rounds(), time.monotonic(), cpu()
        _wait(
            f"{STEADY_ROUNDS} reconcile rounds",
            lambda: (rounds() >= start_round + STEADY_ROUNDS
                     and time.monotonic() - started >= STEADY_WINDOW_S),
            self.say,
        )  # fmt: skip
        done_rounds, wall, spent = (
            rounds() - start_round,
            time.monotonic() - started,
            cpu() - start_cpu,
        )
        round_s = max(0.0, wall / done_rounds - RECONCILE_INTERVAL_S)
        rss_mb = process.memory_info().rss / 1e6
        return round_s, spent / done_rounds, spent / wall, rss_mb

    def add_one(self, config: FeedtagConfig, database: Engine) -> tuple[float, float]:
        """(add_one_s, add_call_s) for one camera stored through the catalog."""
        catalog = CameraCatalog(config, database)  # reads every stored camera: not timed
        camera = simulated_camera(self.count)
        began = time.time()
        catalog.put(camera)
        with contextlib.suppress(CameraExists):  # a round read the store first: it runs
            self.control.add_camera(camera)
        call_s = time.time() - began

        def since() -> float | None:
            snapshot = self.control.snapshot().camera(camera.id)
            return None if snapshot is None else snapshot.ingest.since

        return _wait("the added camera", since, self.say) - began, call_s

    def snapshots(self) -> tuple[float, int]:
        """(median seconds of three snapshots, JSON bytes per camera)."""
        took = []
        for _ in range(3):
            began = time.monotonic()
            snapshot = self.control.snapshot()
            took.append(time.monotonic() - began)
        size = len(json.dumps(dataclasses.asdict(snapshot)))
        return statistics.median(took), size // max(1, len(snapshot.cameras))

    def page_and_states(self, count: int) -> tuple[float, float, float]:
        """Median seconds of three snapshots of a page of :data:`PAGE` cameras spread over
        the shards, of three :meth:`RayEngineControl.states`, and of three
        :meth:`RayEngineControl.camera_totals`."""
        from feedtag.runtime.ray_engine import STATES_TTL_S  # noqa: PLC0415 - ray extra

        page = [simulated_camera(index).id for index in range(0, count, max(1, count // PAGE))]
        timed: dict[str, list[float]] = {"page": [], "states": [], "totals": []}
        for _ in range(3):
            began = time.monotonic()
            got = self.control.snapshot(page[:PAGE])
            timed["page"].append(time.monotonic() - began)
            time.sleep(STATES_TTL_S)  # past the states an earlier call gathered: gather anew
            began = time.monotonic()
            states = self.control.states()
            timed["states"].append(time.monotonic() - began)
            began = time.monotonic()
            totals = self.control.camera_totals()
            timed["totals"].append(time.monotonic() - began)
            counted = sum(
                sample.value
                for family in totals
                if family.name == "feedtag_camera_state"
                for sample in family.samples
            )
            if counted < count:
                raise BenchError(f"the totals counted {counted:.0f} cameras of {count}")
            if len(got.cameras) != min(PAGE, len(page)) or len(states) < count:
                raise BenchError(
                    f"a page gave {len(got.cameras)} cameras and the states {len(states)}"
                )
        page_s, states_s, totals_s = (statistics.median(timed[key]) for key in timed)
        return page_s, states_s, totals_s

    def moved_from(self, shard: str) -> int:
        """Cameras the coordinator recorded as moved because ``shard`` was lost."""
        import ray  # noqa: PLC0415

        status = ray.get(self.control.coordinator.status.remote(), timeout=30)
        return sum(
            r["moved"] for r in status["reassignments"] if f"shard {shard} lost" in r["reason"]
        )

    def restart_shard(self) -> tuple[int, float, int]:
        """SIGKILL shard 1's process (Ray restarts it): (cameras it ran, seconds until the
        last of them ran again, cameras moved meanwhile)."""
        import ray  # noqa: PLC0415

        shard = shard_name(1)
        pid = ray.get(self.control.shard(shard).ping.remote(), timeout=30)["pid"]
        on_shard = [c.camera_id for c in self.control.snapshot().cameras if c.shard == shard]
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)

        def again() -> float | None:
            since: dict[str, float] = {
                c.camera_id: c.ingest.since for c in self.control.snapshot().cameras
            }
            if all(since.get(camera_id, 0.0) > killed_at for camera_id in on_shard):
                return max(since[camera_id] for camera_id in on_shard)
            return None

        restart_s = _wait(f"the cameras of {shard} after its restart", again, self.say) - killed_at
        return len(on_shard), restart_s, self.moved_from(shard)

    def lose_shard(self) -> tuple[int, int, float]:
        """Kill shard 0 for good: (cameras it ran, cameras recorded as moved, seconds until
        the last of them started elsewhere)."""
        import ray  # noqa: PLC0415

        lost = shard_name(0)
        before = self.control.snapshot().cameras
        total, on_lost = len(before), [c.camera_id for c in before if c.shard == lost]
        killed_at = time.time()
        ray.kill(self.control.shard(lost), no_restart=True)
        snapshot = self.wait_running(total, f"the cameras of {lost} elsewhere", lost)
        since = {c.camera_id: c.ingest.since for c in snapshot.cameras}
        reassign_s = max(since[camera_id] for camera_id in on_lost) - killed_at
        moved = _wait("the reassignment record", lambda: self.moved_from(lost), self.say)
        return len(on_lost), moved, reassign_s


def measure(cluster: PgCluster, count: int, shards: int, say: Say) -> ControlPlaneRow:
    """The control plane's figures with ``count`` simulated cameras over ``shards`` shards
    (Ray already initialized)."""
    from feedtag.runtime.ray_engine import RayEngineControl  # noqa: PLC0415 - ray extra

    url = cluster.create_database(f"feedtag_cp_{count}_{os.getpid()}_{time.time_ns()}")
    config = validate_config({"store": {"url": url}, "detector": {"enabled": False}})
    database = open_database(config.store)
    say(f"{count} cameras: storing them in the catalog")
    store_simulated(database, config, count)
    control = RayEngineControl(config, database, shards=shards, shard_engine=SimulatedCameras)
    run = Measured(control, count, say)
    try:
        say(f"{count} cameras: starting {shards} shards and the coordinator")
        began = time.time()
        control.start()
        snapshot = run.wait_running(count, f"all {count} cameras running")
        start_s = max(c.ingest.since for c in snapshot.cameras) - began
        say(f"{count} cameras: all running after {start_s:.1f} s; steady-state rounds")
        round_s, round_cpu_s, cpu_share, rss_mb = run.steady()
        say(f"{count} cameras: adding one through the catalog")
        add_one_s, add_call_s = run.add_one(config, database)
        snapshot_s, snapshot_bytes = run.snapshots()
        page_s, states_s, totals_s = run.page_and_states(count)
        say(f"{count} cameras: kill -9 of {shard_name(1)}'s process (Ray restarts it)")
        restart_share, restart_s, restart_moved = run.restart_shard()
        say(f"{count} cameras: killing {shard_name(0)} for good")
        lost_share, moved, reassign_s = run.lose_shard()
    finally:
        control.stop(8.0)
        database.dispose()
    return ControlPlaneRow(
        cameras=count, shards=shards, start_s=round(start_s, 2), round_s=round(round_s, 3),
        round_cpu_s=round(round_cpu_s, 3), coordinator_cpu_share=round(cpu_share, 3),
        coordinator_rss_mb=round(rss_mb, 1), add_one_s=round(add_one_s, 2),
        add_call_s=round(add_call_s, 2), snapshot_s=round(snapshot_s, 3),
        snapshot_bytes_per_camera=snapshot_bytes, page_s=round(page_s, 3),
        states_s=round(states_s, 3), totals_s=round(totals_s, 3), restart_share=restart_share,
        restart_s=round(restart_s, 2), restart_moved=restart_moved,
        lost_share=lost_share, moved=moved,
        reassign_s=round(reassign_s, 2),
    )  # fmt: skip


@contextlib.contextmanager
def ray_and_postgres(shards: int) -> Iterator[PgCluster]:
    """A local Ray (``shards`` logical cores) and a throwaway PostgreSQL, for the sweep."""
    import ray  # noqa: PLC0415

    from feedtag.runtime.ray_engine import init_ray  # noqa: PLC0415

    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise StoreError("PostgreSQL binaries not found (apt-get install postgresql)")
    cluster = PgCluster(bin_dir)
    cluster.start()
    started = init_ray(None, num_cpus=shards)
    try:
        yield cluster
    finally:
        if started:
            ray.shutdown()
        cluster.destroy()


def sweep(counts: Sequence[int], shards: int, say: Say) -> list[ControlPlaneRow]:
    """:func:`measure` for every camera count, on one Ray and one PostgreSQL."""
    rows = []
    with ray_and_postgres(shards) as cluster:
        for count in counts:
            rows.append(measure(cluster, count, shards, say))
            say(f"{count} cameras: {json.dumps(rows[-1].to_dict())}")
    return rows


TABLE: Final = (
    ("cameras", "cameras", 8), ("start_s", "start s", 9), ("round_s", "round s", 9),
    ("round_cpu_s", "cpu/round", 10), ("coordinator_cpu_share", "cpu share", 10),
    ("coordinator_rss_mb", "rss MB", 8), ("add_one_s", "add s", 7),
    ("snapshot_s", "snap s", 8), ("snapshot_bytes_per_camera", "B/cam", 7),
    ("page_s", "page s", 8), ("states_s", "states s", 9), ("totals_s", "totals s", 9),
    ("restart_share", "kill-9", 7), ("restart_s", "back s", 8),
    ("restart_moved", "moved", 6), ("lost_share", "lost", 6), ("moved", "moved", 6),
    ("reassign_s", "moved s", 9),
)  # fmt: skip


def format_table(rows: Sequence[ControlPlaneRow]) -> str:
    """The rows as a fixed-width table (one line per camera count)."""
    lines = ["".join(f"{title:>{width}}" for _, title, width in TABLE)]
    for row in rows:
        values = row.to_dict()
        lines.append("".join(f"{values[key]!s:>{width}}" for key, _, width in TABLE))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="feedtag bench control-plane")
    parser.add_argument("--cameras", default=None, help="comma-separated camera counts")
    parser.add_argument("--shards", type=int, default=DEFAULT_SHARDS)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_COUNTS} cameras")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--output", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    counts: tuple[int, ...] = QUICK_COUNTS if args.quick else DEFAULT_COUNTS
    if args.cameras:
        try:
            counts = tuple(int(part) for part in args.cameras.split(","))
        except ValueError:
            parser.error(f"--cameras: expected comma-separated numbers, got {args.cameras!r}")
    if args.shards < 2 or any(count < args.shards for count in counts):
        parser.error("--shards must be at least 2 and at most the smallest camera count")

    def say(text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)  # noqa: T201

    rows = sweep(counts, args.shards, say)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as file:
            json.dump([row.to_dict() for row in rows], file, indent=2)
    if args.json:
        for row in rows:
            print(json.dumps(row.to_dict()))  # noqa: T201
    else:
        print(format_table(rows))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
