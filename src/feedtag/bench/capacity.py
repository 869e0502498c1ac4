"""Whether a benchmark run kept up, and the capacity found by searching over feed counts.

A feeds-per-core figure means something only for a run whose detector kept up: CPU per
feed-second of a saturated run is the machine's whole CPU divided by however many feeds were
asked for, so it grows with the feed count while frames are silently dropped. A run *keeps
up* when it handled (detected, or carried forward by the gate) at least
:data:`MIN_HANDLED_FRACTION` of the frames due for analysis in the window, its p99
frame-to-result latency is under :data:`MAX_P99_LATENCY_S`, and its ingest produced the
frames the feeds' analysis rate asks for (a decoder that falls behind live time produces
fewer frames, not late ones).

>>> judge(ThroughputCounts(feeds=10, wall_s=10.0, cpu_s=5.0, expected_fps=10.0, due=100,
...       handled=100, dropped=0), [0.1] * 100).feeds_per_core
20.0
>>> judge(ThroughputCounts(feeds=10, wall_s=10.0, cpu_s=5.0, expected_fps=10.0, due=100,
...       handled=90, dropped=10), [0.1] * 90).saturated
True
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final, Protocol

import numpy as np

from feedtag.core import Detections, Frame

#: share of the due frames a run must handle to count as keeping up
MIN_HANDLED_FRACTION: Final = 0.99
#: p99 frame-to-result latency bound of a run that keeps up (seconds)
MAX_P99_LATENCY_S: Final = 2.0
#: share of the expected analysed frames the ingest must produce (a live decoder that falls
#: behind produces fewer); below 1 for the keyframes that straddle the window's edges
MIN_INGEST_FRACTION: Final = 0.95
#: Feeds start this far apart in all, evenly: one keyframe interval of the benchmark footage.
#: Real cameras' keyframes fall anywhere in the second; feeds of one clip started together
#: deliver theirs in step, which hands the detector full batches that no real site gives it
#: (16 W1 feeds in step: batches of 7.8 frames; spread: 1.1 at 0.05 s of batch wait).
STAGGER_S: Final = 1.0
#: results kept by a latency recorder (a bounded reservoir: the newest win)
LATENCY_SAMPLES: Final = 200_000


@dataclass(frozen=True, slots=True)
class ThroughputCounts:
    """What one measured window saw. ``due`` counts the frames handed to analysis whose
    frame time is in the window; ``handled`` those of them whose result reached
    post-processing (detected + gated); ``dropped`` frames dropped before detection (ingest
    queue drops + detector_busy drops)."""

    feeds: int
    wall_s: float
    cpu_s: float
    expected_fps: float
    due: int
    handled: int
    dropped: int


@dataclass(frozen=True, slots=True)
class Capacity:
    """The capacity fields every capacity benchmark reports."""

    cpu_s_per_feed_s: float
    due_fps: float
    detected_fps: float
    dropped_fps: float
    handled_fraction: float
    p99_latency_s: float | None
    saturated: bool
    #: None unless the run kept up
    feeds_per_core: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(samples: list[float], q: float) -> float | None:
    """The ``q`` percentile of ``samples`` (None when there are none)."""
    return float(np.percentile(samples, q)) if samples else None


def judge(counts: ThroughputCounts, latencies_s: list[float]) -> Capacity:
    """The capacity fields of one run; feeds per core only when it kept up."""
    wall = max(counts.wall_s, 1e-9)
    cpu_per_feed_s = counts.cpu_s / (counts.feeds * wall)
    p99 = percentile(latencies_s, 99)
    handled_fraction = counts.handled / counts.due if counts.due else 0.0
    ingest_fraction = counts.due / (counts.expected_fps * wall) if counts.expected_fps else 1.0
    kept_up = (
        counts.due > 0
        and handled_fraction >= MIN_HANDLED_FRACTION
        and p99 is not None
        and p99 < MAX_P99_LATENCY_S
        and ingest_fraction >= MIN_INGEST_FRACTION
    )
    return Capacity(
        cpu_s_per_feed_s=round(cpu_per_feed_s, 6),
        due_fps=round(counts.due / wall, 2),
        detected_fps=round(counts.handled / wall, 2),
        dropped_fps=round(counts.dropped / wall, 2),
        handled_fraction=round(handled_fraction, 4),
        p99_latency_s=None if p99 is None else round(p99, 3),
        saturated=not kept_up,
        feeds_per_core=round(1 / cpu_per_feed_s, 1) if kept_up and cpu_per_feed_s > 0 else None,
    )


class ResultRecorder:
    """Frame-to-result latency and handled frames, by frame time, for one engine.

    Wrap the vision stage's result handler with :meth:`wrap`: it runs in the post-processing
    thread, so the latency is from the frame's wall time (when it was decoded) to when its
    result reaches post-processing, including the ingest queue and the detector's batch wait.
    A bounded reservoir (the newest :data:`LATENCY_SAMPLES` results) keeps memory fixed.
    """

    def __init__(self, clock: Callable[[], float] = time.time, *, marks_due: bool = False) -> None:
        self._clock = clock
        #: whether the runner marks each frame due for detection (:meth:`due`); otherwise
        #: the due frames come from the ingest counters
        self.marks_due = marks_due
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, float]] = deque(maxlen=LATENCY_SAMPLES)
        self._due: deque[float] = deque(maxlen=LATENCY_SAMPLES)

    def due(self, frame_time: float) -> None:
        """A frame of ``frame_time`` is due for detection."""
        with self._lock:
            self._due.append(frame_time)

    def due_in(self, start: float, end: float) -> int:
        """Frames marked due whose time is in ``[start, end)``."""
        with self._lock:
            marks = list(self._due)
        return sum(start <= frame_time < end for frame_time in marks)

    def record(self, frame_time: float) -> None:
        """One result of a frame decoded (or due) at ``frame_time`` arrived now."""
        with self._lock:
            self._samples.append((frame_time, self._clock() - frame_time))

    def wrap(
        self, handler: Callable[[Frame, Detections], None] | None
    ) -> Callable[[Frame, Detections], None]:
        """``handler`` with every call recorded first."""

        def recorded(frame: Frame, detections: Detections) -> None:
            self.record(frame.wall_time)
            if handler is not None:
                handler(frame, detections)

        return recorded

    def window(self, start: float, end: float) -> list[float]:
        """Latencies of the results of frames whose time is in ``[start, end)``."""
        with self._lock:
            samples = list(self._samples)
        return [latency for frame_time, latency in samples if start <= frame_time < end]


class Verdict(Protocol):
    """What a search step needs of a run's result (a :class:`Capacity` or a bench result)."""

    @property
    def saturated(self) -> bool: ...

    @property
    def feeds_per_core(self) -> float | None: ...

    @property
    def handled_fraction(self) -> float | None: ...

    @property
    def p99_latency_s(self) -> float | None: ...


