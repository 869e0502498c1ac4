"""CameraIngest on real footage: decode modes, pacing, resource hygiene."""

from __future__ import annotations

import contextlib
import gc
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from feedtag.bench.footage import quiet_h264
from feedtag.config import validate_config
from feedtag.config.models import CameraConfig, FeedtagConfig
from feedtag.core import AnalysisLevel, CameraState, DecodeMode, PacketGateState
from feedtag.ingest.camera import CameraIngest
from feedtag.ingest.handoff import FrameQueue
from feedtag.ingest.rate import AdaptiveRate
from feedtag.ingest.ring import PacketRing, RingPacket
from feedtag.ingest.source import OpenOptions, open_source
from feedtag.urls import CameraUrl

from ..conftest import resource_counts, wait_for


def make_config(media_root: Path | None, **camera: Any) -> FeedtagConfig:
    camera.setdefault("id", "cam")
    data: dict[str, Any] = {"cameras": [camera]}
    if media_root is not None:
        data["media_root"] = str(media_root)
    data["reconnect"] = {"initial_backoff_s": 0.2, "max_backoff_s": 1.0}
    return validate_config(data)


def run_to_end(
    camera: CameraConfig, config: FeedtagConfig, queue_size: int = 10_000
) -> CameraIngest:
    ingest = CameraIngest(camera, config.reconnect, FrameQueue(queue_size))
    ingest.start()
    assert ingest.join(60)
    return ingest


def keyframe_count(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for p in container.demux(stream) if p.size and p.is_keyframe)


def test_keyframe_mode_decodes_exactly_the_keyframes(vtest_clip: Path) -> None:
    config = make_config(vtest_clip.parent, url=vtest_clip.name, realtime=False)
    ingest = run_to_end(config.cameras[0], config)
    status = ingest.status()
    keyframes = keyframe_count(vtest_clip)
    assert keyframes == 4 and status.counters.keyframes == keyframes
    assert status.mode is DecodeMode.KEYFRAMES
    assert status.keyframe_interval_s == pytest.approx(1.0)
    # The first GOP is decoded whole while the interval is measured (until the second
    # keyframe); from then on only keyframes reach the decoder.
    assert status.counters.frames_decoded == 25 + (keyframes - 1)
    assert status.counters.frames_analysed == keyframes
    frames = [ingest.queue.get_nowait() for _ in range(keyframes)]
    assert all(f is not None and f.keyframe and f.image.shape == (360, 640, 3) for f in frames)
    assert [f.pts_s for f in frames if f] == pytest.approx([0.0, 1.0, 2.0, 3.0])


def test_sampled_mode_decodes_everything_converts_few(vtest_clip: Path) -> None:
    config = make_config(vtest_clip.parent, url=vtest_clip.name, realtime=False, analysis_fps=2)
    ingest = run_to_end(config.cameras[0], config)
    status = ingest.status()
    assert status.mode is DecodeMode.SAMPLED
    assert status.counters.frames_decoded == 100
    assert status.counters.frames_analysed == 8  # 2 per second over 4 s


def test_decode_all_forces_sampled(vtest_clip: Path) -> None:
    config = make_config(vtest_clip.parent, url=vtest_clip.name, realtime=False, decode="all")
    status = run_to_end(config.cameras[0], config).status()
    assert status.mode is DecodeMode.SAMPLED
    assert (status.counters.frames_decoded, status.counters.frames_analysed) == (100, 4)


def test_analysis_size_is_applied(vtest_clip: Path) -> None:
    config = make_config(vtest_clip.parent, url=vtest_clip.name, realtime=False, analysis_width=320)
    ingest = run_to_end(config.cameras[0], config)
    frame = ingest.queue.get_nowait()
    assert frame is not None and frame.size == (320, 180)


