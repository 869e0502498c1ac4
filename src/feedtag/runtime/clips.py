"""Event clips: when an event fires on a camera that keeps a packet ring, wait for the
post-roll, then remux pre-roll + post-roll from the ring into
``media/clips/<camera>/<day>/<event_id>.mp4``. Clips are raw media (people not covered).

At shutdown the clips still waiting for their post-roll are written with what the ring holds
(a shorter post-roll), within ``STOP_FLUSH_S``; only what does not fit in that time is lost,
and logged."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from feedtag.core import Event
from feedtag.errors import FeedtagError
from feedtag.ingest.ring import PacketRing, stream_time_at, write_clip
from feedtag.store.media import MediaStore

log = logging.getLogger(__name__)

PREROLL_S: Final = 5.0
POSTROLL_S: Final = 5.0
#: at shutdown, longest spent writing the clips still pending
STOP_FLUSH_S: Final = 5.0


@dataclass(order=True)
class _Pending:
    due: float
    order: int
    event: Event = field(compare=False)


class ClipWriter:
    """One thread that writes clips when their post-roll has arrived."""

    def __init__(
        self,
        media: MediaStore,
        ring_of: Callable[[str], PacketRing | None],
        preroll_s: float = PREROLL_S,
        postroll_s: float = POSTROLL_S,
    ) -> None:
        self.media = media
        self._ring_of = ring_of
        self.preroll_s, self.postroll_s = preroll_s, postroll_s
        self._pending: list[_Pending] = []
        self._order = itertools.count()
        self._condition = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="clips", daemon=True)
        self.written = 0
        self.failed = 0
        #: per camera, CPU nanoseconds spent writing its clips (remuxing from the ring)
        self._cpu_ns: Counter[str] = Counter()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, then write the pending clips with the post-roll there is."""
        with self._condition:
            self._stop = True
            self._condition.notify()
        self._thread.join(5)
        deadline = time.monotonic() + STOP_FLUSH_S
        with self._condition:
            pending = [heapq.heappop(self._pending) for _ in range(len(self._pending))]
        for index, item in enumerate(pending):
            if time.monotonic() > deadline:
                log.warning("shutdown: %d pending clip(s) not written", len(pending) - index)
                self.failed += len(pending) - index
                return
            self._write(item.event)

    def request(self, event: Event) -> bool:
        """Schedule the clip of ``event`` if its camera keeps a ring; False otherwise."""
        if self._ring_of(event.camera_id) is None:
            return False
        with self._condition:
            due = event.started_at + self.postroll_s
            heapq.heappush(self._pending, _Pending(due, next(self._order), event))
            self._condition.notify()
        return True

    def cpu_s(self) -> dict[str, float]:
        """Per camera, CPU seconds this thread spent writing its clips (part of the camera's
        media cost)."""
        with self._condition:
            return {camera_id: ns / 1e9 for camera_id, ns in self._cpu_ns.items()}

    def forget(self, camera_id: str) -> None:
        """A camera removed: its clip CPU is no longer reported."""
        with self._condition:
            self._cpu_ns.pop(camera_id, None)

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._stop and (not self._pending or self._pending[0].due > time.time()):
                    wait = self._pending[0].due - time.time() if self._pending else 1.0
                    self._condition.wait(max(0.05, min(wait, 1.0)))
                if self._stop:
                    return
                item = heapq.heappop(self._pending)
            self._write(item.event)

    def _write(self, event: Event) -> None:
        start = time.thread_time_ns()
        try:
            self._remux(event)
        finally:
            spent = time.thread_time_ns() - start
            with self._condition:
                self._cpu_ns[event.camera_id] += spent

    def _remux(self, event: Event) -> None:
        ring = self._ring_of(event.camera_id)
        packets = ring.snapshot() if ring is not None else []
        centre = stream_time_at(packets, event.started_at)
        if ring is None or ring.template is None or centre is None:
            self.failed += 1
            log.warning("camera %s: no packets for the clip of %s", event.camera_id, event.event_id)
            return
        path = self.media.event_path("clips", event.camera_id, event.event_id, event.started_at)
        try:
            write_clip(
                packets, ring.template, path, centre - self.preroll_s, centre + self.postroll_s
            )
        except (OSError, FeedtagError):
            self.failed += 1
            log.exception("camera %s: clip of %s failed", event.camera_id, event.event_id)
            return
        self.written += 1
