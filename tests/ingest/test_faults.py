"""Faults against real sockets: silent servers, streams that stop, bytes without frames,
garbage, 401 — each must end in the right state within its bound."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from feedtag.core import CameraState
from feedtag.errors import SourceInvalidData, SourceTimeout, SourceUnauthorized
from feedtag.ingest.camera import CameraIngest
from feedtag.ingest.handoff import FrameQueue
from feedtag.ingest.source import OpenOptions, open_source
from feedtag.urls import CameraUrl

from ..conftest import TcpServer, wait_for
from .test_camera import make_config

TS_PACKET = 188

Handler = Callable[[socket.socket], None]
MakeServer = Callable[[Handler], TcpServer]


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def http_stream(body: Callable[[socket.socket], None]) -> Handler:
    def handle(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: video/mp2t\r\n\r\n")
        body(conn)

    return handle


def unauthorized(conn: socket.socket) -> None:
    read_request(conn)
    conn.sendall(
        b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="cam"\r\n'
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )


def garbage(conn: socket.socket) -> None:
    """4 MiB of fixed random bytes, then the end of the body. Without the end, FFmpeg's probe
    (up to 5 MB) waited for more and the open ended at the read timeout instead, whenever no
    format happened to claim the bytes first (os.urandom made that a matter of luck)."""
    read_request(conn)
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
    noise = random.Random(7)
    for _ in range(64):
        conn.sendall(noise.randbytes(64 * 1024))
    conn.shutdown(socket.SHUT_WR)


def null_ts_packets(count: int) -> bytes:
    """MPEG-TS packets on the video PID carrying a PES header and random payload: the
    demuxer hands them on as packets, the decoder gets nothing it can decode."""
    out = bytearray()
    for index in range(count):
        header = bytes([0x47, 0x41, 0x00, 0x10 | (index & 0x0F)])  # PUSI, PID 0x100
        pes = b"\x00\x00\x01\xe0\x00\x00\x80\x00\x00"
        out += header + pes + os.urandom(TS_PACKET - len(header) - len(pes))
    return bytes(out)


def camera_ingest(url: str, **settings: object) -> CameraIngest:
    config = make_config(None, url=url, **settings)
    return CameraIngest(config.cameras[0], config.reconnect, FrameQueue(4))


def test_silent_server_open_fails_within_bound(tcp_server: MakeServer) -> None:
    stop = threading.Event()
    server = tcp_server(lambda conn: stop.wait(30) and None)
    for scheme in ("rtsp", "http"):
        url = CameraUrl.parse(f"{scheme}://127.0.0.1:{server.port}/stream")
        started = time.monotonic()
        with pytest.raises(SourceTimeout), open_source(url, OpenOptions(1.5, 1.5)):
            pass
        elapsed = time.monotonic() - started
        assert elapsed < 1.5 + 1.5, f"{scheme}: open took {elapsed:.1f} s"
    stop.set()


def test_unauthorized_and_garbage_are_named(tcp_server: MakeServer) -> None:
    url = CameraUrl.parse(f"http://127.0.0.1:{tcp_server(unauthorized).port}/x")
    with pytest.raises(SourceUnauthorized, match="401"), open_source(url, OpenOptions(3, 3)):
        pass
    url = CameraUrl.parse(f"http://127.0.0.1:{tcp_server(garbage).port}/x")
    with pytest.raises(SourceInvalidData), open_source(url, OpenOptions(5, 5)):
        pass


def test_stream_that_stops_sending_is_reported_stalled(
    tcp_server: MakeServer, vtest_ts_clip: Path
) -> None:
    clip = vtest_ts_clip.read_bytes()
    hold = threading.Event()

    def send_then_go_quiet(conn: socket.socket) -> None:
        conn.sendall(clip)
        hold.wait(30)  # connection stays open, nothing more is sent

    server = tcp_server(http_stream(send_then_go_quiet))
    ingest = camera_ingest(
        f"http://127.0.0.1:{server.port}/live.ts", read_timeout_s=1.5, stall_timeout_s=2.5
    )
    ingest.start()
    try:
        wait_for(lambda: ingest.status().counters.frames_decoded > 0, 10, what="frames")
        frames_done = time.monotonic()
        wait_for(lambda: ingest.status().state is CameraState.STALLED, 10, what="stalled")
        assert time.monotonic() - frames_done <= 2.5 + 1.0  # the watchdog bound, plus slack
        status = ingest.status()
        assert status.counters.stalls == 1
        assert "no data received for 1.5 s" in status.reason
    finally:
        hold.set()
        ingest.stop()
        assert ingest.join(5)


def test_bytes_without_frames_is_a_stall(tcp_server: MakeServer, vtest_ts_clip: Path) -> None:
    clip = vtest_ts_clip.read_bytes()
    stop = threading.Event()

    def send_then_babble(conn: socket.socket) -> None:
        conn.sendall(clip)
        while not stop.is_set():  # bytes keep arriving: 50 kB/s of undecodable packets
            conn.sendall(null_ts_packets(27))
            time.sleep(0.1)

    server = tcp_server(http_stream(send_then_babble))
    ingest = camera_ingest(
        f"http://127.0.0.1:{server.port}/live.ts", read_timeout_s=5, stall_timeout_s=3
    )
    ingest.start()
    try:
        wait_for(lambda: ingest.status().counters.frames_decoded > 0, 10, what="frames")
        bytes_then = ingest.status().counters.bytes
        wait_for(lambda: ingest.status().state is CameraState.STALLED, 10, what="stalled")
        status = ingest.status()
        assert status.counters.bytes > bytes_then + 50_000, "bytes kept arriving"
        assert "no decoded frame for" in status.reason
        assert "while data still arrives" in status.reason
    finally:
        stop.set()
        ingest.stop()
        assert ingest.join(5)
