# ruff: noqa: T201 - a command-line benchmark
"""What one ``/metrics`` scrape costs with many cameras, per camera and in totals
(``api.metrics``):

    PYTHONPATH=src python bench/metrics_scrape.py [--cameras 1000,10000] [--shards 16]

The engine snapshot is made up (every camera with a vision status and two kinds of event,
spread over the shards), so that only the collector and the text format are measured: CPU
seconds of one scrape in the API's process (best of three), the text's size and its series
(sample lines). In totals each shard builds the families of its own cameras, as the Ray
engine's shards do (``EngineControl.camera_totals``): ``shard s`` is what that costs one
shard (the mean over the shards, best of three), in the shards' processes and side by side;
the scrape then merges what they built.

It prints numbers; it is not a test. docs/capacity.md has the figures of this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Collection
from types import SimpleNamespace

from prometheus_client import generate_latest
from prometheus_client.core import Metric

from feedtag.api.metrics import engine_registry
from feedtag.core import VisionStatus
from feedtag.runtime.bus import EventBus
from feedtag.runtime.camera_metrics import camera_totals, merge_families
from feedtag.runtime.control import CameraSnapshot, EngineSnapshot, held_offline


def snapshot(cameras: int, shards: int) -> EngineSnapshot:
    made = []
    for index in range(cameras):
        camera_id = f"camera-{index:06d}"
        vision = VisionStatus(camera_id, 100, 60, 40, 0, 12.0, {"person": 2}, 2)
        made.append(
            CameraSnapshot(
                camera_id,
                held_offline(camera_id, "bench", 1.0),
                vision,
                1,
                {"zone_enter": 3, "line_cross": 1},
                shard=f"feedtag-shard-{index % shards}",
                node="node",
            )
        )
    return EngineSnapshot(1.0, tuple(made), None)


def of(made: EngineSnapshot, camera_ids: Collection[str] | None) -> EngineSnapshot:
    """``made`` with only ``camera_ids`` (all when None), as an engine answers."""
    if camera_ids is None:
        return made
    wanted = set(camera_ids)
    return dataclasses.replace(
        made, cameras=tuple(c for c in made.cameras if c.camera_id in wanted)
    )


def shard_families(made: EngineSnapshot) -> tuple[float, list[list[Metric]]]:
    """(CPU seconds one shard takes to build its totals, the mean over the shards and best of
    three; what every shard built)."""
    shards = sorted({c.shard or "" for c in made.cameras})
    parts = [
        dataclasses.replace(made, cameras=tuple(c for c in made.cameras if c.shard == shard))
        for shard in shards
    ]
    best, built = float("inf"), []
    for _ in range(3):
        start = time.process_time()
        built = [camera_totals(part, sharded=True) for part in parts]
        best = min(best, (time.process_time() - start) / max(1, len(parts)))
    return best, built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", default="1000,10000")
    parser.add_argument("--shards", type=int, default=16)
    args = parser.parse_args()
    print(f"{'cameras':>8} {'metrics':<11}{'scrape s':>9}{'shard s':>9}{'KiB':>9}{'series':>9}")
    for cameras in (int(c) for c in args.cameras.split(",")):
        made = snapshot(cameras, args.shards)
        shard_s, built = shard_families(made)
        # the calls the collector makes of an engine control
        control = SimpleNamespace(
            snapshot=lambda camera_ids=None, made=made: of(made, camera_ids),
            camera_totals=lambda camera_ids=None, built=built: merge_families(built),
            shards=list,
        )
        for per_camera in (True, False):
            registry = engine_registry(control, EventBus(), None, per_camera)
            best, text = float("inf"), b""
            for _ in range(3):
                start = time.process_time()
                text = generate_latest(registry)
                best = min(best, time.process_time() - start)
            series = sum(1 for line in text.splitlines() if not line.startswith(b"#"))
            mode = "per_camera" if per_camera else "totals"
            on_shard = "-" if per_camera else f"{shard_s:.4f}"
            print(
                f"{cameras:>8} {mode:<11}{best:>9.3f}{on_shard:>9}{len(text) // 1024:>9}"
                f"{series:>9}",
                flush=True,
            )


if __name__ == "__main__":
    main()
