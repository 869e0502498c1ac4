"""The bounded hand-off between a camera's ingest thread and whoever analyses its frames.

When analysis falls behind, the *oldest decoded frame* is dropped: the newest frame is the
one worth analysing, and compressed packets are never dropped (that would corrupt the
decoder's references). Drops are counted by reason.
"""

from __future__ import annotations

import threading
from collections import Counter, deque

from feedtag.core import Frame

QUEUE_FULL = "queue_full"


class FrameQueue:
    """A bounded drop-oldest queue of frames for one camera.

    ``ready`` is an event shared by many queues: it is set on every put, so one consumer can
    wait for "any camera has a frame".

    >>> import numpy as np
    >>> q = FrameQueue(maxsize=1)
    >>> for i in range(3): q.put(Frame("c", i, i, 0.0, np.zeros((2, 2, 3), np.uint8)))
    >>> q.get_nowait().index, dict(q.dropped)
    (2, {'queue_full': 2})
    """

    def __init__(
        self, maxsize: int, ready: threading.Event | None = None, *, lossless: bool = False
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"expected maxsize >= 1, got {maxsize}")
        self._items: deque[Frame] = deque()
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._ready = ready or threading.Event()
        #: a file analysed as fast as the machine allows waits instead of dropping
        self.lossless = lossless
        self.dropped: Counter[str] = Counter()

    def put(self, frame: Frame, stop: threading.Event | None = None) -> None:
        """Add a frame. When full, drop the oldest; a ``lossless`` queue waits for room
        instead (checking ``stop`` every 0.1 s)."""
        with self._lock:
            while self.lossless and len(self._items) >= self._maxsize:
                if stop is not None and stop.is_set():
                    return
                self._not_full.wait(0.1)
            if len(self._items) >= self._maxsize:
                self._items.popleft()
                self.dropped[QUEUE_FULL] += 1
            self._items.append(frame)
        self._ready.set()

    def get_nowait(self) -> Frame | None:
        with self._lock:
            if not self._items:
                return None
            self._not_full.notify()
            return self._items.popleft()

    def get(self, timeout: float) -> Frame | None:
        """The oldest frame, waiting at most ``timeout`` seconds; None if there was none."""
        frame = self.get_nowait()
        if frame is not None:
            return frame
        self._ready.wait(timeout)
        self._ready.clear()
        return self.get_nowait()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
