"""Silent and half-open servers, end to end through the node engine: one that accepts and
never answers, an HTTP server that answers with headers and then stalls, an RTSP server that
answers OPTIONS and then stalls.

``tests/ingest/test_faults.py`` already proves that a silent server's open fails within its
bound and that a stream which stops sending after frames is reported stalled. What these add:
the reconnect attempts really back off as the :class:`~feedtag.ingest.policies.Backoff`
policy says (measured on the server, from one attempt's hang-up to the next connection), the
status names the timeout without credentials or server paths, and ``NodeEngine.stop``
returns within 5 s while every camera is blocked in an open or a read.
"""

from __future__ import annotations

import gc
import itertools
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from feedtag.config import validate_config
from feedtag.core import CameraState, CameraStatus
from feedtag.runtime.node import NodeEngine

from ..conftest import TcpServer, resource_counts, wait_for

PASSWORD = "s3cret-Pw"
#: the reconnect policy under test: delays 0.25, 0.5, 1, 2, 2 ... s, each within +-10 %
BACKOFF = {"initial_backoff_s": 0.25, "max_backoff_s": 2.0, "multiplier": 2.0, "jitter": 0.1}
#: short timeouts keep the attempts within a few seconds; the read timeout (FFmpeg's socket
#: timeout for RTSP and HTTP) is the one that ends an open the server never answers
TIMEOUTS = {"open_timeout_s": 2.0, "read_timeout_s": 0.5}
ATTEMPTS = 4  # four waits: 0.25, 0.5, 1 and 2 s (the cap)
#: how late a measured delay may be: the thread's wake-up and the server noticing the hang-up
SLACK_S = 0.15
SHUTDOWN_BOUND_S = 5.0

MakeServer = Callable[[Callable[[socket.socket], None]], TcpServer]


@dataclass
class Attempt:
    """One connection as the server saw it: when it came, when the client hung up."""

    connected: float
    closed: float | None = None


@dataclass
class Log:
    attempts: list[Attempt] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def open_now(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].closed is None


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def say_nothing(conn: socket.socket) -> None:
    """(a) Accept, read nothing, answer nothing."""


def http_headers_then_stall(conn: socket.socket) -> None:
    """(b) Answer a GET with 200 and a video content type, then send no body."""
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nCache-Control: no-cache\r\n\r\n")


def rtsp_options_then_stall(conn: socket.socket) -> None:
    """(c) Answer OPTIONS like a camera, then never answer DESCRIBE."""
    request = read_request(conn)
    found = re.search(rb"CSeq:\s*(\d+)", request)
    cseq = found[1] if found else b"1"
    conn.sendall(
        b"RTSP/1.0 200 OK\r\nCSeq: " + cseq + b"\r\n"
        b"Public: OPTIONS, DESCRIBE, SETUP, TEARDOWN, PLAY, PAUSE\r\n\r\n"
    )  # fmt: skip


def recording(log: Log, reply: Callable[[socket.socket], None]) -> Callable[[socket.socket], None]:
    """A handler that logs the attempt, replies, then reads (and drops) whatever comes until
    the client hangs up."""

    def handle(conn: socket.socket) -> None:
        attempt = Attempt(time.monotonic())
        log.attempts.append(attempt)
        try:
            reply(conn)
            conn.settimeout(0.02)
            while not log.stop.is_set():
                try:
                    if not conn.recv(4096):
                        break
                except TimeoutError:
                    continue
        finally:
            attempt.closed = time.monotonic()

    return handle


CASES = [
    pytest.param("rtsp", say_nothing, id="a-accepts-never-answers"),
    pytest.param("http", http_headers_then_stall, id="b-http-headers-then-stall"),
    pytest.param("rtsp", rtsp_options_then_stall, id="c-rtsp-options-then-stall"),
]


def engine_for(cameras: list[dict[str, Any]]) -> NodeEngine:
    config = validate_config({"reconnect": BACKOFF, "cameras": cameras})
    return NodeEngine(config)


def url_of(scheme: str, server: TcpServer) -> str:
    return f"{scheme}://viewer:{PASSWORD}@127.0.0.1:{server.port}/stream"


def assert_clear(status: CameraStatus) -> None:
    """A state and a reason an operator can act on: a timeout, no secrets, no paths."""
    assert status.state is CameraState.OFFLINE, status
    assert "no answer within" in status.reason, status.reason
    assert PASSWORD not in status.reason and PASSWORD not in status.url
    assert "viewer:***@" in status.url
    # Beside the masked URL (whose path is the camera's, not the server's), no path at all:
    # not the repository, not a library, not a temporary folder.
    assert "/" not in status.reason.replace(status.url, ""), status.reason


def expected_delays(count: int) -> list[float]:
    initial, top, factor = BACKOFF["initial_backoff_s"], BACKOFF["max_backoff_s"], 2.0
    return [min(top, initial * factor**k) for k in range(count)]


@pytest.fixture
def log() -> Iterator[Log]:
    log = Log()
    yield log
    log.stop.set()


