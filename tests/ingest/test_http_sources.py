"""HTTP sources for real: HLS (playlist + segments), MJPEG (multipart), progressive MP4, and
an HLS playlist that tries to make FFmpeg read a local file."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from functools import partial
from pathlib import Path

import av
import pytest

from feedtag.core import CameraState, DecodeMode
from feedtag.errors import SourceError
from feedtag.ingest.source import OpenOptions, open_source
from feedtag.urls import CameraUrl

from ..conftest import wait_for
from .test_faults import camera_ingest

BOUNDARY = b"feedtagframe"


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files from the served folder, plus an endless MJPEG stream at /mjpeg."""

    jpegs: list[bytes] = []  # noqa: RUF012 - set once per server before it starts
    stop: threading.Event

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        if self.path != "/mjpeg":
            super().do_GET()
            return
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY.decode()}")
        self.end_headers()
        index = 0
        try:
            while not self.stop.is_set():
                jpeg = self.jpegs[index % len(self.jpegs)]
                self.wfile.write(
                    b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\n"
                    + f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n"
                )  # fmt: skip
                index += 1
                time.sleep(0.1)  # 10 fps, like a cheap MJPEG camera
        except (BrokenPipeError, ConnectionResetError):
            pass


def jpeg_frames(clip: Path, count: int) -> list[bytes]:
    out = []
    with av.open(str(clip)) as container:
        encoder = av.CodecContext.create("mjpeg", "w")
        encoder.width, encoder.height = 320, 180
        encoder.pix_fmt = "yuvj420p"
        encoder.time_base = Fraction(1, 10)
        for index, frame in enumerate(container.decode(video=0)):
            small = frame.reformat(width=320, height=180, format="yuvj420p")
            small.pts, small.time_base = index, encoder.time_base
            out += [bytes(packet) for packet in encoder.encode(small)]  # type: ignore[attr-defined]
            if len(out) >= count:
                break
    return out


@pytest.fixture
def http_root(tmp_path: Path, vtest_ts_clip: Path, vtest_clip: Path) -> Iterator[tuple[str, Path]]:
    (tmp_path / "seg0.ts").write_bytes(vtest_ts_clip.read_bytes())
    (tmp_path / "clip.mp4").write_bytes(vtest_clip.read_bytes())
    playlist = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
    (tmp_path / "index.m3u8").write_text(playlist + "#EXTINF:2.0,\nseg0.ts\n#EXT-X-ENDLIST\n")
    (tmp_path / "evil.m3u8").write_text(
        playlist + "#EXTINF:2.0,\nfile:///etc/hostname\n#EXT-X-ENDLIST\n"
    )
    handler = type("TestHandler", (Handler,), {"jpegs": jpeg_frames(vtest_clip, 20),
                                              "stop": threading.Event()})  # fmt: skip
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(handler, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    handler.stop.set()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("path", "codec", "frames"),
    [("/index.m3u8", "h264", 2), ("/clip.mp4", "h264", 4), ("/mjpeg", "mjpeg", 3)],
)
def test_http_sources_deliver_frames(
    http_root: tuple[str, Path], path: str, codec: str, frames: int
) -> None:
    base, _ = http_root
    ingest = camera_ingest(base + path)
    ingest.start()
    try:
        wait_for(lambda: ingest.status().counters.frames_analysed >= frames, 20, what="frames")
        status = ingest.status()
    finally:
        ingest.stop()
        assert ingest.join(5)
    assert status.codec == codec
    if codec == "mjpeg":
        # every JPEG is a keyframe: keyframe mode decodes only the ones analysis needs
        assert status.mode is DecodeMode.KEYFRAMES
        assert status.counters.frames_decoded < status.counters.packets


def test_hls_playlist_cannot_reach_local_files(http_root: tuple[str, Path]) -> None:
    base, _ = http_root
    url = CameraUrl.parse(base + "/evil.m3u8")
    with pytest.raises(SourceError), open_source(url, OpenOptions(5, 5)) as container:
        for _ in container.demux(video=0):
            pass


def test_http_live_source_end_is_a_disconnect(http_root: tuple[str, Path]) -> None:
    base, _ = http_root
    ingest = camera_ingest(base + "/clip.mp4")
    ingest.start()
    try:
        status = wait_for(
            lambda: (s := ingest.status()).counters.reconnects >= 1 and s, 20, what="reconnect"
        )
    finally:
        ingest.stop()
        assert ingest.join(5)
    assert status.state in (CameraState.OFFLINE, CameraState.ONLINE)
    assert status.counters.frames_analysed >= 4
