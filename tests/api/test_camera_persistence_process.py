"""Acceptance: a camera added through the API of a real ``feedtag run`` is running again after
the process restarts, and its password is in no API answer, no line the process wrote and
no row of the store."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import MetaData, select

from feedtag.store.engine import create_store_engine

from ..conftest import RtspServer

FEEDTAG = [sys.executable, "-m", "feedtag.cli"]
START_TIMEOUT_S = 30.0
ONLINE_TIMEOUT_S = 30.0
PASSWORD = "p@ss-" + secrets.token_hex(8)


class Run:
    """A ``feedtag run`` child whose every output line is kept."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [*FEEDTAG, "run", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )  # fmt: skip
        self._readers = [
            threading.Thread(target=self._read, args=(pipe,), daemon=True)
            for pipe in (self.process.stdout, self.process.stderr)
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, pipe: Any) -> None:
        for line in pipe:
            self.lines.append(line)

    def api_url(self) -> str:
        end = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < end and self.process.poll() is None:
            for line in list(self.lines):
                found = re.search(r"API and dashboard: (http://127\.0\.0\.1:\d+)/", line)
                if found:
                    return found.group(1)
            time.sleep(0.1)
        raise AssertionError("feedtag run did not print the API address:\n" + "".join(self.lines))

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(15) == 0
        for reader in self._readers:
            reader.join(5)


@contextmanager
def feedtag_run(config: Path, env: dict[str, str]) -> Iterator[Run]:
    run = Run(config, env)
    try:
        yield run
    finally:
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait(10)
        for reader in run._readers:
            reader.join(5)
        for pipe in (run.process.stdout, run.process.stderr):
            if pipe is not None:
                pipe.close()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def every_row(data_dir: Path) -> str:
    store = create_store_engine(f"sqlite:///{data_dir / 'feedtag.db'}")
    metadata = MetaData()
    metadata.reflect(store)
    with store.connect() as connection:
        rows = [
            repr(tuple(row)) for table in metadata.sorted_tables
            for row in connection.execute(select(table))
        ]  # fmt: skip
    store.dispose()
    return "\n".join(rows)


def test_an_api_camera_survives_a_restart_and_its_password_shows_nowhere(
    tmp_path: Path, vtest_clip: Path, make_rtsp_server: Callable[..., RtspServer]
) -> None:
    server = make_rtsp_server(user="admin", password=PASSWORD)
    token = secrets.token_urlsafe(32)
    config = tmp_path / "run.yaml"
    config.write_text(
        f"media_root: {vtest_clip.parent}\ndetector: {{enabled: false}}\n"
        "engine: {status_interval_s: 1}\n"
        "api:\n  port: 0\n  admin_token: ${FEEDTAG_ADMIN_TOKEN}\n"
        "  allow_networks: [127.0.0.0/8]\n"
        f"cameras:\n  - {{id: lobby, url: {vtest_clip.name}, loop: true}}\n"
    )
    env = {**os.environ, "FEEDTAG_ADMIN_TOKEN": token, "FEEDTAG_DATA_DIR": str(tmp_path),
           "FEEDTAG_SECRET_KEY": Fernet.generate_key().decode()}  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    answers: list[str] = []

    def cameras(url: str) -> dict[str, Any]:
        answer = httpx.get(url + "/api/v1/cameras", headers=headers, timeout=10)
        answers.append(answer.text)
        return {item["id"]: item for item in answer.json()["items"]}

    def online(url: str) -> bool:
        gate = cameras(url).get("gate")
        return gate is not None and (gate["status"] or {}).get("state") == "online"

    body = {"id": "gate", "url": f"rtsp://admin@127.0.0.1:{server.port}/vtest",
            "password": PASSWORD}  # fmt: skip
    with feedtag_run(config, env) as first:
        url = first.api_url()
        added = httpx.post(url + "/api/v1/cameras", json=body, headers=headers, timeout=10)
        answers.append(added.text)
        assert added.status_code == 201, added.text
        wait_until(lambda: online(url), ONLINE_TIMEOUT_S, "the added camera online")
        first.stop()
    with feedtag_run(config, env) as second:
        url = second.api_url()
        wait_until(lambda: online(url), ONLINE_TIMEOUT_S, "the stored camera online again")
        listed = cameras(url)
        assert listed["gate"]["defined_in"] == "api"
        assert listed["lobby"]["defined_in"] == "config"
        answers.append(httpx.get(url + "/api/v1/cameras/gate", headers=headers).text)
        second.stop()
    output = "".join(first.lines + second.lines)
    assert "gate" in output  # the status lines name it: the output was captured
    rows = every_row(tmp_path)
    assert "fernet:" in rows
    for where, text in (("API", "".join(answers)), ("output", output), ("store", rows)):
        assert PASSWORD not in text, where
        assert PASSWORD.replace("@", "%40") not in text, where