@pytest.mark.parametrize(("scheme", "reply"), CASES)
def test_reconnects_back_off_and_status_names_the_timeout(
    tcp_server: MakeServer, log: Log, scheme: str, reply: Callable[[socket.socket], None]
) -> None:
    """Against each silent or half-open server, every open ends at the read timeout (none
    hangs), the waits between attempts grow as the Backoff policy says (0.25, 0.5, 1, 2 s
    +-10 % jitter, measured from the client's hang-up to its next connection), and the
    status says ``offline`` with a reason that names the timeout, masks the password and
    holds no path."""
    server = tcp_server(recording(log, reply))
    engine = engine_for([{"id": "cam", "url": url_of(scheme, server), **TIMEOUTS}])
    engine.start()
    try:
        wait_for(lambda: len(log.attempts) > ATTEMPTS, 20, what=f"{ATTEMPTS + 1} attempts")
        status = engine.statuses()[0]
    finally:
        assert engine.stop()
    attempts = log.attempts[: ATTEMPTS + 1]
    durations = [a.closed - a.connected for a in attempts[:-1] if a.closed is not None]
    assert len(durations) == ATTEMPTS
    # each open gives up at the read timeout, well before the open timeout
    assert all(d < TIMEOUTS["open_timeout_s"] for d in durations), durations
    gaps = [
        later.connected - earlier.closed
        for earlier, later in itertools.pairwise(attempts)
        if earlier.closed is not None
    ]
    jitter = BACKOFF["jitter"]
    for gap, base in zip(gaps, expected_delays(ATTEMPTS), strict=True):
        low, high = base * (1 - jitter) - SLACK_S / 3, base * (1 + jitter) + SLACK_S
        assert low <= gap <= high, f"waits {gaps} s; expected {base} s +-{jitter:.0%}"
    assert gaps[:4] == sorted(gaps[:4]), f"waits must grow until the cap: {gaps}"
    print(f"\n{scheme} {reply.__name__}: opens gave up after "
          f"{[round(d, 2) for d in durations]} s; waits {[round(g, 3) for g in gaps]} s; "
          f"reason {status.reason!r}")  # fmt: skip
    assert_clear(status)
    assert status.counters.reconnects >= ATTEMPTS


def send_clip_then_hold(clip: bytes, log: Log) -> Callable[[socket.socket], None]:
    """An HTTP camera that sends 2 s of video, then holds the connection without a byte."""

    def reply(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: video/mp2t\r\n\r\n" + clip)

    return recording(log, reply)


def ingest_threads(names: set[str]) -> list[threading.Thread]:
    """The live threads of the cameras ``names``."""
    return [thread for thread in threading.enumerate() if thread.name in names]


def test_shutdown_is_prompt_while_cameras_hang_in_open_and_read(
    tcp_server: MakeServer, vtest_ts_clip: Path
) -> None:
    """With default timeouts (open 10 s, read 5 s), four cameras are blocked in FFmpeg: three
    in an open against (a), (b) and (c), one in a read after its stream went quiet.
    ``NodeEngine.stop`` still returns within 5 s, and the threads it had to leave (PyAV's
    open and read cannot be interrupted from outside) end at their own timeouts: none
    lingers after that, and no file descriptor stays open."""
    gc.collect()
    baseline = resource_counts()
    logs = {name: Log() for name in ("a", "b", "c", "quiet")}
    replies = {"a": say_nothing, "b": http_headers_then_stall, "c": rtsp_options_then_stall}
    servers = {name: tcp_server(recording(logs[name], reply)) for name, reply in replies.items()}
    clip = vtest_ts_clip.read_bytes()
    servers["quiet"] = tcp_server(send_clip_then_hold(clip, logs["quiet"]))
    schemes = {"a": "rtsp", "b": "http", "c": "rtsp", "quiet": "http"}
    engine = engine_for(
        [{"id": name, "url": url_of(schemes[name], server)} for name, server in servers.items()]
    )
    engine.start()
    try:
        wait_for(lambda: all(log.open_now() for log in logs.values()), 10, what="open attempts")
        wait_for(lambda: engine.statuses()[3].counters.frames_decoded, 10, what="frames")
        time.sleep(1.0)  # every camera is now inside a blocking FFmpeg call
        assert all(log.open_now() and len(log.attempts) == 1 for log in logs.values())
        states = {s.camera_id: s.state for s in engine.statuses()}
    finally:
        started = time.monotonic()
        engine.stop()
        took = time.monotonic() - started
    assert took < SHUTDOWN_BOUND_S, f"stop took {took:.2f} s"
    assert states == {"a": CameraState.CONNECTING, "b": CameraState.CONNECTING,
                      "c": CameraState.CONNECTING, "quiet": CameraState.ONLINE}  # fmt: skip
    # the read timeout (5 s) of the blocking call bounds how long a left thread stays; a busy
    # machine adds to it (seen: over 10 s while another test run shared the two cores)
    names = {f"ingest-{name}" for name in servers}
    wait_for(lambda: not ingest_threads(names), 20, what="the ingest threads to end")
    left = time.monotonic() - started
    print(f"\nstop returned after {took:.2f} s with 4 cameras blocked in FFmpeg; "
          f"their threads ended {left:.1f} s after stop began")  # fmt: skip
    for log in logs.values():
        log.stop.set()
    for server in servers.values():
        server.close()
    wait_for(lambda: gc.collect() or resource_counts() == baseline, 5, what="the baseline")
