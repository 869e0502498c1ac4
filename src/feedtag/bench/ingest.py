"""``feedtag bench ingest``: N live-paced feeds through the real ingest path, and a bare PyAV
loop on the same feeds for comparison.

Each variant runs in its own child process so that CPU time and resident memory belong to
that variant alone. CPU seconds per feed-second is the cost figure: process CPU time over
the measured window divided by feeds * window. Feeds per core is its inverse.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import av
import psutil

from feedtag.bench.capacity import (
    MAX_P99_LATENCY_S,
    Capacity,
    ResultRecorder,
    ThroughputCounts,
    judge,
    start_staggered,
)
from feedtag.config import validate_config
from feedtag.ingest.handoff import QUEUE_FULL
from feedtag.runtime.node import NodeEngine
from feedtag.runtime.vision import VisionConsumer

Mode = Literal["keyframes", "all"]
Variant = Literal["engine", "bare"]

WARMUP_S: Final = 3.0
CHILD_TIMEOUT_MARGIN_S: Final = 120.0
#: how often the rate the feeds ask for is read during a measured window
EXPECTED_SAMPLE_S: Final = 0.5


@dataclass(frozen=True, slots=True)
class IngestBenchResult:
    variant: str
    feeds: int
    mode: str
    seconds: float
    cpu_s_per_feed_s: float
    #: None when the detector did not keep up (``saturated``)
    feeds_per_core: float | None
    decoded_fps: float
    #: frames handed to analysis per second (due for detection)
    analysed_fps: float
    rss_mb_per_feed: float
    #: results that reached post-processing per second (detected + gated)
    detected_fps: float | None = None
    #: frames dropped before detection per second (ingest queue + detector busy)
    dropped_fps: float | None = None
    handled_fraction: float | None = None
    p99_latency_s: float | None = None
    saturated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Runner(Protocol):
    """Feeds running in this process, measured from outside."""

    #: None for a variant with no detector (nothing to keep up with)
    recorder: ResultRecorder | None

    @property
    def expected_fps(self) -> float:
        """Analysed frames per second the feeds ask for now (it varies when their analysis
        rate adapts)."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def counts(self) -> tuple[int, int, int]:
        """Cumulative (frames decoded, frames due for analysis, frames dropped before
        detection)."""
        ...


@dataclass(frozen=True, slots=True)
class Measured:
    capacity: Capacity
    wall_s: float
    decoded_fps: float
    analysed_fps: float
    rss_mb_per_feed: float


def _expected_over(runner: Runner, until: float) -> float:
    """Waits until ``until`` (monotonic); the mean of the frames per second the feeds asked
    for meanwhile, sampled every :data:`EXPECTED_SAMPLE_S`."""
    samples = [runner.expected_fps]
    while (left := until - time.monotonic()) > 0:
        time.sleep(min(EXPECTED_SAMPLE_S, left))
        samples.append(runner.expected_fps)
    return sum(samples) / len(samples)


def measure(runner: Runner, feeds: int, seconds: float, warmup_s: float = WARMUP_S) -> Measured:
    """Start ``runner``, measure a window of ``seconds`` after ``warmup_s``, stop it.

    CPU covers the window only; results of frames of the window are collected for a further
    :data:`~feedtag.bench.capacity.MAX_P99_LATENCY_S` (a later one is late anyway)."""
    process = psutil.Process()
    rss_before = process.memory_info().rss
    runner.start()
    try:
        time.sleep(warmup_s)
        cpu_start = _cpu(process)
        decoded_start, due_start, dropped_start = runner.counts()
        wall_start, clock_start = time.monotonic(), time.time()
        expected = _expected_over(runner, wall_start + seconds)
        wall = time.monotonic() - wall_start
        cpu = _cpu(process) - cpu_start
        decoded, due, dropped = runner.counts()
        clock_end = time.time()
        rss = process.memory_info().rss
        if runner.recorder is not None:
            time.sleep(MAX_P99_LATENCY_S)
    finally:
        runner.stop()
    due -= due_start
    if runner.recorder is None:
        latencies, handled = [0.0] * due, due  # no detector: every frame is its own result
    else:
        latencies = runner.recorder.window(clock_start, clock_end)
        handled = len(latencies)
        if runner.recorder.marks_due:
            due = runner.recorder.due_in(clock_start, clock_end)
    counts = ThroughputCounts(feeds, wall, cpu, expected, due, handled, dropped - dropped_start)
    return Measured(
        capacity=judge(counts, latencies),
        wall_s=wall,
        decoded_fps=round((decoded - decoded_start) / wall, 1),
        analysed_fps=round(due / wall, 1),
        rss_mb_per_feed=round((rss - rss_before) / feeds / 2**20, 2),
    )


