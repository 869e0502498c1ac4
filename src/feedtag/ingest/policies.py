"""Small policy objects the ingest loop asks: when to retry, whether the restart budget is
spent, whether the stream has stalled, how fast frames arrive. Each takes an injected
clock so that tests run them without sleeping.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]


class Backoff:
    """Capped exponential backoff with jitter.

    >>> b = Backoff(initial_s=1, max_s=8, multiplier=2, jitter=0, rng=random.Random(1))
    >>> [b.next_delay() for _ in range(5)]
    [1.0, 2.0, 4.0, 8.0, 8.0]
    >>> b.reset(); b.next_delay()
    1.0
    """

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        multiplier: float = 2.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if initial_s <= 0 or max_s < initial_s or multiplier < 1 or not 0 <= jitter <= 1:
            raise ValueError(
                f"expected 0 < initial_s <= max_s, multiplier >= 1, 0 <= jitter <= 1, got "
                f"{initial_s=}, {max_s=}, {multiplier=}, {jitter=}"
            )
        self._initial = initial_s
        self._max = max_s
        self._multiplier = multiplier
        self._jitter = jitter
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._failures = 0

    def next_delay(self) -> float:
        """The wait before the next attempt; each call counts one more failure."""
        base = min(self._max, self._initial * self._multiplier**self._failures)
        self._failures += 1
        if self._jitter:
            base *= 1 + self._rng.uniform(-self._jitter, self._jitter)
        return float(min(self._max, max(0.0, base)))

    def reset(self) -> None:
        """Call after a success: the next failure waits ``initial_s`` again."""
        self._failures = 0


class RestartBudget:
    """At most ``limit`` restarts within a sliding ``window_s``.

    >>> now = [0.0]
    >>> budget = RestartBudget(limit=2, window_s=10, clock=lambda: now[0])
    >>> budget.try_spend(), budget.try_spend(), budget.try_spend()
    (True, True, False)
    >>> now[0] = 10.5; budget.try_spend()
    True
    """

    def __init__(self, limit: int, window_s: float, clock: Clock = time.monotonic) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError(f"expected limit >= 1 and window_s > 0, got {limit=}, {window_s=}")
        self._limit = limit
        self._window = window_s
        self._clock = clock
        self._spent: deque[float] = deque()

    def try_spend(self) -> bool:
        """Record one restart if the budget allows it; False when it is spent."""
        now = self._clock()
        while self._spent and now - self._spent[0] >= self._window:
            self._spent.popleft()
        if len(self._spent) >= self._limit:
            return False
        self._spent.append(now)
        return True


class StallDetector:
    """ "No decoded frame for ``timeout_s``" is a stall, however many bytes still arrive.

    >>> now = [0.0]
    >>> stall = StallDetector(timeout_s=5, clock=lambda: now[0])
    >>> stall.start(); now[0] = 4.9; stall.is_stalled()
    False
    >>> now[0] = 5.1; stall.is_stalled()
    True
    >>> stall.frame_decoded(); stall.is_stalled()
    False
    """

    def __init__(self, timeout_s: float, clock: Clock = time.monotonic) -> None:
        if timeout_s <= 0:
            raise ValueError(f"expected timeout_s > 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self._clock = clock
        self._last = clock()

    def start(self) -> None:
        """Start the clock, at (re)connect."""
        self._last = self._clock()

    def frame_decoded(self) -> None:
        self._last = self._clock()

    def silent_for(self) -> float:
        return self._clock() - self._last

    def is_stalled(self) -> bool:
        return self.silent_for() > self.timeout_s


class RateMeter:
    """Events per second over a sliding window.

    >>> now = [0.0]
    >>> meter = RateMeter(window_s=2, clock=lambda: now[0])
    >>> for t in (0.0, 0.5, 1.0, 1.5): now[0] = t; meter.tick()
    >>> now[0] = 2.0; meter.rate()
    2.0
    """

    def __init__(self, window_s: float = 5.0, clock: Clock = time.monotonic) -> None:
        self._window = window_s
        self._clock = clock
        self._times: deque[float] = deque()
        self._started = clock()

    def tick(self) -> None:
        now = self._clock()
        self._times.append(now)
        self._trim(now)

    def rate(self) -> float:
        now = self._clock()
        self._trim(now)
        span = min(self._window, now - self._started)
        if span <= 0:
            return 0.0
        return len(self._times) / span

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self._window:
            self._times.popleft()