def test_realtime_loop_paces_and_continues_time(vtest_clip: Path) -> None:
    config = make_config(vtest_clip.parent, url=vtest_clip.name, loop=True)
    ingest = CameraIngest(config.cameras[0], config.reconnect, FrameQueue(100))
    started = time.monotonic()
    ingest.start()
    try:
        wait_for(lambda: ingest.status().counters.frames_analysed >= 6, 15, what="6 frames")
    finally:
        ingest.stop()
        assert ingest.join(5)
    elapsed = time.monotonic() - started
    assert 4.5 <= elapsed <= 8, "6 frames at 1 fps take about 5 s of live pacing"
    times = [f.pts_s for f in iter(ingest.queue.get_nowait, None)]
    assert times[:6] == pytest.approx([0, 1, 2, 3, 4, 5], abs=0.05)  # across the 4 s loop
    assert ingest.status().counters.reconnects == 0  # looping is not a reconnect


class ReadLog(PacketRing):
    """A ring that also keeps every packet ingest read, with when it read it, across the
    reconnects and loops that reset a ring."""

    def __init__(self) -> None:
        super().__init__(seconds=2.0)
        self.read: list[RingPacket] = []

    def append(self, packet: RingPacket) -> None:
        self.read.append(packet)
        super().append(packet)


def assert_reads_held(ingest: CameraIngest, log: ReadLog, seconds: float = 5.0) -> None:
    """Run ``ingest`` (a live or live-paced camera at 1 fps, a keyframe a second) until it
    decodes keyframes only, then ``seconds`` more; between keyframes its reads are held:
    packets are read in a few bursts a second, not one wake per packet, and each keyframe
    is read when it is due (its arrival against its stream time as steady as the source's)."""
    ingest.start()
    try:
        wait_for(lambda: ingest.status().mode is DecodeMode.KEYFRAMES, 15, what="keyframe mode")
        time.sleep(1.5)  # a whole group of pictures measured in keyframe mode
        since = time.time()
        time.sleep(seconds)
        status = ingest.status()
    finally:
        ingest.stop()
        assert ingest.join(5)
    packets = [packet for packet in log.read if packet.wall >= since]
    stream_s, offset = [], 0.0  # a looping file's timestamps restart with each pass
    for before, packet in zip([None, *packets], packets, strict=False):
        if before is not None and packet.t_s + offset <= stream_s[-1]:
            offset = stream_s[-1] + 0.04 - packet.t_s
        stream_s.append(packet.t_s + offset)
    span_s = stream_s[-1] - stream_s[0]
    assert len(packets) >= 20 * span_s >= 20 * (seconds - 1)  # 25 fps arrived
    wakes = 1 + sum(b.wall - a.wall > 0.005 for a, b in itertools.pairwise(packets))
    assert wakes <= 12 * span_s, f"{wakes} separate reads in {span_s:.1f} s of stream"
    lateness = [packet.wall - t_s for packet, t_s in zip(packets, stream_s, strict=True)]
    keyframes = [late for late, packet in zip(lateness, packets, strict=True) if packet.keyframe]
    assert len(keyframes) >= seconds - 1
    assert max(keyframes) - min(keyframes) <= 0.1, "a keyframe was read late"
    assert max(lateness) - min(lateness) >= 0.4, "no read was held"
    assert status.state is CameraState.ONLINE and 0.7 <= status.analysed_fps <= 1.3


def test_a_live_paced_file_is_read_in_bursts_between_keyframes(vtest_clip: Path) -> None:
    config = make_config(vtest_clip.parent, url=vtest_clip.name, loop=True)
    log = ReadLog()
    assert_reads_held(
        CameraIngest(config.cameras[0], config.reconnect, FrameQueue(100), ring=log), log
    )


