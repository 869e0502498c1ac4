# ruff: noqa: T201 - a command-line benchmark
"""What one answer of ``GET /api/v1/cameras`` costs with many cameras: the whole list, and
one page of it (what the dashboard grid asks for at each refresh):

    PYTHONPATH=src python bench/camera_list.py [--cameras 1000,10000] [--page 48]

The engine is made up (every camera with a vision status and two kinds of event, the
snapshot of bench/metrics_scrape.py; it answers a page of cameras by id and every camera's
state from a dict, as an engine in one process does) and the cameras are validated configs
with one zone, so that the route's own work is measured: CPU seconds of building the answer
and encoding it as JSON (best of three), and the answer's size. What the engine's answers
cost on a Ray cluster is measured by ``feedtag bench control-plane`` (``page_s``,
``states_s``).

It prints numbers; it is not a test. docs/capacity.md has the figures of this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Collection
from types import SimpleNamespace
from typing import Any

from metrics_scrape import snapshot

from feedtag.api.access import Principal
from feedtag.api.cameras import list_cameras
from feedtag.config.models import CameraConfig
from feedtag.runtime.control import EngineSnapshot
from feedtag.store.tokens import Role

ZONE = {"name": "road", "polygon": [[0, 0], [1, 0], [1, 1]]}


def request_for(cameras: int) -> Any:
    """A request whose app state holds ``cameras`` cameras and a snapshot of them."""
    made = snapshot(cameras, 16)
    configs = [
        CameraConfig.model_validate({
            "id": f"camera-{index:06d}", "url": f"rtsp://sim-{index:06d}.invalid/s",
            "analytics": {"zones": [ZONE]},
        })
        for index in range(cameras)
    ]  # fmt: skip
    registry = SimpleNamespace(
        all=lambda: configs, held_statuses=dict, defined_in=lambda camera_id: "config"
    )
    by_id = {camera.camera_id: camera for camera in made.cameras}
    states = {camera.camera_id: camera.ingest.state for camera in made.cameras}

    def page_of(camera_ids: Collection[str] | None = None) -> EngineSnapshot:
        if camera_ids is None:
            return made
        chosen = tuple(by_id[i] for i in camera_ids if i in by_id)
        return dataclasses.replace(made, cameras=chosen)

    engine = SimpleNamespace(snapshot=page_of, states=lambda: dict(states))
    api = SimpleNamespace(engine=engine, registry=registry)
    return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(api=api)))


def best_of_three(request: Any, principal: Principal, limit: int | None) -> tuple[float, int]:
    best, size = float("inf"), 0
    for _ in range(3):
        start = time.process_time()
        answer = list_cameras(request, principal, limit=limit)
        size = len(json.dumps(answer).encode())
        best = min(best, time.process_time() - start)
    return best, size


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--cameras", default="1000,10000")
    parser.add_argument("--page", type=int, default=48)
    args = parser.parse_args()
    principal = Principal("bench", "bench", Role.VIEWER, None, "bearer")
    print(f"{'cameras':>8} {'answer':<9}{'CPU s':>8}{'KiB':>9}")
    for cameras in (int(c) for c in args.cameras.split(",")):
        request = request_for(cameras)
        for name, limit in (("whole", None), (f"page {args.page}", args.page)):
            cpu_s, size = best_of_three(request, principal, limit)
            print(f"{cameras:>8} {name:<9}{cpu_s:>8.3f}{size // 1024:>9}", flush=True)


if __name__ == "__main__":
    main()
