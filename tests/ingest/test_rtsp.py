"""Live ingest against a real RTSP server (GStreamer) serving real footage, looping."""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from collections.abc import Callable
from urllib.parse import quote

import pytest

from feedtag.bench.footage import quiet_h264
from feedtag.config import validate_config
from feedtag.core import CameraState, CameraStatus, DecodeMode, PacketGateState
from feedtag.errors import SourceError
from feedtag.ingest.camera import CameraIngest
from feedtag.ingest.handoff import FrameQueue
from feedtag.ingest.source import OpenOptions, open_source
from feedtag.runtime.node import NodeEngine
from feedtag.urls import CameraUrl

from ..conftest import (
    RtspServer,
    free_port,
    require_service,
    resource_counts,
    rtsp_server_available,
    wait_for,
)
from ..test_urls import PASSWORD, assert_no_password
from .test_camera import ReadLog, assert_reads_held, at_the_floor, make_config
from .test_faults import MakeServer, garbage

pytestmark = pytest.mark.system

FAST_RECONNECT = {"initial_backoff_s": 0.3, "max_backoff_s": 1.0}


def ingest_for(url: str, **settings: object) -> CameraIngest:
    config = make_config(None, url=url, **settings)
    return CameraIngest(config.cameras[0], config.reconnect, FrameQueue(8))


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_live_keyframe_mode_decodes_only_keyframes(rtsp_server: RtspServer, transport: str) -> None:
    ingest = ingest_for(rtsp_server.url("vtest"), rtsp_transport=transport)
    ingest.start()
    try:
        wait_for(lambda: ingest.status().mode is DecodeMode.KEYFRAMES, 15, what="keyframe mode")
        time.sleep(0.5)
        before = ingest.status().counters
        time.sleep(5)
        status = ingest.status()
        after = status.counters
    finally:
        ingest.stop()
        assert ingest.join(5)
    keyframes = after.keyframes - before.keyframes
    decoded = after.frames_decoded - before.frames_decoded
    assert 4 <= keyframes <= 6  # one per second
    assert abs(decoded - keyframes) <= 1  # the decoder may hold one frame at the boundary
    assert after.packets - before.packets >= 100  # 25 fps arrived; 24 of 25 were skipped
    assert status.state is CameraState.ONLINE and status.codec == "h264"
    assert status.keyframe_interval_s == pytest.approx(1.0, abs=0.05)
    assert 0.7 <= status.analysed_fps <= 1.3


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_live_reads_are_held_between_the_keyframes_it_decodes(
    rtsp_server: RtspServer, transport: str
) -> None:
    """The socket holds what arrives while the camera sleeps: nothing is lost (every frame
    of 25 fps is read), the keyframes arrive on time."""
    config = make_config(None, url=rtsp_server.url("vtest"), rtsp_transport=transport)
    log = ReadLog()
    ingest = CameraIngest(config.cameras[0], config.reconnect, FrameQueue(8), ring=log)
    assert_reads_held(ingest, log)
    assert ingest.status().counters.decode_errors == 0


def test_the_packet_gate_reads_a_live_stream() -> None:
    """Over RTSP the keyframe flags and timestamps come from the RTP depacketizer, not a
    file's index: a still scene at the floor rate still gets most due keyframes left
    undecoded, and a frame still comes every gate.refresh_s."""
    require_service(rtsp_server_available(), "GStreamer RTSP server not installed")
    # a long clip: where the server loops it, the picture jumps and the gate sees a change
    server = RtspServer({"quiet": quiet_h264(640, 360, seconds=60)})
    server.start()
    try:
        config = make_config(
            None, url=server.url("quiet"), gate={"refresh_s": 6}, adaptive={"quiet_after_s": 1}
        )
        with at_the_floor(config) as ingest:
            wait_for(lambda: ingest.status().mode is DecodeMode.KEYFRAMES, 15, what="keyframes")
            wait_for(lambda: ingest.status().counters.keyframes_unchanged >= 1, 15, what="a skip")
            start = ingest.status().counters
            wait_for(
                lambda: ingest.status().counters.keyframes >= start.keyframes + 12,
                30,
                what="twelve seconds of stream",
            )
            end = ingest.status().counters
            assert ingest.status().packet_gate is PacketGateState.BELIEVED
    finally:
        server.kill()
    skipped = end.keyframes_unchanged - start.keyframes_unchanged
    decoded = end.frames_decoded - start.frames_decoded
    # 12 s at the floor (0.5 fps): 6 keyframes due; a refresh frame decoded every 6 s (two or
    # three in the window, by phase), and now and then one the lighting drift let through
    print(f"\nRTSP floor window: {skipped} left undecoded, {decoded} decoded")
    assert skipped >= 2 and 1 <= decoded <= 4 and 5 <= skipped + decoded <= 7, (skipped, decoded)
    assert end.stalls == start.stalls


