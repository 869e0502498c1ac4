"""The engine control for a node engine in this process."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Collection
from typing import Final

import psutil
from prometheus_client.core import Metric

from feedtag.alerts.dispatcher import AlertStats
from feedtag.config.models import CameraConfig
from feedtag.core import CameraState
from feedtag.errors import CameraNotFound
from feedtag.runtime.camera_metrics import camera_totals
from feedtag.runtime.control import (
    DEFAULT_STOP_DEADLINE_S,
    LOCAL_SHARD,
    CameraSnapshot,
    EngineSnapshot,
    EventListener,
    ShardSnapshot,
    ShardState,
)
from feedtag.runtime.node import NodeEngine

log = logging.getLogger(__name__)

#: how long a camera change waits for the camera's old ingest thread to end
CAMERA_STOP_TIMEOUT_S: Final = 5.0
#: the shortest window the CPU figure is averaged over (reads within it repeat the last)
CPU_WINDOW_S: Final = 1.0


class ProcessMeter:
    """CPU and resident memory of this process, for :meth:`LocalEngineControl.shards`.

    CPU is a percent of one core over the last window of at least :data:`CPU_WINDOW_S`
    (until the first window ends: since the process started), so that a scrape and a
    dashboard reading at once do not each see a window of a few milliseconds.

    >>> cpu, rss = ProcessMeter().read()
    >>> cpu >= 0.0 and rss > 0
    True
    """

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._lock = threading.Lock()
        self._at = time.monotonic()
        self._used = self._cpu_seconds()
        alive_s = max(time.time() - self._process.create_time(), 1e-3)
        self._percent = 100.0 * self._used / alive_s

    def _cpu_seconds(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def read(self) -> tuple[float, int]:
        """(CPU percent of one core, resident memory in bytes) now."""
        with self._lock:
            now, used = time.monotonic(), self._cpu_seconds()
            if now - self._at >= CPU_WINDOW_S:
                self._percent = 100.0 * max(used - self._used, 0.0) / (now - self._at)
                self._at, self._used = now, used
            percent = self._percent
        return percent, int(self._process.memory_info().rss)


class LocalEngineControl:
    """:class:`~feedtag.runtime.control.EngineControl` over a :class:`NodeEngine` in this
    process: the snapshot copies the engine's figures, so nothing live leaves it.

    >>> from feedtag.config import parse_config
    >>> control = LocalEngineControl(NodeEngine(parse_config("cameras: []")))
    >>> control.start(); control.snapshot().cameras, control.stop()
    ((), True)
    """

    def __init__(
        self, node: NodeEngine, *, alert_stats: Callable[[], AlertStats] | None = None
    ) -> None:
        self._node = node
        self._alert_stats = alert_stats
        self._meter = ProcessMeter()

    def start(self) -> None:
        self._node.start()

    def stop(self, deadline_s: float = DEFAULT_STOP_DEADLINE_S) -> bool:
        return self._node.stop(deadline_s)

    def cameras(self) -> list[CameraConfig]:
        return self._node.cameras()

    def add_camera(self, camera: CameraConfig) -> None:
        self._node.add_camera(camera)

    def change_camera(self, camera: CameraConfig) -> None:
        if not self._node.change_camera(camera, CAMERA_STOP_TIMEOUT_S):
            log.warning("camera %s: the old ingest thread did not end in time", camera.id)

    def remove_camera(self, camera_id: str) -> None:
        if not self._node.remove_camera(camera_id, CAMERA_STOP_TIMEOUT_S):
            log.warning("camera %s: its ingest thread did not end in time", camera_id)

    def restart_camera(self, camera_id: str) -> None:
        running = {camera.id: camera for camera in self._node.cameras()}
        if camera_id not in running:
            raise CameraNotFound(camera_id)
        self.change_camera(running[camera_id])

    def snapshot(self, camera_ids: Collection[str] | None = None) -> EngineSnapshot:
        node = self._node
        statuses = node.statuses(camera_ids)
        vision = node.vision_statuses(camera_ids)
        depths = node.queue_depths(camera_ids)
        counts = node.events.event_counts(camera_ids) if node.events is not None else {}
        media = node.events.media_cpu_s(camera_ids) if node.events is not None else {}
        cameras = tuple(
            CameraSnapshot(
                camera_id=status.camera_id,
                ingest=status,
                vision=vision.get(status.camera_id),
                queue_depth=depths.get(status.camera_id, 0),
                event_counts=dict(counts.get(status.camera_id, {})),
                media_cpu_s=media.get(status.camera_id, 0.0),
            )
            for status in statuses
        )
        store = node.store.writer.stats() if node.store is not None else None
        return EngineSnapshot(
            taken_at=time.time(), cameras=cameras, store=store,
            vision_stage=node.vision_stage_status(),
            alerts=None if self._alert_stats is None else self._alert_stats(),
        )  # fmt: skip

    def states(self) -> dict[str, CameraState]:
        return self._node.states()

    def camera_totals(self, camera_ids: Collection[str] | None = None) -> list[Metric]:
        return camera_totals(self.snapshot(camera_ids), sharded=False)  # one process: no shard

    def shards(self) -> list[ShardSnapshot]:
        """One shard: this process, on this machine, running every camera."""
        cpu, rss = self._meter.read()
        cameras = tuple(camera.id for camera in self._node.cameras())
        return [
            ShardSnapshot(
                shard_id=LOCAL_SHARD, node=socket.gethostname(), pid=os.getpid(),
                state=ShardState.RUNNING, cameras=cameras, cpu_percent=round(cpu, 1),
                rss_bytes=rss,
            )
        ]  # fmt: skip

    def subscribe(self, listener: EventListener) -> None:
        if self._node.store is not None:  # no store (detection off): no events, so no feed
            self._node.store.writer.listeners.append(listener)

    def unsubscribe(self, listener: EventListener) -> None:
        store = self._node.store
        if store is not None and listener in store.writer.listeners:
            store.writer.listeners.remove(listener)

    def want_thumbnail(self, camera_id: str) -> None:
        if self._node.store is not None:
            self._node.store.media.want_thumbnail(camera_id)
