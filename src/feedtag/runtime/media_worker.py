"""One thread that encodes and writes snapshots and thumbnails, off the detection threads.

Covering people and JPEG-encoding a frame takes a few milliseconds; done inline, a burst of
events would hold up the detection worker that delivered them, and with it every camera. The
event is stored at once with its snapshot's planned path, and the file follows a few
milliseconds later.

Jobs queue in a bounded queue. An essential job (an event's snapshot) is never dropped: when
the queue is full it runs in the caller's thread instead, which slows the caller rather than
losing the picture. A thumbnail is not essential: when the queue is full it is skipped and
counted, since the next one comes a few seconds later.

Shutdown is bounded: :meth:`MediaWorker.close` lets the queued jobs run as usual for
``careful_s``, then :meth:`MediaWorker.hurrying` turns true, and the jobs still queued take
their cheap path (a snapshot is blurred whole instead of waiting for a person check of its
own, a thumbnail is skipped). A hundred busy cameras stopping leave dozens of snapshots
queued at ~90 ms of person check each; blurred whole they take a few milliseconds, and
nobody in them is left uncovered.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Final

log = logging.getLogger(__name__)

Job = Callable[[], None]
DEFAULT_QUEUE_SIZE: Final = 256
#: how long queued jobs run as usual once the worker is closing, before they hurry
CAREFUL_S: Final = 1.5
_STOP: Final = object()


class MediaWorker:
    """Runs media jobs in order on one thread; see the module docstring for overload."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="media", daemon=True)
        self._lock = threading.Lock()
        self._closed = False
        self._hurry_at = float("inf")
        self.done = 0
        self.inline = 0  # essential jobs run in the caller's thread because the queue was full
        self.skipped = 0  # non-essential jobs skipped because the queue was full
        self._thread.start()

    def submit(self, job: Job, *, essential: bool) -> None:
        """Run ``job`` on the media thread (see the module docstring when it is busy)."""
        with self._lock:
            closed = self._closed
        if not closed:
            try:
                self._queue.put_nowait(job)
                return
            except queue.Full:
                pass
        if essential:
            self._count("inline")
            self._call(job)
        else:
            self._count("skipped")

    def hurrying(self) -> bool:
        """Whether the worker is closing and past its careful time: a job should take its
        cheap path (see the module docstring)."""
        return time.monotonic() >= self._hurry_at

    def close(self, timeout: float = 10.0, careful_s: float = CAREFUL_S) -> bool:
        """Finish the queued jobs (hurrying after ``careful_s``) and stop; True if that
        took less than ``timeout``."""
        with self._lock:
            if self._closed:
                return not self._thread.is_alive()
            self._closed = True
            self._hurry_at = time.monotonic() + careful_s
        self._queue.put(_STOP)  # blocks only while the queue is full, i.e. jobs are running
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("media worker did not finish its jobs within %s s", timeout)
            return False
        return True

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            self._call(job)  # type: ignore[arg-type]

    def _call(self, job: Job) -> None:
        try:
            job()
        except Exception:
            log.exception("a media job failed")
        self._count("done")

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)
