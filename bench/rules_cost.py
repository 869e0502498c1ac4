# ruff: noqa: T201 - a command-line benchmark
"""What a camera's rules cost per analysed frame, as the number of tracks in view grows.

Runs one camera's :class:`~feedtag.analytics.engine.CameraAnalyzer` with the rules
`feedtag bench compare` gives every feed (presence over the whole frame and over each cell of
a 3x3 grid, counting tracks that cross a cell between frames), then with zone entry/exit,
dwell and crowding rules on the same grid added. The tracks walk across the frame from fixed
random starts (a seeded generator: every run scores the same motion), by up to ``--step`` of
the frame per frame, so each crosses cells now and then. Prints process CPU milliseconds per
``update`` for each track count.

    PYTHONPATH=src .venv/bin/python bench/rules_cost.py [--tracks 1,8,30,60] [--frames 400]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from feedtag.analytics.engine import CameraAnalyzer
from feedtag.analytics.rules import Observation
from feedtag.bench.compare import presence_analytics
from feedtag.bench.presence import grid_zones
from feedtag.config.analytics import CameraAnalytics
from feedtag.core import Detections

FRAME = (640, 360)
#: class 0 is the only one the tracks use
NAMES = ("person", "bicycle", "car")


def zone_rules() -> dict[str, Any]:
    """Presence as in `bench compare`, plus zone entry/exit, dwell and crowding on each cell."""
    analytics = presence_analytics()
    for zone in grid_zones():
        name = zone["name"]
        analytics["rules"] += [
            {"kind": "zone_enter_exit", "zone": name, "labels": ["person"]},
            {"kind": "dwell", "zone": name, "labels": ["person"], "min_duration_s": 5},
            {"kind": "crowding", "zone": name, "labels": ["person"], "min_count": 3},
        ]
    return analytics


def observations(tracks: int, frames: int, step: float) -> list[Observation]:
    rng = np.random.default_rng(0)
    width, height = FRAME
    position = rng.uniform([20, 60], [width - 20, height], (tracks, 2))
    velocity = rng.uniform(-step, step, (tracks, 2)) * [width, height]
    made = []
    for index in range(frames):
        position = position + velocity
        bounce = (position < [20, 60]) | (position > [width - 20, height])
        velocity[bounce] *= -1
        position = np.clip(position, [20, 60], [width - 20, height])
        x, y = position[:, 0], position[:, 1]
        boxes = np.stack([x - 10, y - 50, x + 10, y], axis=1).astype(np.float32)
        detections = Detections(
            boxes,
            np.full(tracks, 0.9, np.float32),
            np.zeros(tracks, np.int32),
            np.arange(1, tracks + 1, dtype=np.int64),
        )
        made.append(Observation("bench", float(index), 1.7e9 + index, detections, NAMES, FRAME))
    return made


def cost_ms(analytics: dict[str, Any], seen: list[Observation]) -> float:
    analyzer = CameraAnalyzer("bench", CameraAnalytics.model_validate(analytics))
    warm = len(seen) // 8
    for observation in seen[:warm]:
        analyzer.update(observation)
    started = time.process_time()
    for observation in seen[warm:]:
        analyzer.update(observation)
    return (time.process_time() - started) / (len(seen) - warm) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", default="1,8,30,60")
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--step", type=float, default=0.05, help="most motion per frame")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for tracks in (int(part) for part in args.tracks.split(",")):
        seen = observations(tracks, args.frames, args.step)
        rows.append(
            {
                "tracks": tracks,
                "presence_ms": round(cost_ms(presence_analytics(), seen), 3),
                "presence_and_zones_ms": round(cost_ms(zone_rules(), seen), 3),
            }
        )
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{'tracks':>6} {'presence (10 rules) ms':>23} {'+ zones (37 rules) ms':>22}")
    for row in rows:
        print(f"{row['tracks']:>6} {row['presence_ms']:>23} {row['presence_and_zones_ms']:>22}")


if __name__ == "__main__":
    main()
