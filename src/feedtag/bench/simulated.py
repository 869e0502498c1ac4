"""Status-only simulated cameras, for measuring the Ray engine's control plane.

:class:`SimulatedCameras` is an :class:`~feedtag.runtime.control.EngineControl` that a shard
runs in place of its node engine (the ``engine`` seam of
:class:`~feedtag.runtime.ray_shard.ShardWorker`): each camera it is given reports an online
status and a snapshot like a real camera's, and produces no frames, opens no connection and
starts no thread. Ten thousand of them cost a shard a few megabytes, so one machine can show
what the coordinator, the store and the snapshots cost at that scale.

Simulated cameras are marked by their URL: the host is under ``.invalid`` (RFC 2606: a name
that can never resolve, see :func:`simulated_camera`). A simulated shard refuses any other
camera with :class:`~feedtag.errors.ConfigError`, so a benchmark pointed at a real catalog
fails instead of silently not running its cameras; a real shard given a simulated camera
tries to open it like any other and reports it offline.

Nothing in the config or the CLI reaches this module except ``feedtag bench control-plane``.

>>> from feedtag.config import parse_config
>>> shard = SimulatedCameras("shard-0", parse_config("cameras: []"))
>>> shard.start(); shard.add_camera(simulated_camera(7))
>>> [(c.camera_id, c.ingest.state.value) for c in shard.snapshot().cameras]
[('sim-000007', 'online')]
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Collection
from typing import Final

from prometheus_client.core import Metric

from feedtag.config.models import CameraConfig, FeedtagConfig
from feedtag.core import CameraState, CameraStatus, DecodeMode, IngestCounters
from feedtag.errors import CameraExists, CameraNotFound, ConfigError
from feedtag.runtime.camera_metrics import camera_totals
from feedtag.runtime.control import (
    DEFAULT_STOP_DEADLINE_S,
    CameraSnapshot,
    EngineSnapshot,
    EventListener,
    ShardSnapshot,
    ShardState,
    chosen,
)

#: the DNS suffix that marks a simulated camera's host (RFC 2606 reserves it: never resolves)
SIMULATED_HOST_SUFFIX: Final = ".invalid"
#: the reason a simulated camera's status gives
SIMULATED_REASON: Final = "simulated camera: status only, no frames"


def simulated_camera(index: int) -> CameraConfig:
    """Simulated camera number ``index``: id ``sim-NNNNNN``, a URL under ``.invalid``.

    >>> simulated_camera(3).url.host
    'sim-000003.invalid'
    """
    name = f"sim-{index:06d}"
    return CameraConfig.model_validate({"id": name, "url": f"rtsp://{name}.invalid/status"})


def is_simulated(camera: CameraConfig) -> bool:
    """Whether ``camera`` is a simulated camera (its host is under ``.invalid``)."""
    host = camera.url.host
    return host is not None and host.lower().endswith(SIMULATED_HOST_SUFFIX)


class SimulatedCameras:
    """A shard's engine of simulated cameras (a :data:`ShardEngineFactory`: called with the
    shard id and the config). Each camera's status ``since`` is the Unix time it was
    started on this shard, which the benchmark reads to time starts and moves."""

    def __init__(self, shard_id: str, config: FeedtagConfig) -> None:
        self.shard_id = shard_id
        self.config = config
        self._lock = threading.Lock()
        self._cameras: dict[str, tuple[CameraConfig, float]] = {}

    def start(self) -> None:
        """Nothing to start: simulated cameras have no threads."""

    def stop(self, deadline_s: float = DEFAULT_STOP_DEADLINE_S) -> bool:
        with self._lock:
            self._cameras = {}
        return True

    def cameras(self) -> list[CameraConfig]:
        with self._lock:
            return [camera for camera, _ in self._cameras.values()]

    def add_camera(self, camera: CameraConfig) -> None:
        if not is_simulated(camera):
            raise ConfigError(
                [("url", f"a simulated shard runs only hosts under {SIMULATED_HOST_SUFFIX}")],
                f"camera {camera.id}",
            )
        with self._lock:
            if camera.id in self._cameras:
                raise CameraExists(camera.id)
            self._cameras[camera.id] = (camera, time.time())

    def change_camera(self, camera: CameraConfig) -> None:
        self.remove_camera(camera.id)
        self.add_camera(camera)

    def remove_camera(self, camera_id: str) -> None:
        with self._lock:
            if self._cameras.pop(camera_id, None) is None:
                raise CameraNotFound(camera_id)

    def restart_camera(self, camera_id: str) -> None:
        with self._lock:
            entry = self._cameras.get(camera_id)
            if entry is None:
                raise CameraNotFound(camera_id)
            self._cameras[camera_id] = (entry[0], time.time())

    def snapshot(self, camera_ids: Collection[str] | None = None) -> EngineSnapshot:
        with self._lock:
            running = [entry for _, entry in chosen(self._cameras, camera_ids)]
        cameras = tuple(
            CameraSnapshot(
                camera_id=camera.id,
                ingest=_status(camera, since),
                vision=None,
                queue_depth=0,
                event_counts={},
            )
            for camera, since in running
        )
        return EngineSnapshot(taken_at=time.time(), cameras=cameras, store=None)

    def camera_totals(self, camera_ids: Collection[str] | None = None) -> list[Metric]:
        return camera_totals(self.snapshot(camera_ids), sharded=False)

    def states(self) -> dict[str, CameraState]:
        with self._lock:
            return dict.fromkeys(self._cameras, CameraState.ONLINE)

    def shards(self) -> list[ShardSnapshot]:
        """This shard, running its simulated cameras (no CPU or memory figures: it has no
        process of its own to measure apart from the shard actor)."""
        with self._lock:
            cameras = tuple(self._cameras)
        return [
            ShardSnapshot(self.shard_id, socket.gethostname(), os.getpid(), ShardState.RUNNING,
                          cameras, None, None)
        ]  # fmt: skip

    def subscribe(self, listener: EventListener) -> None:
        """Simulated cameras store no events: nothing is ever sent."""

    def unsubscribe(self, listener: EventListener) -> None:
        """Nothing is subscribed."""

    def want_thumbnail(self, camera_id: str) -> None:
        """Simulated cameras have no thumbnails."""


def _status(camera: CameraConfig, since: float) -> CameraStatus:
    return CameraStatus(
        camera_id=camera.id, url=camera.url.masked(), state=CameraState.ONLINE,
        reason=SIMULATED_REASON, since=since, mode=DecodeMode.MEASURING,
        keyframe_interval_s=None, decoded_fps=0.0, analysed_fps=0.0, codec=None, width=None,
        height=None, counters=IngestCounters(),
    )  # fmt: skip
