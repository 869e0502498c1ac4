"""The post-processing stage: tracked results to rules, media, store and live stream.

The vision stage hands every result (a frame and its tracked detections) to
:class:`PostProcessStage`, a bounded queue served by one thread that calls the result handler
(:class:`~feedtag.runtime.events.EventPipeline`). Rules, snapshots and store writes therefore
never run in a detector worker's thread: a slow rule or a store that stalls holds this thread,
not the detectors that every camera shares.

When the queue is full, :meth:`PostProcessStage.put` blocks its caller (a detector worker, or
the engine's consumer thread for a gated frame) for at most ``put_timeout_s``, then drops
the result and counts it. Blocking first, because a result is small but carries events
(a line crossing seen in one result only is lost with it): a brief stall of the handler is
absorbed by back-pressure, and the frames that pile up meanwhile are dropped cheaply and
counted upstream, before the detector spends time on them (``detector_busy``). The bound on
the wait keeps a handler that is stuck from stopping every camera's analysis for longer; past
it results are dropped, each one counted (``dropped`` in the status and ``/metrics``).

Each item holds its frame (snapshots and thumbnails need the image), so the queue's bound is
also a memory bound: :data:`DEFAULT_CAPACITY` 640x360 frames are about 44 MB.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from feedtag.core import Detections, Frame

log = logging.getLogger(__name__)

ResultHandler = Callable[[Frame, Detections], None]

DEFAULT_CAPACITY: Final = 64
#: the longest a producer waits for room in a full queue before the result is dropped
DEFAULT_PUT_TIMEOUT_S: Final = 0.5
#: the longest the stage's thread sleeps before it looks at the stop flag again
POLL_S: Final = 0.2


@dataclass(frozen=True, slots=True)
class PostProcessStats:
    depth: int  # results waiting now
    capacity: int
    handled: int  # results the handler was called with
    dropped: int  # results dropped: queue full past the wait, or arriving after stop


class PostProcessStage:
    """A bounded queue and one thread that feeds results to ``handler`` in order.

    >>> seen = []
    >>> stage = PostProcessStage(lambda frame, detections: seen.append(frame))
    >>> stage.start(); stage.put("frame", Detections.empty()); stage.stop()
    True
    True
    >>> seen
    ['frame']
    """

    def __init__(
        self,
        handler: ResultHandler,
        capacity: int = DEFAULT_CAPACITY,
        put_timeout_s: float = DEFAULT_PUT_TIMEOUT_S,
        name: str = "postprocess",
    ) -> None:
        if capacity < 1 or put_timeout_s < 0:
            raise ValueError(f"expected capacity >= 1, put_timeout_s >= 0, got {capacity=}, "
                             f"{put_timeout_s=}")  # fmt: skip
        self._handler = handler
        self._capacity = capacity
        self._put_timeout_s = put_timeout_s
        self._queue: queue.Queue[tuple[Frame, Detections]] = queue.Queue(capacity)
        self._closing = threading.Event()
        self._closed = False
        self._lock = threading.Lock()
        self._handled = 0
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, frame: Frame, detections: Detections) -> bool:
        """Queue one result; False when it was dropped (and counted)."""
        if not self._closed:
            try:
                self._queue.put((frame, detections), timeout=self._put_timeout_s)
            except queue.Full:
                log.warning(
                    "camera %s: post-processing queue full for %.1f s; result dropped",
                    frame.camera_id, self._put_timeout_s,
                )  # fmt: skip
            else:
                if self._closed and not self._thread.is_alive():
                    self._discard_queued()  # it raced with stop(): the drain has passed
                return True
        with self._lock:
            self._dropped += 1
        return False

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Stop taking results, hand the handler what is queued, and return within
        ``timeout_s``; True if everything queued was handled. What the handler could not
        take in time is counted as dropped."""
        self._closed = True  # results that arrive from now on are counted, not queued
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        left = self._discard_queued()
        return left == 0 and not self._thread.is_alive()

    def _discard_queued(self) -> int:
        left = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            left += 1
        if left:
            log.warning("post-processing: %d result(s) not handled by stop; dropped", left)
            with self._lock:
                self._dropped += left
        return left

    def stats(self) -> PostProcessStats:
        with self._lock:
            handled, dropped = self._handled, self._dropped
        return PostProcessStats(self._queue.qsize(), self._capacity, handled, dropped)

    def _run(self) -> None:
        while True:
            try:
                frame, detections = self._queue.get(timeout=POLL_S)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            try:
                self._handler(frame, detections)
            except Exception:
                log.exception("camera %s: result handler failed", frame.camera_id)
            with self._lock:
                self._handled += 1