def run_variant(
    variant: Variant,
    source: Path,
    feeds: int,
    seconds: float,
    mode: Mode,
    *,
    pipeline: bool = False,
) -> IngestBenchResult:
    """Run one variant in this process (called in the child). ``pipeline`` adds the gate,
    the detector and the tracker to the engine variant; the model loads before the memory
    baseline is taken."""
    runner: Runner
    # the engine's store goes to a directory of its own, never the user's data_dir
    with tempfile.TemporaryDirectory(prefix="feedtag-bench-ingest-") as data_dir:
        if variant == "engine":
            store = {"store": {"data_dir": data_dir}}
            runner = EngineRun([source] * feeds, mode, pipeline=pipeline, extra=store)
        else:
            runner = _BareRun(source, feeds, mode)
        measured = measure(runner, feeds, seconds)
    capacity = measured.capacity
    detector = runner.recorder is not None
    return IngestBenchResult(
        variant=variant,
        feeds=feeds,
        mode=mode,
        seconds=round(measured.wall_s, 2),
        cpu_s_per_feed_s=capacity.cpu_s_per_feed_s,
        feeds_per_core=capacity.feeds_per_core if detector else _inverse(capacity),
        decoded_fps=measured.decoded_fps,
        analysed_fps=measured.analysed_fps,
        rss_mb_per_feed=measured.rss_mb_per_feed,
        detected_fps=capacity.detected_fps if detector else None,
        dropped_fps=capacity.dropped_fps if detector else None,
        handled_fraction=capacity.handled_fraction if detector else None,
        p99_latency_s=capacity.p99_latency_s if detector else None,
        saturated=capacity.saturated if detector else False,
    )


def _inverse(capacity: Capacity) -> float:
    cost = capacity.cpu_s_per_feed_s
    return round(1 / cost, 1) if cost > 0 else float("inf")