Measure = Callable[[int], Verdict]


def search_capacity(
    measure: Measure, start: int, *, limit: int = 4096, say: Callable[[str], None] | None = None
) -> int:
    """The largest feed count whose run keeps up: galloping (doubling from ``start``) until a
    run saturates, then bisection down to 5% (or one feed). 0 when even one feed saturates;
    ``limit`` when nothing up to it saturates. Each step is one whole child run, reported on
    stderr (or to ``say``)."""
    report = say or (lambda text: print(text, file=sys.stderr, flush=True))  # noqa: T201

    def keeps_up(feeds: int) -> bool:
        result = measure(feeds)
        verdict = "saturated" if result.saturated else f"{result.feeds_per_core} feeds/core"
        report(
            f"search: {feeds} feeds -> {verdict} (handled {result.handled_fraction}, "
            f"p99 {result.p99_latency_s} s)"
        )
        return not result.saturated

    good, bad = 0, None
    feeds = max(1, start)
    while bad is None and feeds <= limit:
        if keeps_up(feeds):
            good, feeds = feeds, feeds * 2
        else:
            bad = feeds
    if bad is None:
        return good
    while bad - good > max(1, int(good * 0.05)):
        middle = (good + bad) // 2
        if keeps_up(middle):
            good = middle
        else:
            bad = middle
    return good


def start_staggered(starts: Sequence[Callable[[], None]], span_s: float = STAGGER_S) -> None:
    """Call each of ``starts`` in turn, spread evenly over ``span_s`` (see :data:`STAGGER_S`).

    >>> started = []
    >>> start_staggered([lambda i=i: started.append(i) for i in range(3)], span_s=0.03)
    >>> started
    [0, 1, 2]
    """
    step = span_s / max(len(starts), 1)
    for index, start in enumerate(starts):
        if index:
            time.sleep(step)
        start()