@pytest.mark.parametrize(
    ("due_in_s", "min_s", "max_s"),
    [
        (-2.5, 1.0, 3.0),  # started 2.5 s ago: the first 3 frames at once, then 1 a second
        (-60.0, 0.0, 1.5),  # long due: the whole 4 s clip as fast as it is read
    ],
)
def test_a_fixed_timeline_catches_up_then_paces(
    vtest_clip: Path, due_in_s: float, min_s: float, max_s: float
) -> None:
    """A file on a fixed ``origin`` stamps each frame origin + stream time, reads the
    frames already due at once, and paces the rest; the queue waits instead of dropping."""
    origin = time.time() + due_in_s
    config = make_config(vtest_clip.parent, url=vtest_clip.name, origin=origin)
    camera = config.cameras[0]
    assert camera.lossless
    started = time.monotonic()
    ingest = run_to_end(camera, config)
    elapsed = time.monotonic() - started
    assert min_s <= elapsed <= max_s, elapsed
    frames = [ingest.queue.get_nowait() for _ in range(4)]
    assert [f.wall_time for f in frames if f] == pytest.approx([origin + t for t in range(4)])


def test_queue_drops_oldest_and_counts(vtest_clip: Path) -> None:
    config = make_config(vtest_clip.parent, url=vtest_clip.name, realtime=False, analysis_fps=5)
    ingest = run_to_end(config.cameras[0], config, queue_size=2)
    status = ingest.status()
    assert status.counters.frames_analysed == 20
    assert status.counters.frames_dropped == {"queue_full": 18}
    kept = [ingest.queue.get_nowait(), ingest.queue.get_nowait()]
    assert [f.index for f in kept if f] == [18, 19]  # the newest survive


def test_end_of_file_stops_the_camera(vtest_clip: Path) -> None:
    config = make_config(vtest_clip.parent, url=vtest_clip.name, realtime=False)
    status = run_to_end(config.cameras[0], config).status()
    assert status.state is CameraState.STOPPED and status.reason == "end of file"


def test_missing_file_goes_offline_and_retries(tmp_path: Path) -> None:
    config = make_config(tmp_path, url="missing.mp4")
    ingest = CameraIngest(config.cameras[0], config.reconnect, FrameQueue(2))
    ingest.start()
    try:
        status = wait_for(
            lambda: (s := ingest.status()).counters.reconnects >= 2 and s, 10, what="retries"
        )
    finally:
        ingest.stop()
        assert ingest.join(5)
    assert status.state is CameraState.OFFLINE
    assert "no such file" in status.reason


def test_spent_restart_budget_cools_down(tmp_path: Path) -> None:
    config = validate_config(
        {
            "media_root": str(tmp_path),
            "cameras": [{"id": "cam", "url": "missing.mp4"}],
            "reconnect": {
                "initial_backoff_s": 0.05,
                "max_backoff_s": 0.05,
                "restart_budget": 3,
                "restart_window_s": 60,
                "cooldown_s": 30,
            },
        }
    )
    ingest = CameraIngest(config.cameras[0], config.reconnect, FrameQueue(2))
    ingest.start()
    try:
        status = wait_for(lambda: "restart budget spent" in (s := ingest.status()).reason and s, 10)
    finally:
        ingest.stop()
        assert ingest.join(5)
    assert status.state is CameraState.OFFLINE
    assert status.counters.reconnects == 4  # three within budget, then the cool-down
    assert status.next_retry_in_s is not None and 25 < status.next_retry_in_s <= 30
    assert "no such file" in status.reason  # the cause is still named


def test_open_decode_close_cycles_leak_nothing(vtest_clip: Path) -> None:
    url = CameraUrl.parse(vtest_clip.name, media_root=vtest_clip.parent)
    options = OpenOptions()

    def cycle() -> None:
        with open_source(url, options) as container:
            stream = container.streams.video[0]
            for index, frame in enumerate(container.decode(stream)):
                frame.to_ndarray(width=320, height=180, format="rgb24")
                if index == 2:
                    break

    for _ in range(5):  # warm up lazy library state before the baseline
        cycle()
    gc.collect()
    threads_before, fds_before = resource_counts()
    for _ in range(200):
        cycle()
    gc.collect()
    assert resource_counts() == (threads_before, fds_before)