def run_in_child(
    variant: Variant,
    source: Path,
    feeds: int,
    seconds: float,
    mode: Mode,
    *,
    pipeline: bool = False,
) -> IngestBenchResult:
    """Run one variant in a fresh interpreter and return its result."""
    command = [
        sys.executable, "-m", "feedtag.bench.ingest", "--variant", variant,
        "--source", str(source), "--feeds", str(feeds), "--seconds", str(seconds),
        "--mode", mode, *(["--pipeline"] if pipeline else []),
    ]  # fmt: skip
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=seconds + WARMUP_S + CHILD_TIMEOUT_MARGIN_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench child ({variant}) failed: {done.stderr.strip()[-2000:]}")
    return IngestBenchResult(**json.loads(done.stdout.strip().splitlines()[-1]))


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class EngineRun:
    """The real path: config validation, NodeEngine, CameraIngest threads, the consumer;
    with ``pipeline`` the vision stage, its results recorded on their way to
    post-processing. ``extra`` is merged into the config (rules, store)."""

    def __init__(
        self,
        sources: list[Path],
        mode: Mode,
        *,
        pipeline: bool,
        analytics: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        adaptive: bool = True,
        regions: bool | Literal["auto"] = "auto",
    ) -> None:
        cameras = [
            {
                "id": f"feed{i:04d}",
                "url": source.name,
                "loop": True,
                "realtime": True,
                "analysis_fps": 1.0,
                "adaptive": {"enabled": adaptive},
                "gate": {"regions": {"enabled": regions}},
                "decode": "auto" if mode == "keyframes" else "all",
                **({"analytics": analytics} if analytics else {}),
            }
            for i, source in enumerate(sources)
        ]
        config = validate_config(
            {
                "media_root": str(sources[0].parent),
                "cameras": cameras,
                "detector": {"enabled": pipeline},
                **(extra or {}),
            }
        )
        self._fixed_fps = float(len(cameras))
        # the model is loaded before the measurement starts (and RSS baseline is taken); the
        # cameras join in start(), one after another over a keyframe interval
        self._cameras = config.cameras
        self.engine = NodeEngine.from_config(config, cameras=[])
        self.recorder: ResultRecorder | None = None
        consumer = self.engine.consumer
        if isinstance(consumer, VisionConsumer):
            self.recorder = ResultRecorder()
            consumer.on_result = self.recorder.wrap(consumer.on_result)

    @property
    def expected_fps(self) -> float:
        """The rate each camera's analysis asks for now (the adaptive rate, once known)."""
        statuses = self.engine.statuses()
        if not statuses or any(status.target_fps is None for status in statuses):
            return self._fixed_fps
        return sum(status.target_fps or 0.0 for status in statuses)

    def start(self) -> None:
        self.engine.start()
        start_staggered(
            [functools.partial(self.engine.add_camera, camera) for camera in self._cameras]
        )

    def stop(self) -> None:
        self.engine.stop()

    def counts(self) -> tuple[int, int, int]:
        statuses = self.engine.statuses()
        busy = sum(v.dropped for v in self.engine.vision_statuses().values())
        queue = sum(s.counters.frames_dropped.get(QUEUE_FULL, 0) for s in statuses)
        return (
            sum(s.counters.frames_decoded for s in statuses),
            sum(s.counters.frames_analysed for s in statuses),
            queue + busy,
        )


class _BareRun:
    """The floor: a bare PyAV loop per feed, live-paced, decoding keyframes (or all)."""

    def __init__(self, source: Path, feeds: int, mode: Mode) -> None:
        self.source = source
        self.mode = mode
        self._stop = threading.Event()
        self._decoded = [0] * feeds
        self._threads = [
            threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(feeds)
        ]
        self.recorder: ResultRecorder | None = None
        self.expected_fps = float(feeds)

    def start(self) -> None:
        start_staggered([thread.start for thread in self._threads])

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)

    def counts(self) -> tuple[int, int, int]:
        decoded = sum(self._decoded)
        return decoded, decoded, 0

    def _loop(self, index: int) -> None:
        start = time.monotonic()
        offset = 0.0
        while not self._stop.is_set():
            with av.open(str(self.source)) as container:
                stream = container.streams.video[0]
                stream.thread_count = 1
                if self.mode == "keyframes":
                    stream.codec_context.skip_frame = "NONKEY"
                base = float(stream.time_base or 0)
                last = 0.0
                for packet in container.demux(stream):
                    if self._stop.is_set() or packet.dts is None:
                        continue
                    last = packet.dts * base
                    delay = start + offset + last - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                    if self.mode == "keyframes" and not packet.is_keyframe:
                        continue
                    self._decoded[index] += len(stream.codec_context.decode(packet))
                offset += last + 1 / 25


def main(argv: list[str] | None = None) -> int:
    """Child entry point: run one variant, print its result as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m feedtag.bench.ingest")
    parser.add_argument("--variant", choices=["engine", "bare"], required=True)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--feeds", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--mode", choices=["keyframes", "all"], required=True)
    parser.add_argument("--pipeline", action="store_true")
    args = parser.parse_args(argv)
    result = run_variant(
        args.variant, args.source, args.feeds, args.seconds, args.mode, pipeline=args.pipeline
    )
    print(json.dumps(result.to_dict()))  # noqa: T201 - the child's output channel
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
