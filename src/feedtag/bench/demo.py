"""The demo's cameras: real footage as live feeds, through a real RTSP server where one is
installed (Debian's GStreamer RTSP server, run by ``rtsp_server.py`` under the system
Python), as live-paced looping files otherwise."""

from __future__ import annotations

import selectors
import socket
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from feedtag.bench.footage import points_in_crop, sample_h264
from feedtag.errors import FeedtagError

SYSTEM_PYTHON: Final = "/usr/bin/python3"
SERVER_SCRIPT: Final = Path(__file__).resolve().parent / "rtsp_server.py"
READY_TIMEOUT_S: Final = 20.0


class RtspServerError(FeedtagError):
    """The RTSP test server could not be started."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LoopingRtspServer:
    """Serves clips as endless live RTSP streams on 127.0.0.1 while the context is open.

    ``mounts`` maps a mount name to an H.264 MP4 file; ``url(name)`` is its address.
    """

    def __init__(
        self,
        mounts: dict[str, Path],
        *,
        port: int | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        self.mounts = mounts
        self.port = port or free_port()
        self.user, self.password = user, password
        self.process: subprocess.Popen[str] | None = None

    @staticmethod
    def available() -> bool:
        """Whether the system Python has GStreamer's RTSP server bindings."""
        if not (Path(SYSTEM_PYTHON).exists() and SERVER_SCRIPT.exists()):
            return False
        check = "import gi; gi.require_version('GstRtspServer', '1.0')"
        done = subprocess.run(
            [SYSTEM_PYTHON, "-c", check], capture_output=True, timeout=30, check=False
        )
        return done.returncode == 0

    def url(self, name: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        command = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port)]
        command += ["--exit-with-parent"]
        for name, path in self.mounts.items():
            command += ["--mount", f"/{name}={path}"]
        if self.user is not None and self.password is not None:
            command += ["--user", self.user, "--password", self.password]
        # A session of its own: Ctrl-C in a terminal goes to the whole foreground process
        # group, and the server would close every stream while the cameras still read them
        # (each logging a lost stream on the way out). It stops when stop() says so, or
        # within a second of this process ending (--exit-with-parent).
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        line = self._first_line()
        if not line.startswith("READY"):
            error = self.process.stderr.read() if self.process.stderr else ""
            self.stop()
            raise RtspServerError(f"RTSP server did not start: {line.strip() or error.strip()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> LoopingRtspServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def _first_line(self) -> str:
        assert self.process is not None and self.process.stdout is not None  # noqa: S101
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(READY_TIMEOUT_S):
                return ""
        return self.process.stdout.readline()


def _on_vtest(*points: list[float]) -> list[list[float]]:
    return points_in_crop(list(points), (768, 576))


def _on_bikes(*points: list[float]) -> list[list[float]]:
    return points_in_crop(list(points), (640, 272))


#: zones, lines and rules for the demo footage, drawn on the whole 4:3 view of vtest.avi and
#: placed on the 16:9 clips, which show its rows 72-503. The crop keeps only the lower half
#: of the road at the top right and of the car and van parked there; the default detector
#: does not find them at 640x360 any more, so the road zone's stopped-vehicle rule stays
#: quiet on the demo (tests/runtime/test_events.py checks it on the whole view instead)
VTEST_ANALYTICS: Final[dict[str, Any]] = {
    "zones": [
        {"name": "path", "polygon": _on_vtest([0, 0.28], [1, 0.22], [1, 0.62], [0, 0.72])},
        {"name": "lawn", "polygon": _on_vtest([0, 0.72], [1, 0.62], [1, 1], [0, 1])},
        # the street at the top right, where a car and a van stand parked; the 16:9 cut keeps
        # only their lower halves, too little for the detector, so on the sample clips this
        # zone and its stopped-vehicle rule stay quiet
        {"name": "road", "polygon": _on_vtest([0.78, 0.08], [1, 0.08], [1, 0.26], [0.78, 0.26]),
         "roadway": True},
    ],
    "lines": [
        {"name": "middle", "start": _on_vtest([0.5, 0.15])[0], "end": _on_vtest([0.5, 0.85])[0],
         # walking down the line, its right-hand side is image-left: forward is westward
         "forward_name": "westbound", "backward_name": "eastbound"},
    ],
    "rules": [
        {"kind": "presence", "labels": ["person", "car", "truck"]},
        {"kind": "presence", "labels": ["person"], "zone": "path"},
        {"kind": "line_cross", "labels": ["person"], "line": "middle"},
        {"kind": "zone_enter_exit", "labels": ["person"], "zone": "lawn"},
        {"kind": "crowding", "zone": "path", "min_count": 4, "min_duration_s": 3},
        {"kind": "dwell", "labels": ["person"], "zone": "path", "min_duration_s": 15},
        {"kind": "stopped_vehicle", "zone": "road", "min_duration_s": 60},
        {"kind": "camera_health"},
    ],
}  # fmt: skip

#: drawn on the whole 2.35:1 view of bikes.mp4; the 16:9 clips show its columns 78-561
BIKES_ANALYTICS: Final[dict[str, Any]] = {
    "lines": [
        {"name": "across", "start": _on_bikes([0.3, 0.0])[0], "end": _on_bikes([0.3, 1.0])[0]}
    ],
    "rules": [
        {"kind": "presence", "labels": ["person", "bicycle", "car"]},
        {"kind": "line_cross", "labels": ["person", "bicycle"], "line": "across"},
    ],
}


def demo_cameras(clips: dict[str, Path], server: LoopingRtspServer | None) -> list[dict[str, Any]]:
    """Camera configs for the demo: each clip once, and the first one again at 5 analysed fps
    (every frame decoded and sampled: the other decode mode), with zones, lines and rules."""
    first = next(iter(clips))
    names = [*clips, f"{first}-5fps"]
    cameras: list[dict[str, Any]] = []
    for name in names:
        clip = first if name.endswith("-5fps") else name
        camera: dict[str, Any] = {"id": name}
        if server is not None:
            camera["url"] = server.url(clip)
        else:
            camera.update(url=clips[clip].name, loop=True)
        if name.endswith("-5fps"):
            camera["analysis_fps"] = 5.0
        camera["analytics"] = BIKES_ANALYTICS if clip.startswith("bikes") else VTEST_ANALYTICS
        cameras.append(camera)
    return cameras


def sample_feeds(feeds: int) -> tuple[Path, list[dict[str, Any]]]:
    """Camera configs for ``feeds`` live-paced looping files of the 640x360 H.264 sample
    clips, alternately vtest.avi and bikes.mp4 (ids ``vtest-00``, ``bikes-01``, ...), each
    with the demo's zones, lines and rules; and the media root their URLs are relative to.
    The clips are encoded on first use and cached (:func:`feedtag.bench.footage.sample_h264`).
    """
    clips = {"vtest": sample_h264("vtest", 640, 360), "bikes": sample_h264("bikes", 640, 360)}
    cameras: list[dict[str, Any]] = []
    for i in range(feeds):
        name = "vtest" if i % 2 == 0 else "bikes"
        cameras.append({
            "id": f"{name}-{i:02d}", "url": clips[name].name, "loop": True,
            "analytics": VTEST_ANALYTICS if name == "vtest" else BIKES_ANALYTICS,
        })  # fmt: skip
    return clips["vtest"].parent, cameras
