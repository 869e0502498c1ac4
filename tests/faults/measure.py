"""What the long-running fault tests measure about this process: resident memory and its
trend, the C heap and Python's blocks (what a leak raises, unlike fragmentation), open file
descriptors, threads and child processes."""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import psutil

from feedtag.bench.heap import c_heap

MIB = 1024 * 1024
#: worker threads of pools that start a worker on demand, up to their bound, and keep it:
#: asyncio's default executor (the connection guard's policy checks, one per camera
#: connection), the network policy's resolver pool and AnyIO's pool (sync API routes).
#: CPython's ThreadPoolExecutor sets a call's result before its worker counts as idle, so a
#: caller that submits again at once can make the pool start one more worker: now and then
#: over a thousand cycles (the likely +1 thread between cycles 800 and 900 of one CI run),
#: never past the bound. They are counted apart and held to their bounds.
_EXECUTOR_BOUND = min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's default
POOL_BOUNDS = {
    "asyncio_": _EXECUTOR_BOUND,
    "ThreadPoolExecutor-": _EXECUTOR_BOUND,
    "resolve_": 4,
    "AnyIO worker thread": 40,
}


@dataclass(frozen=True, slots=True)
class Resources:
    """One sample of this process."""

    rss: int  # bytes
    fds: int  # entries of /proc/self/fd
    threads: int  # Python threads, but for the workers of on-demand pools (POOL_BOUNDS)
    os_threads: int  # every thread of the process (FFmpeg's, ONNX Runtime's, uvicorn's ...),
    # but for those pool workers
    children: int  # child processes, recursively
    heap: int | None  # C heap allocated and not freed (glibc), None elsewhere
    blocks: int  # Python's allocated memory blocks
    thread_names: tuple[str, ...] = ()  # the Python threads, to name the ones that grew

    def counts(self) -> tuple[int, int, int]:
        """What must not grow: (fds, threads, children)."""
        return self.fds, self.threads, self.children


def sample(collect: bool = True) -> Resources:
    """This process now (after a garbage collection unless ``collect`` is False)."""
    if collect:
        gc.collect()
    process = psutil.Process()
    names = [thread.name for thread in threading.enumerate()]
    pooled = sum(1 for name in names if pool_of(name) is not None)
    return Resources(
        rss=process.memory_info().rss,
        fds=len(os.listdir("/proc/self/fd")),
        threads=len(names) - pooled,
        os_threads=process.num_threads() - pooled,
        children=len(process.children(recursive=True)),
        heap=None if (now := c_heap()) is None else now.allocated,
        blocks=sys.getallocatedblocks(),
        thread_names=tuple(sorted(names)),
    )


def pool_of(thread_name: str) -> str | None:
    """The on-demand pool (a key of :data:`POOL_BOUNDS`) a thread is a worker of."""
    return next((prefix for prefix in POOL_BOUNDS if thread_name.startswith(prefix)), None)


def pools_within_bounds(before: Resources, after: Resources) -> bool:
    """Whether each on-demand pool gained at most its bound of workers from ``before`` to
    ``after``. Gained, not held: earlier tests in the same process leave pools of their own
    event loops behind (asyncio names every loop's workers ``asyncio_N``), which the run under
    test neither made nor can end."""

    def workers(sample: Resources, prefix: str) -> int:
        return sum(1 for name in sample.thread_names if pool_of(name) == prefix)

    return all(
        workers(after, prefix) - workers(before, prefix) <= bound
        for prefix, bound in POOL_BOUNDS.items()
    )


def new_threads(before: Resources, after: Resources) -> list[str]:
    """The names of the Python threads ``after`` has more of than ``before``."""
    return sorted((Counter(after.thread_names) - Counter(before.thread_names)).elements())


def settled_sample(window_s: float = 1.2, every_s: float = 0.1) -> Resources:
    """The sample with the least C heap (RSS where glibc gives none) among those taken every
    ``every_s`` over ``window_s``, after one garbage collection. A camera that keeps running
    holds one frame's buffers (its decoded picture, the RGB and model-scale copies, the
    detector's input: about 1 MiB at 640x360) for part of each second; a single sample taken
    while they are alive reads as that much growth, and the median of ten slopes can land on
    it (seen in the full suite: +0.7 MiB in alternate samples, read as 7 KiB a cycle).
    ``window_s`` longer than the frame interval (1 s at 1 fps) holds at least one moment
    without a frame in flight."""
    gc.collect()
    taken = [sample(collect=False)]
    deadline = time.monotonic() + window_s
    while time.monotonic() < deadline:
        time.sleep(every_s)
        taken.append(sample(collect=False))
    return min(taken, key=lambda s: s.rss if s.heap is None else s.heap)


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of ``ys`` over ``xs``.

    >>> round(slope([0, 1, 2, 3], [5, 7, 9, 11]), 6)
    2.0
    """
    if len(xs) < 2:
        raise ValueError(f"expected at least 2 samples, got {len(xs)}")
    fitted = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(fitted[0])


def typical_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The median of the slopes between consecutive samples. A leak raises every one of
    them; a one-off step (a buffer allocated once, the allocator mapping one more block)
    raises one, so, unlike :func:`slope`, this does not read a single step as growth,
    wherever in the run it falls.

    >>> typical_slope([0, 1, 2, 3, 4, 5], [0, 0, 9, 9, 9, 9]), typical_slope([0, 1, 2], [1, 3, 5])
    (0.0, 2.0)
    """
    if len(xs) < 2:
        raise ValueError(f"expected at least 2 samples, got {len(xs)}")
    return float(np.median(np.diff(np.asarray(ys, float)) / np.diff(np.asarray(xs, float))))
