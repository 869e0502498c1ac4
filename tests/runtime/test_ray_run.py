"""``feedtag run --engine ray`` end to end, as an operator runs it: a real child process that
starts a local Ray, two shards and the coordinator over a real PostgreSQL, and serves the API.
Proves: the cameras of the config file run on the shards; a camera added through the API
starts on a shard; snapshots written by a shard process are served by the driver's API (the
shared media root, checked by the shards); the driver's live stream carries the events the
shards store; SIGTERM stops everything, Ray's processes
included."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from feedtag.bench.footage import encode_h264, vtest_path
from feedtag.store.media import MEDIA_MARK
from feedtag.store.pgcluster import PgCluster

from ..conftest import REPO, wait_for
from ..faults.process_harness import feedtag_run
from .conftest import require_ray

pytestmark = [pytest.mark.slow, pytest.mark.system, pytest.mark.timeout(300)]

START_TIMEOUT_S = 90.0


def test_feedtag_run_with_the_ray_engine(pg: PgCluster, tmp_path: Path, models_dir: Path) -> None:
    require_ray()
    clip = encode_h264(vtest_path(), tmp_path / "vtest_8s.mp4", width=320, height=180,
                       max_seconds=8)  # fmt: skip
    token = secrets.token_urlsafe(32)
    data_dir = tmp_path / "data"
    crowd = {"kind": "crowding", "min_count": 2, "min_duration_s": 1, "grace_s": 2}
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump({
        "media_root": str(clip.parent),
        "store": {"url": pg.create_database("feedtag_run"), "data_dir": str(data_dir)},
        "detector": {"models_dir": str(models_dir)},
        "engine": {"status_interval_s": 2, "cores_per_shard": 1},
        "api": {"port": 0, "admin_token": "${FEEDTAG_ADMIN_TOKEN}"},
        "cameras": [{"id": "yard", "url": clip.name, "loop": True, "analytics": {
            "lines": [{"name": "middle", "start": [0.5, 0.1], "end": [0.5, 0.9]}],
            "rules": [crowd, {"kind": "line_cross", "labels": ["person"], "line": "middle"}],
        }}],
    }))  # fmt: skip
    env = {**os.environ, "FEEDTAG_ADMIN_TOKEN": token, "PYTHONPATH": str(REPO / "src")}
    headers = {"Authorization": f"Bearer {token}"}
    with contextlib.ExitStack() as closing:
        log = tmp_path / "feedtag-run.log"
        run = closing.enter_context(
            feedtag_run(config, log, args=["--engine", "ray"], env=env, cwd=REPO)
        )
        url = run.api_url(START_TIMEOUT_S)
        client = closing.enter_context(httpx.Client(base_url=url, headers=headers, timeout=15))

        def cameras() -> dict[str, Any]:
            answer = client.get("/api/v1/cameras")
            assert answer.status_code == 200, answer.text
            return {item["id"]: item for item in answer.json()["items"]}

        def analysing(camera_id: str) -> bool:
            vision = (cameras().get(camera_id) or {}).get("vision") or {}
            return int(vision.get("frames", 0)) > 0

        wait_for(lambda: analysing("yard"), 90, 0.5, "the config camera analysed on a shard")
        # no --shards: one shard per core of the (local) cluster
        sized = re.search(r"ray engine: (\d+) shard\(s\) of 1 core\(s\)", run.output())
        assert sized is not None, run.output()
        shards = client.get("/api/v1/shards").json()["items"]
        assert len(shards) == int(sized.group(1)) == max(1, psutil.cpu_count() or 1)
        assert all(shard["state"] == "running" and shard["pid"] for shard in shards), shards
        # a camera added through the API starts on a shard
        body = {"id": "gate", "url": clip.name, "loop": True}
        added_at = time.monotonic()
        added = client.post("/api/v1/cameras", json=body)
        assert added.status_code == 201, added.text
        wait_for(lambda: analysing("gate"), 30, 0.5, "the API camera analysed on a shard")
        print(f"\nAPI camera analysed {time.monotonic() - added_at:.1f} s after POST")

        # an event's snapshot, written by a shard process, served by the driver's API
        def with_snapshot() -> dict[str, Any] | None:
            items = client.get("/api/v1/events", params={"camera": "yard"}).json()["items"]
            return next((item for item in items if item.get("snapshot_url")), None)

        wait_for(lambda: with_snapshot() is not None, 60, 1.0, "an event with a snapshot")
        event = with_snapshot()
        assert event is not None
        image = client.get(event["snapshot_url"])
        assert image.status_code == 200, image.text
        assert image.headers["content-type"] == "image/jpeg" and image.content[:2] == b"\xff\xd8"
        assert (data_dir / "media" / MEDIA_MARK).is_file()
        assert "not the one the API serves" not in run.output()

        # the live stream on the driver carries what the shards store
        seen: set[str] = set()
        streamed_at = time.monotonic()
        with client.stream("GET", "/api/v1/stream", timeout=60) as stream:
            kind = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: ") and kind in {"event", "end"}:
                    seen.add(json.loads(line.removeprefix("data: "))["camera_id"])
                if "yard" in seen or time.monotonic() - streamed_at > 60:
                    break
        assert "yard" in seen, "no event of the shard's camera on the live stream"
        print(f"live stream: an event of a shard after {time.monotonic() - streamed_at:.1f} s")

        children = psutil.Process(run.process.pid).children(recursive=True)
        assert children, "Ray's processes run under feedtag run"
        code, took = run.terminate(30)
        assert code == 0, run.output()[-3000:]
        print(f"SIGTERM: feedtag run exited after {took:.1f} s")
        # the stop itself is bounded to 5 s; Ray's own processes take a few more to end
        assert took < 10, run.output()[-3000:]
        _, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, [(p.pid, _name(p)) for p in alive]
    assert token not in run.output()


def _name(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(process.cmdline())[:120]
    return "?"
