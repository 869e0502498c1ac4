# ruff: noqa: T201 - a command-line benchmark
"""What each camera costs, as the engine itself reports it (docs/api.md, "What a camera
costs"), against the process's CPU over the same window:

    PYTHONPATH=src python bench/camera_cost.py [--busy 8] [--quiet 8] [--seconds 30]
        [--thumbnails]

Busy feeds are the 640x360 vtest cut, quiet ones the still-frame feed
(:func:`~feedtag.bench.footage.quiet_h264`), all live-paced at 1 analysed fps with the
defaults of ``feedtag run`` (adaptive rate, packet gate, presence rules for the frame and a
3x3 grid, SQLite store in a temporary folder). With ``--thumbnails`` every camera's thumbnail
is asked for throughout, as a dashboard showing all of them would. After a warm-up long
enough for the quiet feeds to reach their floor rate, each camera's four totals (ingest CPU,
detector share, analysis CPU, media CPU) are read at the start and end of the window; the
table gives their means per feed kind in milliseconds per second, and how much of the
process's CPU the cameras' sum accounts for (the rest is batching, the store writer and the
engine's own threads).

It prints numbers; it is not a test. docs/performance.md has the figures of this machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import psutil

from feedtag.bench.compare import presence_analytics
from feedtag.bench.footage import quiet_h264, sample_h264
from feedtag.bench.ingest import EngineRun
from feedtag.runtime.vision import VisionConsumer

WARMUP_S = 15.0


PARTS = ("ingest", "detector", "analysis", "media")


def totals(run: EngineRun) -> dict[str, tuple[float, ...]]:
    """Per camera: (ingest CPU, detector share, analysis CPU, media CPU) seconds so far."""
    consumer = run.engine.consumer
    vision = (
        {v.camera_id: v for v in consumer.statuses()}
        if isinstance(consumer, VisionConsumer)
        else {}
    )
    events = run.engine.events
    media = events.media_cpu_s() if events is not None else {}
    out: dict[str, tuple[float, ...]] = {}
    for status in run.engine.statuses():
        seen = vision.get(status.camera_id)
        detector = seen.detector_s if seen is not None else 0.0
        analysis = seen.analysis_cpu_s if seen is not None else 0.0
        out[status.camera_id] = (
            status.counters.cpu_s, detector, analysis, media.get(status.camera_id, 0.0),
        )  # fmt: skip
    return out


def keep_asking_for_thumbnails(run: EngineRun, seconds: float) -> None:
    """Ask for every camera's thumbnail each second for ``seconds``, as a dashboard would."""
    events = run.engine.events
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if events is not None and events.media is not None:
            for status in run.engine.statuses():
                events.media.want_thumbnail(status.camera_id)
        time.sleep(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy", type=int, default=8)
    parser.add_argument("--quiet", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--thumbnails", action="store_true", help="ask for every thumbnail")
    args = parser.parse_args()
    busy, quiet = sample_h264("vtest", 640, 360), quiet_h264(640, 360, seconds=60)
    sources = [busy] * args.busy + [quiet] * args.quiet
    kinds = {f"feed{i:04d}": ("busy" if i < args.busy else "quiet") for i in range(len(sources))}
    process = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="feedtag-cost-") as data_dir:
        extra = {"store": {"data_dir": data_dir}}
        run = EngineRun(sources, "keyframes", pipeline=True, analytics=presence_analytics(),
                        extra=extra)  # fmt: skip
        run.start()
        wait = keep_asking_for_thumbnails if args.thumbnails else (lambda _run, s: time.sleep(s))
        try:
            wait(run, WARMUP_S)
            before, cpu_before, wall_before = totals(run), process.cpu_times(), time.monotonic()
            wait(run, args.seconds)
            after, cpu_after, wall = totals(run), process.cpu_times(), time.monotonic()
        finally:
            run.stop()
    window = wall - wall_before
    process_cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    print(
        f"{'feeds':<7}{'n':>4}" + "".join(f"{part:>10}" for part in PARTS) + f"{'total':>8}  ms/s"
    )
    attributed = 0.0
    for kind in ("busy", "quiet"):
        cameras = [cid for cid, k in kinds.items() if k == kind and cid in before and cid in after]
        if not cameras:
            continue
        parts = [
            sum(after[cid][i] - before[cid][i] for cid in cameras) / len(cameras) / window * 1000
            for i in range(len(PARTS))
        ]
        attributed += sum(parts) * len(cameras)
        print(f"{kind:<7}{len(cameras):>4}" + "".join(f"{part:>10.2f}" for part in parts)
              + f"{sum(parts):>8.2f}")  # fmt: skip
    process_ms = process_cpu / window * 1000
    print(f"process CPU {process_ms:.1f} ms/s over {window:.1f} s; the cameras' sum "
          f"{attributed:.1f} ms/s ({attributed / process_ms:.0%} of it)")  # fmt: skip


if __name__ == "__main__":
    main()
