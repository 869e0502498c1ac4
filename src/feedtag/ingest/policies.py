"""Small policy objects the ingest loop asks: when to retry, whether the restart budget is
spent, whether the stream has stalled, how fast frames arrive, how long to leave a source
unread. Each takes an injected clock (or stream times) so that tests run them without
sleeping.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import Final

Clock = Callable[[], float]

#: a hold ends this long before the keyframe it waits for is due (timestamp jitter, and the
#: packets that arrived meanwhile take a moment to read)
HOLD_MARGIN_S: Final = 0.15
#: a hold is never longer than the source takes to send this much: what waits meanwhile in
#: the socket's receive buffer (a UDP socket's default is 208 KiB, overhead included)
HOLD_MAX_BYTES: Final = 96_000
#: shorter holds are not worth a sleep
HOLD_MIN_S: Final = 0.05
#: nor are longer ones worth the risk of a server or a network box taking a silent
#: connection for a dead one: under one wake a second saves nothing more that shows
HOLD_MAX_S: Final = 2.0
#: the groups of pictures whose median is a camera's packet-size baseline: the last few,
#: so that a slow lighting drift moves the baseline with it
PACKET_GATE_HISTORY: Final = 3
#: a group of pictures whose non-key bytes per second exceed the baseline by this factor
#: shows change. On the quiet benchmark feed (sensor noise, lighting drift of 8% over 40 s)
#: the groups stay within 1.33x of the median of the three before; people walking into 8.5%
#: of that view (``bench/footage.py: waking_h264``) raise the first two groups to 6x.
PACKET_GATE_RATIO: Final = 1.5
#: a keyframe whose size differs from the median of the last ones by more than this share
#: shows change too (lights on or off, a covered or moved camera, a stream gone dark)
PACKET_GATE_KEYFRAME_CHANGE: Final = 0.2
#: packet sizes are believed only while the encoder spends little between keyframes: the
#: group's mean non-key frame at most this share of the median keyframe. An encoder that
#: holds its bitrate constant (CBR) spends the unused budget on a still scene's noise and
#: hides change in the sizes; measured on the quiet-then-busy benchmark feed re-encoded by
#: x264 (640 x 360, a keyframe a second): still groups 0.2-2.1% under CRF, capped VBR and
#: average-bitrate control, busy ones 1.1-2.5%, and 4.2-14% under CBR at 200 kbit/s to
#: 1 Mbit/s; at 400 kbit/s CBR the people walking in left seven groups the same size.
PACKET_GATE_MAX_P_SHARE: Final = 0.03


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


class ReadHold:
    """How long a camera may leave its source unread while it decodes keyframes only.

    Between two keyframes it decodes, a camera reads packets only to skip them, and every
    read that has to wait for the network (or, for a file read as a live feed, for its
    timestamp) wakes the camera's thread: about 55 µs of CPU a packet on the machine in
    docs/performance.md, 1.3 ms per feed-second at 25 fps, more than demuxing them. Once a
    read had to wait (the camera has caught up with its source), the camera may instead sleep
    until ``margin_s`` before the next keyframe it decodes and then read what arrived
    meanwhile in one go, from the socket's buffer: one wake for many packets, and the
    keyframe is still read when it arrives. A hold lasts at most as long as the source takes
    to send ``max_bytes`` (its byte rate is measured over each group of pictures), so that the
    receive buffer never overflows, and never longer than ``HOLD_MAX_S``.

    >>> hold = ReadHold()
    >>> for t in (0.0, 0.04, 0.08, 1.0): hold.observe(t, 12_000, t in (0.0, 1.0))
    >>> hold.byte_rate
    36000.0
    >>> round(hold.hold_s(1.0, next_keyframe_s=2.0), 2)  # until 0.15 s before it
    0.85
    >>> hold.hold_s(1.9, next_keyframe_s=2.0)  # too close to be worth a sleep
    0.0
    >>> hold.hold_s(1.0, next_keyframe_s=10.0)  # a long way off: 2 s at most
    2.0
    >>> ReadHold(max_bytes=18_000).hold_s(1.0, 2.0)  # unmeasured: no hold
    0.0
    """

    def __init__(
        self,
        margin_s: float = HOLD_MARGIN_S,
        max_bytes: int = HOLD_MAX_BYTES,
        min_s: float = HOLD_MIN_S,
    ) -> None:
        self.margin_s = margin_s
        self.max_bytes = max_bytes
        self.min_s = min_s
        #: bytes a second over the last whole group of pictures (None until one was seen)
        self.byte_rate: float | None = None
        self._keyframe_s: float | None = None
        self._bytes = 0

    def observe(self, t_s: float | None, size: int, is_keyframe: bool) -> None:
        """Every packet read, before it is decoded or skipped."""
        if is_keyframe and t_s is not None:
            if self._keyframe_s is not None and t_s > self._keyframe_s:
                self.byte_rate = self._bytes / (t_s - self._keyframe_s)
            self._keyframe_s, self._bytes = t_s, 0
        self._bytes += size

    def hold_s(self, now_s: float, next_keyframe_s: float | None) -> float:
        """Seconds to leave the source unread after the packet at stream time ``now_s``;
        0 when the next keyframe is unknown or too close, or the byte rate unmeasured."""
        if next_keyframe_s is None or self.byte_rate is None:
            return 0.0
        hold = min(next_keyframe_s - now_s - self.margin_s, HOLD_MAX_S)
        if self.byte_rate > 0:
            hold = min(hold, self.max_bytes / self.byte_rate)
        return hold if hold >= self.min_s else 0.0


class PacketGate:
    """Whether a camera's compressed stream shows its scene unchanged since the last frame
    it decoded, from packet sizes alone, before anything is decoded.

    An encoder spends few bits on what did not change: the quiet benchmark feed's P-frames
    are 58 bytes on average, busy vtest's 526, bikes' 1570 (640 x 360, CRF 26). At each
    keyframe the group of pictures that just ended is compared with the camera's recent ones
    (the last ``history``): its non-key bytes per second above ``ratio`` times their median,
    or the keyframe further than ``keyframe_change`` from their median keyframe size, is a
    change. So is a group whose mean non-key frame is more than ``max_p_share`` of that
    median keyframe, or that has no non-key frames: an encoder that holds its bitrate
    constant whatever the scene (CBR) fills a still scene's frames with noise, and an
    all-intra stream says nothing between keyframes, so neither is ever called unchanged.
    :attr:`unchanged` holds while no group since :meth:`decoded` was one. The caller also
    checks the gate against what the detector finds
    (:meth:`~feedtag.ingest.rate.AdaptiveRate.checks_packet_gate`).

    Written by hand: it is a running median of three numbers, and no video library judges a
    stream by its packet sizes.

    >>> gate = PacketGate()
    >>> def second(t, p_frames):  # 24 P-frames of p_frames bytes, then a keyframe at t + 1
    ...     for _ in range(24): gate.observe(t + 0.5, p_frames, False)
    ...     gate.observe(t + 1, 20_000, True)
    ...     return gate.unchanged
    >>> gate.observe(0.0, 20_000, True)
    >>> [second(t, 60) for t in range(4)]  # three groups make the baseline
    [False, False, False, False]
    >>> gate.decoded(); second(4, 60), second(5, 200), second(6, 60)
    (True, False, False)
    >>> gate.decoded(); second(7, 60)  # the median of the last three is still 60 bytes'
    True
    """

    def __init__(
        self,
        *,
        history: int = PACKET_GATE_HISTORY,
        ratio: float = PACKET_GATE_RATIO,
        keyframe_change: float = PACKET_GATE_KEYFRAME_CHANGE,
        max_p_share: float = PACKET_GATE_MAX_P_SHARE,
    ) -> None:
        if history < 1:
            raise ValueError(f"expected history >= 1, got {history}")
        self.ratio = ratio
        self.keyframe_change = keyframe_change
        self.max_p_share = max_p_share
        self._rates: deque[float] = deque(maxlen=history)
        self._keyframes: deque[int] = deque(maxlen=history)
        self._start_s: float | None = None
        self._bytes = 0
        self._frames = 0  # non-key frames since the last keyframe
        self._believed: bool | None = None
        self._changed = True  # nothing is known before the first baseline

    @property
    def believed(self) -> bool | None:
        """Whether the last group of pictures was one whose sizes are believed (non-key
        frames small against the keyframe); None until the baseline is built."""
        return self._believed

    @property
    def unchanged(self) -> bool:
        """Whether every group of pictures since :meth:`decoded` looked like the ones before."""
        return not self._changed

    def decoded(self) -> None:
        """The caller decoded the last keyframe: change is judged afresh from here."""
        self._changed = False

    def observe(self, t_s: float | None, size: int, is_keyframe: bool) -> None:
        """Every packet read, before it is decoded or skipped."""
        if not is_keyframe:
            self._bytes += size
            self._frames += 1
            return
        start, same = self._start_s, False
        if t_s is not None and start is not None and t_s > start:
            rate = self._bytes / (t_s - start)
            if len(self._rates) == self._rates.maxlen:
                keyframe = statistics.median(self._keyframes)
                believed = self._frames > 0 and (
                    self._bytes <= self.max_p_share * keyframe * self._frames
                )
                self._believed = believed
                same = (
                    believed
                    and rate <= self.ratio * statistics.median(self._rates)
                    and abs(size - keyframe) <= self.keyframe_change * keyframe
                )
            self._rates.append(rate)
        self._keyframes.append(size)
        self._changed = self._changed or not same
        self._start_s, self._bytes, self._frames = t_s, 0, 0


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
