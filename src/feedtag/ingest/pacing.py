"""Stream time and live pacing.

A local file read as a camera is paced to its own timestamps, as ``ffmpeg -re`` does, so
that demos and benchmarks see the load of a live feed. A looping file continues its
timestamps across loops, so stream time only ever grows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

#: when pacing has fallen this far behind (an overloaded machine), re-anchor instead of
#: bursting to catch up
MAX_LAG_S: Final = 1.0


class Pacer:
    """Maps raw stream timestamps to continuous stream time; waits for wall time if realtime.

    >>> pacer = Pacer(threading.Event(), realtime=False)
    >>> [pacer.stream_time(t) for t in (0.0, 0.04, 0.08)]
    [0.0, 0.04, 0.08]
    >>> pacer.next_loop(); round(pacer.stream_time(0.0), 2)
    0.12

    A fixed timeline whose start is 10 s past does not wait for the first 10 s:

    >>> late = Pacer(threading.Event(), realtime=True, start_in_s=-10.0)
    >>> late.wait_until(9.5)
    True
    """

    def __init__(
        self,
        stop: threading.Event,
        *,
        realtime: bool,
        clock: Callable[[], float] = time.monotonic,
        start_in_s: float | None = None,
    ) -> None:
        """``start_in_s``: a fixed timeline, stream time 0 is due this many seconds from
        now on ``clock`` (negative: in the past). Frames already due are not waited for
        and pacing is never re-anchored: a late start catches up as fast as it can."""
        self._stop = stop
        self.realtime = realtime
        self._clock = clock
        self._offset = 0.0
        self._last: float | None = None
        self._step = 0.0
        self._loop_pending = False
        self._fixed = start_in_s is not None
        # (clock, stream time)
        self._anchor = None if start_in_s is None else (clock() + start_in_s, 0.0)
        self._held_to = float("-inf")  # packets up to this stream time may be read late

    def stream_time(self, raw_s: float) -> float:
        if self._loop_pending:
            end = self._last if self._last is not None else 0.0
            self._offset = end + self._step - raw_s
            self._loop_pending = False
        t_s = raw_s + self._offset
        if self._last is not None and t_s > self._last:
            self._step = t_s - self._last
        if self._last is None or t_s > self._last:
            self._last = t_s
        return t_s

    def now_stream(self) -> float:
        return self._last if self._last is not None else 0.0

    def wait_until(self, t_s: float) -> bool:
        """Sleep until stream time ``t_s`` is due; False if asked to stop meanwhile."""
        if not self.realtime:
            return not self._stop.is_set()
        now = self._clock()
        if self._anchor is None:
            self._anchor = (now, t_s)
        delay = self._anchor[0] + (t_s - self._anchor[1]) - now
        if delay < -MAX_LAG_S and not self._fixed and t_s > self._held_to:
            self._anchor = (now, t_s)
            delay = 0.0
        if delay > 0:
            return not self._stop.wait(delay)
        return not self._stop.is_set()

    def hold_until(self, t_s: float) -> bool:
        """Sleep until stream time ``t_s`` is due (False if asked to stop meanwhile), and read
        the packets before it late without taking that for an overloaded machine: a camera
        that leaves its source unread for a while (:class:`~feedtag.ingest.policies.ReadHold`)
        reads them in one go afterwards, as from a live camera's socket.

        >>> now = [0.0]
        >>> pacer = Pacer(threading.Event(), realtime=True, clock=lambda: now[0])
        >>> pacer.wait_until(0.0)
        True
        >>> now[0] = 2.0  # held from stream time 0 on, now 2.0 s later
        >>> pacer.hold_until(1.9)
        True
        >>> pacer.wait_until(0.04), pacer._anchor  # 1.96 s late, not re-anchored
        (True, (0.0, 0.0))
        """
        self._held_to = max(self._held_to, t_s)
        return self.wait_until(t_s)

    def next_loop(self) -> None:
        """Called at every (re)open: the next raw timestamps continue stream time."""
        self._loop_pending = True
