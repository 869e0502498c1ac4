"""One thread that encodes and writes snapshots and thumbnails, off the detection threads.

Covering people and JPEG-encoding a frame takes a few milliseconds; done inline, a burst of
events would hold up the detection worker that delivered them, and with it every camera. The
event is stored at once with its snapshot's planned path, and the file follows a few
milliseconds later.

Jobs queue in a bounded queue. An essential job (an event's snapshot) is never dropped: when
the queue is full it runs in the caller's thread instead, which slows the caller rather than
losing the picture. A thumbnail is not essential: when the queue is full it is skipped and
counted, since the next one comes a few seconds later.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Final

log = logging.getLogger(__name__)

Job = Callable[[], None]
DEFAULT_QUEUE_SIZE: Final = 256
_STOP: Final = object()


class MediaWorker:
    """Runs media jobs in order on one thread; see the module docstring for overload."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="media", daemon=True)
        self._lock = threading.Lock()
        self._closed = False
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

    def close(self, timeout: float = 10.0) -> bool:
        """Finish the queued jobs and stop; True if that took less than ``timeout``."""
        with self._lock:
            if self._closed:
                return not self._thread.is_alive()
            self._closed = True
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