def test_server_killed_and_restarted(make_rtsp_server: Callable[..., RtspServer]) -> None:
    server = make_rtsp_server()
    gc.collect()
    baseline = resource_counts()
    ingest = ingest_for(server.url("vtest"), read_timeout_s=2, stall_timeout_s=3)
    ingest.start()
    try:
        wait_for(lambda: ingest.status().state is CameraState.ONLINE, 15, what="online")
        server.kill()
        down = wait_for(
            lambda: (
                (s := ingest.status()).state in (CameraState.OFFLINE, CameraState.STALLED) and s
            ),
            10,
            what="offline",
        )
        server.start()
        wait_for(lambda: ingest.status().state is CameraState.ONLINE, 30, what="online again")
        status = ingest.status()
        assert status.counters.reconnects >= 1
        assert down.reason
    finally:
        ingest.stop()
        assert ingest.join(6)
    gc.collect()
    assert resource_counts() == baseline


def test_twenty_feeds_five_broken(
    rtsp_server: RtspServer,
    make_rtsp_server: Callable[..., RtspServer],
    tcp_server: MakeServer,
) -> None:
    hold = threading.Event()
    silent = tcp_server(lambda conn: hold.wait(60) and None)
    noise = tcp_server(garbage)
    locked = make_rtsp_server(user="admin", password="right")
    broken = {
        "refused": f"rtsp://127.0.0.1:{free_port()}/vtest",
        "silent": f"rtsp://127.0.0.1:{silent.port}/vtest",
        "garbage": f"http://127.0.0.1:{noise.port}/video",
        "wrong-path": rtsp_server.url("no-such-mount"),
        "unauthorized": locked.url("vtest"),
    }
    cameras = [
        {"id": f"ok{i:02d}", "url": rtsp_server.url("vtest" if i % 2 else "bikes")}
        for i in range(15)
    ]
    cameras += [
        {"id": name, "url": url, "open_timeout_s": 3, "read_timeout_s": 3}
        for name, url in broken.items()
    ]
    config = validate_config({"cameras": cameras, "reconnect": FAST_RECONNECT})
    engine = NodeEngine(config)
    engine.start()
    try:

        def by_id() -> dict[str, CameraStatus]:
            return {s.camera_id: s for s in engine.statuses()}

        wait_for(
            lambda: all(by_id()[c["id"]].state is CameraState.ONLINE for c in cameras[:15]),
            30,
            what="15 healthy cameras online",
        )
        before = by_id()
        time.sleep(8)
        after = by_id()
    finally:
        hold.set()
        assert engine.stop()
    for camera in cameras[:15]:
        camera_id = str(camera["id"])
        analysed = (
            after[camera_id].counters.frames_analysed - before[camera_id].counters.frames_analysed
        )
        # 8 at 1 fps. A camera holds its reads until just before its next keyframe, so on a
        # loaded machine (the full suite on 2 cores: 6 once in CI, 2026-12-06) a wake-up late
        # at either end of the window moves a frame out of it; a camera the broken ones held
        # up would be seconds behind.
        assert analysed >= 6, f"{camera_id} analysed {analysed} frames in 8 s"
    expected_reason = {
        "refused": "unreachable",  # connection refused: shown no further than that
        "silent": "no answer within",
        "garbage": "not a stream",
        "wrong-path": "404",
        "unauthorized": "401",
    }
    for name, reason in expected_reason.items():
        status = after[name]
        assert status.state is CameraState.OFFLINE, (name, status)
        assert reason in status.reason, (name, status.reason)
        assert status.counters.frames_analysed == 0


def test_credentials_never_leak(
    make_rtsp_server: Callable[..., RtspServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = make_rtsp_server(user="admin", password=PASSWORD)
    encoded = quote(PASSWORD, safe="")
    good = f"rtsp://admin:{encoded}@127.0.0.1:{server.port}/vtest"
    wrong = f"rtsp://admin:{encoded}x@127.0.0.1:{server.port}/vtest"
    query = f"rtsp://127.0.0.1:{free_port()}/vtest?user=admin&password={encoded}"

    seen: list[str] = []
    for url in (wrong, query):
        try:
            with open_source(CameraUrl.parse(url), OpenOptions(3, 3)):
                pass
        except SourceError as exc:
            seen += [str(exc), repr(exc), exc.url]
    assert len(seen) == 6

    cameras = [
        {"id": "good", "url": good},
        {"id": "wrong", "url": wrong},
        {"id": "query", "url": query},
        {"id": "field", "url": server.url("vtest"), "username": "admin", "password": PASSWORD},
    ]
    config = validate_config({"cameras": cameras, "reconnect": FAST_RECONNECT})
    engine = NodeEngine(config)
    engine.start()
    try:
        wait_for(
            lambda: all(
                s.state is CameraState.ONLINE
                for s in engine.statuses()
                if s.camera_id in ("good", "field")
            ),
            20,
            what="cameras with the right password online",
        )
        wait_for(
            lambda: all(s.counters.reconnects >= 1 for s in engine.statuses()
                        if s.camera_id in ("wrong", "query")),
            20,
        )  # fmt: skip
        statuses = [s.to_dict() for s in engine.statuses()]
    finally:
        assert engine.stop()
    reasons = {s["camera_id"]: s["reason"] for s in statuses}
    assert "401" in reasons["wrong"] and "unreachable" in reasons["query"]
    seen.append(json.dumps(statuses))
    seen += [r.getMessage() for r in caplog.records]
    seen += [repr(c) for c in config.cameras] + [config.model_dump_json()]
    for text in seen:
        assert_no_password(text)