@pytest.mark.parametrize(
    ("level", "mode", "analysed", "decoded"),
    [
        # tracking, 5 fps on a 1 s GOP: every frame decoded, 5 a second converted
        (AnalysisLevel.TRACKING, DecodeMode.SAMPLED, 20, 100),
        # the floor, 0.5 fps: the first GOP (measuring), then only the due keyframe at 2 s
        (AnalysisLevel.FLOOR, DecodeMode.KEYFRAMES, 2, 26),
    ],
)
def test_the_ingest_samples_at_the_rate_its_controller_sets(
    vtest_clip: Path, level: AnalysisLevel, mode: DecodeMode, analysed: int, decoded: int
) -> None:
    config = make_config(vtest_clip.parent, url=vtest_clip.name, realtime=False)
    camera = config.cameras[0]
    rate = AdaptiveRate.for_camera(camera)  # 0.5 / 1 / 5 fps
    if level is AnalysisLevel.TRACKING:
        rate.observe(0.0, appeared=True, moving_tracks=True, near_rule_motion=True)
    else:
        rate.observe(0.0, appeared=False, moving_tracks=False)
        rate.observe(60.0, appeared=False, moving_tracks=False)
    assert rate.level is level
    ingest = CameraIngest(camera, config.reconnect, FrameQueue(10_000), rate=rate)
    ingest.start()
    assert ingest.join(60)
    status = ingest.status()
    assert status.mode is mode and status.analysis_level is level
    assert status.target_fps == rate.target_fps
    assert status.counters.frames_analysed == analysed
    assert status.counters.frames_decoded == decoded


@contextlib.contextmanager
def at_the_floor(config: FeedtagConfig) -> Iterator[CameraIngest]:
    """The first camera of ``config`` ingesting at the floor rate, with an analysis that
    tells its rate nothing new ever happens; stopped on exit."""
    camera = config.cameras[0]
    rate = AdaptiveRate.for_camera(camera)
    rate.observe(0.0, appeared=False, moving_tracks=False)
    rate.observe(camera.adaptive.quiet_after_s, appeared=False, moving_tracks=False)
    assert rate.level is AnalysisLevel.FLOOR
    queue = FrameQueue(10_000)
    ingest = CameraIngest(camera, config.reconnect, queue, rate=rate)
    done = threading.Event()

    def analysis() -> None:
        while not done.is_set():
            frame = queue.get(timeout=0.1)
            if frame is not None:
                rate.observe(frame.pts_s, appeared=False, moving_tracks=False)

    observer = threading.Thread(target=analysis, daemon=True)
    observer.start()
    ingest.start()
    try:
        yield ingest
    finally:
        ingest.stop()
        done.set()
        assert ingest.join()
        observer.join(5)


@pytest.mark.slow
def test_keyframes_the_packet_gate_leaves_undecoded_are_not_a_stall() -> None:
    """A live-paced still scene at the floor rate: its keyframes are left undecoded for up
    to gate.refresh_s (6 s here), longer than the stall watchdog's 4 s; the camera stays
    online and nothing counts as a stall."""
    path = quiet_h264(640, 360, seconds=60)
    config = make_config(
        path.parent,
        url=path.name,
        stall_timeout_s=2,
        gate={"refresh_s": 6},
        adaptive={"quiet_after_s": 1},
    )
    with at_the_floor(config) as ingest:
        wait_for(lambda: ingest.status().counters.keyframes_unchanged >= 8, 30, what="skips")
        status = ingest.status()
    assert status.state is CameraState.ONLINE and status.counters.stalls == 0
    assert status.packet_gate is PacketGateState.BELIEVED
    # the first GOP is decoded whole while the keyframe interval is measured (25 frames),
    # then keyframes at the floor rate while the baseline builds, then one in six
    assert status.counters.frames_decoded <= 25 + 5
