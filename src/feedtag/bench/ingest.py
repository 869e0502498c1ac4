"""``feedtag bench ingest``: N live-paced feeds through the real ingest path, and a bare PyAV
loop on the same feeds for comparison.

Each variant runs in its own child process so that CPU time and resident memory belong to
that variant alone. CPU seconds per feed-second is the cost figure: process CPU time over
the measured window divided by feeds * window. Feeds per core is its inverse.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal

import av
import psutil

from feedtag.config import validate_config
from feedtag.runtime.node import NodeEngine

Mode = Literal["keyframes", "all"]
Variant = Literal["engine", "bare"]

WARMUP_S: Final = 3.0
CHILD_TIMEOUT_MARGIN_S: Final = 120.0


@dataclass(frozen=True, slots=True)
class IngestBenchResult:
    variant: str
    feeds: int
    mode: str
    seconds: float
    cpu_s_per_feed_s: float
    feeds_per_core: float
    decoded_fps: float
    analysed_fps: float
    rss_mb_per_feed: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    runner: _EngineRun | _BareRun
    if variant == "engine":
        runner = _EngineRun(source, feeds, mode, pipeline)
    else:
        runner = _BareRun(source, feeds, mode)
    process = psutil.Process()
    rss_before = process.memory_info().rss
    runner.start()
    try:
        time.sleep(WARMUP_S)
        cpu_start, decoded_start, analysed_start = _cpu(process), *runner.counts()
        wall_start = time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - wall_start
        cpu = _cpu(process) - cpu_start
        decoded, analysed = runner.counts()
        rss = process.memory_info().rss
    finally:
        runner.stop()
    cpu_per_feed_s = cpu / (feeds * wall)
    return IngestBenchResult(
        variant=variant,
        feeds=feeds,
        mode=mode,
        seconds=round(wall, 2),
        cpu_s_per_feed_s=round(cpu_per_feed_s, 6),
        feeds_per_core=round(1 / cpu_per_feed_s, 1) if cpu_per_feed_s > 0 else float("inf"),
        decoded_fps=round((decoded - decoded_start) / wall, 1),
        analysed_fps=round((analysed - analysed_start) / wall, 1),
        rss_mb_per_feed=round((rss - rss_before) / feeds / 2**20, 2),
    )


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


class _EngineRun:
    """The real path: config validation, NodeEngine, CameraIngest threads, the consumer."""

    def __init__(self, source: Path, feeds: int, mode: Mode, pipeline: bool) -> None:
        cameras = [
            {
                "id": f"feed{i:04d}",
                "url": source.name,
                "loop": True,
                "realtime": True,
                "analysis_fps": 1.0,
                "decode": "auto" if mode == "keyframes" else "all",
            }
            for i in range(feeds)
        ]
        config = validate_config(
            {
                "media_root": str(source.parent),
                "cameras": cameras,
                "detector": {"enabled": pipeline},
            }
        )
        # the model is loaded before the measurement starts (and RSS baseline is taken)
        self.engine = NodeEngine.from_config(config)

    def start(self) -> None:
        self.engine.start()

    def stop(self) -> None:
        self.engine.stop()

    def counts(self) -> tuple[int, int]:
        statuses = self.engine.statuses()
        return (
            sum(s.counters.frames_decoded for s in statuses),
            sum(s.counters.frames_analysed for s in statuses),
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

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)

    def counts(self) -> tuple[int, int]:
        decoded = sum(self._decoded)
        return decoded, decoded

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
