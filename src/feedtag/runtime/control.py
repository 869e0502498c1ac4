"""The engine's control interface: everything the API and the CLI may ask of an engine.

:class:`EngineControl` is the one seam between the engine and its consumers. Its results are
plain values (:class:`EngineSnapshot`, camera settings, core events), never live engine
objects, so that the same calls can be answered by an engine in this process
(:class:`~feedtag.runtime.local.LocalEngineControl`, over a
:class:`~feedtag.runtime.node.NodeEngine`) or by engines inside remote actors. Control
methods raise :mod:`feedtag.errors` errors (:class:`~feedtag.errors.CameraExists`,
:class:`~feedtag.errors.CameraNotFound`), never ``KeyError`` or ``ValueError``.

A snapshot serializes as it is::

    >>> import dataclasses, json
    >>> snapshot = EngineSnapshot(taken_at=0.0, cameras=(), store=None)
    >>> text = json.dumps(dataclasses.asdict(snapshot)); text
    '{"taken_at": 0.0, "cameras": [], "store": null, "vision_stage": null, "alerts": null}'
    >>> EngineSnapshot.from_dict(json.loads(text)) == snapshot
    True
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from prometheus_client.core import Metric

from feedtag.alerts.dispatcher import AlertStats
from feedtag.config.models import CameraConfig
from feedtag.core import (
    AnalysisLevel,
    CameraState,
    CameraStatus,
    DecodeMode,
    IngestCounters,
    PacketGateState,
    VisionStageStatus,
    VisionStatus,
)
from feedtag.store.feed import Stored
from feedtag.store.writer import WriterStats

T = TypeVar("T")

#: how long :meth:`EngineControl.stop` waits by default for every thread to end
DEFAULT_STOP_DEADLINE_S: Final = 4.0

#: called with every event, and every end of an event that lasts, that the engine stores
#: (as :class:`~feedtag.store.feed.Stored`, with its place in the stream, once committed);
#: a listener must not block (it runs on the store writer's thread)
EventListener = Callable[[Stored], None]


@dataclass(frozen=True, slots=True)
class CameraSnapshot:
    """One running camera: its ingest status (URL masked), what the vision stage did (None
    when detection is off), decoded frames waiting for analysis, and events per kind since
    it started."""

    camera_id: str
    ingest: CameraStatus
    vision: VisionStatus | None
    queue_depth: int
    event_counts: dict[str, int]
    #: the Ray engine's shard that runs the camera, and its machine (None in one process)
    shard: str | None = None
    node: str | None = None
    #: CPU seconds of the camera's snapshots and thumbnails (the media thread: anonymizing,
    #: encoding, writing) and its event clips (the clip writer) since it started; 0 when
    #: nothing is written
    media_cpu_s: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CameraSnapshot:
        """The snapshot ``dataclasses.asdict`` (and a JSON round trip) made of one."""
        ingest = dict(data["ingest"])
        ingest["state"] = CameraState(ingest["state"])
        ingest["mode"] = DecodeMode(ingest["mode"])
        ingest["analysis_level"] = AnalysisLevel(ingest.get("analysis_level", "normal"))
        ingest["packet_gate"] = PacketGateState(ingest.get("packet_gate", "off"))
        ingest["counters"] = IngestCounters(**ingest["counters"])
        vision = data["vision"]
        return cls(
            camera_id=data["camera_id"],
            ingest=CameraStatus(**ingest),
            vision=None if vision is None else VisionStatus(**vision),
            queue_depth=data["queue_depth"],
            event_counts=dict(data["event_counts"]),
            shard=data.get("shard"),
            node=data.get("node"),
            media_cpu_s=float(data.get("media_cpu_s", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    """What an engine is doing, at ``taken_at`` (Unix seconds): every running camera, in
    the order they were started, and the store writer's figures (None when the engine
    writes nothing: detection off)."""

    taken_at: float
    cameras: tuple[CameraSnapshot, ...]
    store: WriterStats | None
    #: the vision stage as a whole (post-processing queue, detector watchdog); None when
    #: detection is off
    vision_stage: VisionStageStatus | None = None
    #: alert delivery (the outbox and its dispatcher); None when no alert route is set
    alerts: AlertStats | None = None

    def camera(self, camera_id: str) -> CameraSnapshot | None:
        """The running camera ``camera_id``, or None."""
        return next((c for c in self.cameras if c.camera_id == camera_id), None)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineSnapshot:
        """The snapshot ``dataclasses.asdict`` (and a JSON round trip) made of one."""
        store, stage, alerts = data["store"], data.get("vision_stage"), data.get("alerts")
        if stage is not None:
            stage = VisionStageStatus(**{**stage, "hung_cameras": tuple(stage["hung_cameras"])})
        return cls(
            taken_at=data["taken_at"],
            cameras=tuple(CameraSnapshot.from_dict(camera) for camera in data["cameras"]),
            store=None if store is None else WriterStats(**store),
            vision_stage=stage,
            alerts=None if alerts is None else AlertStats(**alerts),
        )


def chosen(cameras: Mapping[str, T], camera_ids: Collection[str] | None) -> list[tuple[str, T]]:
    """The cameras (id -> anything of them) a snapshot of ``camera_ids`` covers: every one,
    in their order, when None; else those of the ids that are there, once each, in the
    order given.

    >>> chosen({"a": 1, "b": 2}, None), chosen({"a": 1, "b": 2}, ["b", "x", "b"])
    ([('a', 1), ('b', 2)], [('b', 2)])
    """
    if camera_ids is None:
        return list(cameras.items())
    return [(i, cameras[i]) for i in dict.fromkeys(camera_ids) if i in cameras]


def held_offline(camera_id: str, reason: str, since: float) -> CameraStatus:
    """The status of a camera the engine holds back instead of running it (a secret that
    cannot be resolved, or a camera that crashed its shard too often): offline, with the
    reason, and nothing decoded."""
    return CameraStatus(
        camera_id=camera_id, url="", state=CameraState.OFFLINE, reason=reason, since=since,
        mode=DecodeMode.MEASURING, keyframe_interval_s=None, decoded_fps=0.0, analysed_fps=0.0,
        codec=None, width=None, height=None, counters=IngestCounters(),
    )  # fmt: skip


class ShardState(enum.StrEnum):
    """Where a shard stands, as the engine control last heard."""

    RUNNING = "running"  # answered in time
    UNREACHABLE = "unreachable"  # did not answer in time (busy, hung, or its machine gone)
    RESTARTING = "restarting"  # its process died and Ray is starting it again
    DEAD = "dead"  # Ray reports it gone for good; its cameras run on the other shards


#: the one shard of an engine in one process
LOCAL_SHARD: Final = "local"


@dataclass(frozen=True, slots=True)
class ShardSnapshot:
    """One shard of an engine: the process that runs a set of cameras (the whole engine in
    one process is one shard, :data:`LOCAL_SHARD`). ``cpu_percent`` is of one core (a
    process busy on two cores shows 200), ``rss_bytes`` its resident memory; the figures
    and the process are None when the shard did not answer, and ``cameras`` are then the
    ones assigned to it.

    >>> import dataclasses, json
    >>> shard = ShardSnapshot("local", "host", 42, ShardState.RUNNING, ("gate",), 12.5, 2**27)
    >>> ShardSnapshot.from_dict(json.loads(json.dumps(dataclasses.asdict(shard)))) == shard
    True
    """

    shard_id: str
    node: str | None
    pid: int | None
    state: ShardState
    cameras: tuple[str, ...]
    cpu_percent: float | None
    rss_bytes: int | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardSnapshot:
        """The snapshot ``dataclasses.asdict`` (and a JSON round trip) made of one."""
        return cls(**{**data, "state": ShardState(data["state"]),
                      "cameras": tuple(data["cameras"])})  # fmt: skip


class EngineControl(Protocol):
    """What the API and the CLI may ask of an engine; every answer is a plain value."""

    def start(self) -> None:
        """Start every configured camera."""
        ...

    def stop(self, deadline_s: float = DEFAULT_STOP_DEADLINE_S) -> bool:
        """Stop everything; True if every thread ended within ``deadline_s``."""
        ...

    def cameras(self) -> list[CameraConfig]:
        """The settings of every running camera."""
        ...

    def add_camera(self, camera: CameraConfig) -> None:
        """Start one more camera; :class:`~feedtag.errors.CameraExists` if the id runs."""
        ...

    def change_camera(self, camera: CameraConfig) -> None:
        """Restart the running camera ``camera.id`` with new settings;
        :class:`~feedtag.errors.CameraNotFound` if it is not running."""
        ...

    def remove_camera(self, camera_id: str) -> None:
        """Stop and forget a camera; :class:`~feedtag.errors.CameraNotFound` if it is not
        running."""
        ...

    def restart_camera(self, camera_id: str) -> None:
        """Restart a running camera with its settings;
        :class:`~feedtag.errors.CameraNotFound` if it is not running."""
        ...

    def snapshot(self, camera_ids: Collection[str] | None = None) -> EngineSnapshot:
        """The engine's status now; with ``camera_ids``, only those of the running cameras
        (one page of a list: the store, vision stage and alert figures stay whole, and an
        id that does not run is left out)."""
        ...

    def states(self) -> dict[str, CameraState]:
        """Every running camera's ingest state (and the cameras the engine holds offline),
        without the rest of a snapshot: what a summary of states or a filter by state
        needs."""
        ...

    def camera_totals(self, camera_ids: Collection[str] | None = None) -> list[Metric]:
        """The per-camera families of ``/metrics`` in totals (``api.metrics: totals``):
        combined over the cameras of each shard where they run, only ``camera_ids`` when
        given (:mod:`feedtag.runtime.camera_metrics`)."""
        ...

    def shards(self) -> list[ShardSnapshot]:
        """Every shard of the engine, with its process, cameras, CPU and memory; a shard
        that does not answer is listed with its state, never an error."""
        ...

    def subscribe(self, listener: EventListener) -> None:
        """Call ``listener`` with every event stored from now on (the live event feed)."""
        ...

    def unsubscribe(self, listener: EventListener) -> None:
        """Stop calling ``listener``; nothing happens if it was not subscribed."""
        ...

    def want_thumbnail(self, camera_id: str) -> None:
        """Someone is looking at ``camera_id``'s thumbnail: keep it renewed for a while."""
        ...
