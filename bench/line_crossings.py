# ruff: noqa: T201 - a command-line benchmark
"""Line-crossing accuracy and cost at fixed and adaptive analysis rates, on vtest.avi.

    PYTHONPATH=src python bench/line_crossings.py --runs fixed-1,adaptive-1,fixed-5

Each run plays the whole of vtest.avi (79.5 s, 10 fps) through the node engine as fast as the
machine allows (``realtime: false``: no frame is dropped, and the adaptive rate runs on stream
time, so the result does not depend on the machine's speed), with the hand-counted line of
``tests/data/vtest_line_crossings.json`` and a ``line_cross`` rule for people, the default
416 INT8 detector and the gate. It prints, per run, the crossings counted per direction
against the hand count (sure, and sure plus uncertain), the frames analysed, and the process
CPU per second of video. Runs: ``fixed-R`` analyses R fps all the time; ``adaptive-R`` has the
normal rate R and the default floor (0.5) and tracking (5) rates. It prints numbers; it is
not a test (``tests/runtime/test_events.py`` holds the accuracy test at 5 fps).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from feedtag.bench.footage import vtest_path
from feedtag.config import validate_config
from feedtag.core import CameraState, EventKind
from feedtag.runtime.node import NodeEngine
from feedtag.store.engine import create_store_engine
from feedtag.store.query import EventQuery, search_events

TRUTH = Path(__file__).parent.parent / "tests" / "data" / "vtest_line_crossings.json"
VIDEO_S = 79.5


def camera(line: dict[str, Any], run: str) -> dict[str, Any]:
    kind, rate = run.split("-")
    return {
        "id": "yard", "url": vtest_path().name, "realtime": False, "analysis_fps": float(rate),
        "adaptive": {"enabled": kind == "adaptive"},
        "analytics": {
            "lines": [{"name": "middle", "start": line["start"], "end": line["end"],
                       "forward_name": "right_to_left", "backward_name": "left_to_right"}],
            "rules": [{"kind": "line_cross", "labels": ["person"], "line": "middle"}],
        },
    }  # fmt: skip


def measure(run: str, line: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="feedtag-lines-") as data:
        config = validate_config(
            {
                "media_root": str(vtest_path().parent),
                "store": {"data_dir": data},
                "cameras": [camera(line, run)],
            }
        )
        engine = NodeEngine.from_config(config)
        process = psutil.Process()
        cpu = process.cpu_times()
        engine.start()
        try:
            while engine.statuses()[0].state is not CameraState.STOPPED:
                time.sleep(0.2)
            time.sleep(1.0)  # the last results reach the rules and the store
        finally:
            engine.stop(deadline_s=8)
        after = process.cpu_times()
        status = engine.statuses()[0]
        store = create_store_engine(config.store.resolved_url())
        events = search_events(store, EventQuery(kinds=[EventKind.LINE_CROSS], limit=1000))
        counted = Counter(event.attributes["direction"] for event in events.items)
        store.dispose()
    used = (after.user + after.system) - (cpu.user + cpu.system)
    return {
        "run": run,
        "left_to_right": counted["left_to_right"],
        "right_to_left": counted["right_to_left"],
        "frames_analysed": status.counters.frames_analysed,
        "frames_decoded": status.counters.frames_decoded,
        "cpu_ms_per_video_s": round(used * 1000 / VIDEO_S, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="fixed-1,adaptive-1,fixed-5")
    args = parser.parse_args()
    truth = json.loads(TRUTH.read_text())
    totals, uncertain = truth["totals"], truth["uncertain_by_direction"]
    print(
        "hand count: "
        + ", ".join(
            f"{d} {totals[d]} (+{uncertain[d]} uncertain)"
            for d in ("left_to_right", "right_to_left")
        )
    )
    for run in args.runs.split(","):
        print(json.dumps(measure(run, truth["line"])), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
