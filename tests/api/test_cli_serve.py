"""`feedtag run` serves the API beside the engine (on 127.0.0.1), and stops it on a signal."""

from __future__ import annotations

import os
import re
import secrets
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

FEEDTAG = [sys.executable, "-m", "feedtag.cli"]


def _read_url(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stderr is not None
    end = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stderr, selectors.EVENT_READ)
        while time.monotonic() < end:
            if not selector.select(max(0.0, end - time.monotonic())):
                break
            line = process.stderr.readline()
            if not line:
                break
            found = re.search(r"API and dashboard: (http://127\.0\.0\.1:\d+)/", line)
            if found:
                return found.group(1)
    raise AssertionError("feedtag run did not print the API address")


def test_run_serves_the_api_and_stops_on_sigterm(tmp_path: Path, vtest_clip: Path) -> None:
    token = secrets.token_urlsafe(32)
    config = tmp_path / "run.yaml"
    config.write_text(
        f"media_root: {vtest_clip.parent}\ndetector: {{enabled: false}}\n"
        "api:\n  port: 0\n  admin_token: ${FEEDTAG_ADMIN_TOKEN}\n"
        f"cameras:\n  - {{id: lobby, url: {vtest_clip.name}, loop: true}}\n"
    )
    env = {**os.environ, "FEEDTAG_ADMIN_TOKEN": token, "FEEDTAG_DATA_DIR": str(tmp_path)}
    process = subprocess.Popen(
        [*FEEDTAG, "run", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, env=env,
    )  # fmt: skip
    try:
        url = _read_url(process, 30)
        assert httpx.get(url + "/health").json() == {"status": "ok"}
        headers = {"Authorization": f"Bearer {token}"}
        cameras = httpx.get(url + "/api/v1/cameras", headers=headers).json()["items"]
        assert [camera["id"] for camera in cameras] == ["lobby"]
        assert httpx.get(url + "/api/v1/cameras").status_code == 401
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert process.wait(10) == 0
        assert time.monotonic() - started < 6
        assert process.stderr is not None
        assert token not in process.stderr.read()
    finally:
        process.kill()
        process.communicate()
