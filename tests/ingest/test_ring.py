"""Event clips: the packet ring and remuxing without re-encoding, from a file and live RTSP."""

from __future__ import annotations

import time
from pathlib import Path

import av
import pytest

from feedtag.ingest.camera import CameraIngest
from feedtag.ingest.handoff import FrameQueue
from feedtag.ingest.ring import ClipError, PacketRing, RingPacket, StreamTemplate, write_clip

from ..conftest import RtspServer, wait_for
from .test_camera import make_config


def synthetic(count: int, fps: int = 25, gop: int = 25) -> list[RingPacket]:
    return [RingPacket(b"\x00", i, i, i % gop == 0, i / fps) for i in range(count)]


@pytest.mark.parametrize(
    ("seconds", "count", "first", "last"),
    [(2.0, 100, 1.0, 3.96), (1.0, 60, 1.0, 2.36), (10.0, 50, 0.0, 1.96), (0.5, 30, 0.0, 1.16)],
)
def test_ring_starts_at_a_keyframe_and_covers_its_seconds(
    seconds: float, count: int, first: float, last: float
) -> None:
    ring = PacketRing(seconds)
    for packet in synthetic(count):
        ring.append(packet)
    packets = ring.snapshot()
    assert packets[0].keyframe
    assert packets[0].t_s == pytest.approx(first) and packets[-1].t_s == pytest.approx(last)
    assert packets[-1].t_s - packets[0].t_s >= min(seconds, last) - 1e-9


def test_ring_drops_whole_gops_at_the_packet_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("feedtag.ingest.ring.MAX_PACKETS", 30)
    ring = PacketRing(60.0)  # time alone would keep everything
    for packet in synthetic(100, gop=10):
        ring.append(packet)
    packets = ring.snapshot()
    assert [p.pts for p in packets] == list(range(70, 100))
    assert ring.bytes == 30
    ring.reset(StreamTemplate("h264", 64, 64, __import__("fractions").Fraction(1, 25)))
    assert ring.snapshot() == [] and ring.bytes == 0


def test_ring_ignores_packets_before_the_first_keyframe() -> None:
    ring = PacketRing(5)
    ring.append(RingPacket(b"p", 0, 0, False, 0.0))
    assert ring.snapshot() == []


def test_no_keyframe_no_clip(tmp_path: Path) -> None:
    template = StreamTemplate("h264", 64, 64, __import__("fractions").Fraction(1, 25))
    with pytest.raises(ClipError, match="no keyframe"):
        write_clip([RingPacket(b"p", 0, 0, False, 0.0)], template, tmp_path / "c.mp4", 0, 1)


def packet_bytes(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(video=0) if p.size]


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def ring_of_file(clip: Path) -> PacketRing:
    """A 30 s packet ring that a file camera has read ``clip`` into, to its end."""
    config = make_config(clip.parent, url=clip.name, realtime=False)
    ring = PacketRing(30)
    ingest = CameraIngest(config.cameras[0], config.reconnect, FrameQueue(100), ring=ring)
    ingest.start()
    assert ingest.join(30)
    return ring


def test_clip_from_a_file_is_remuxed_not_reencoded(vtest_clip: Path, tmp_path: Path) -> None:
    ring = ring_of_file(vtest_clip)
    assert ring.template is not None
    clip = write_clip(ring.snapshot(), ring.template, tmp_path / "event.mp4", 1.5, 2.96)
    assert decoded_frames(clip) == 50  # from the keyframe at 1.0 s to 2.96 s
    source = packet_bytes(vtest_clip)[25:75]
    copied = packet_bytes(clip)
    assert len(copied) == len(source)
    for original, remuxed in zip(source, copied, strict=True):
        # the coded slice is carried over byte for byte; the muxers only add an access unit
        # delimiter (6 bytes) and, before keyframes, the parameter sets
        assert original[-64:] in remuxed
        assert 0 <= len(remuxed) - len(original) <= 64
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.system
def test_clip_from_live_rtsp(rtsp_server: RtspServer, tmp_path: Path) -> None:
    config = make_config(None, url=rtsp_server.url("vtest"))
    ring = PacketRing(10)
    ingest = CameraIngest(config.cameras[0], config.reconnect, FrameQueue(4), ring=ring)
    ingest.start()
    try:
        wait_for(lambda: len(ring.snapshot()) > 25 * 4, 20, what="4 s of packets")
        time.sleep(0.2)
    finally:
        ingest.stop()
        assert ingest.join(5)
    packets = ring.snapshot()
    assert ring.template is not None and ring.template.codec == "h264"
    end = packets[-1].t_s
    clip = write_clip(packets, ring.template, tmp_path / "live.mp4", end - 2.5, end)
    frames = decoded_frames(clip)
    assert 60 <= frames <= 25 * 4  # 2.5 s plus back to the keyframe before
    with av.open(str(clip)) as container:
        assert container.streams.video[0].codec_context.name == "h264"


def test_clips_pending_at_shutdown_are_written_with_the_post_roll_there_is(
    vtest_clip: Path, tmp_path: Path
) -> None:
    from feedtag.core import Event, EventKind
    from feedtag.runtime.clips import ClipWriter
    from feedtag.store.media import MediaStore

    ring = ring_of_file(vtest_clip)
    packets = ring.snapshot()
    media = MediaStore(tmp_path / "media")
    clips = ClipWriter(media, lambda camera: ring, preroll_s=1.0, postroll_s=600.0)
    clips.start()
    # an event at the newest packet: its ten-minute post-roll will never come
    event = Event("ev1", "cam", EventKind.CROWDING, "r", packets[-1].wall)
    assert clips.request(event)
    time.sleep(0.3)
    assert clips.written == 0  # still waiting for its post-roll
    clips.stop()
    assert (clips.written, clips.failed) == (1, 0)
    clip = media.event_path("clips", "cam", "ev1", event.started_at)
    assert decoded_frames(clip) >= 25  # from the keyframe before the pre-roll to the end
    # the clip's remux is the camera's media cost, and leaves with the camera
    assert clips.cpu_s()["cam"] > 0
    clips.forget("cam")
    assert clips.cpu_s() == {}


def test_a_cameras_clips_are_part_of_its_media_cost(vtest_clip: Path, tmp_path: Path) -> None:
    """The event pipeline reports a camera's clip writing in its ``media_cpu_s``, on top of
    its snapshots and thumbnails, and nothing for a camera without clips."""
    from feedtag.config import validate_config
    from feedtag.core import Event, EventKind
    from feedtag.runtime.clips import ClipWriter
    from feedtag.runtime.events import EventPipeline
    from feedtag.store.media import MediaStore

    from ..runtime.test_event_pipeline import started_store

    ring = ring_of_file(vtest_clip)
    packets = ring.snapshot()
    media = MediaStore(tmp_path / "media")
    cameras = validate_config({"media_root": str(tmp_path), "cameras": [
        {"id": "cam", "url": "cam.mp4"}, {"id": "other", "url": "other.mp4"}]}).cameras  # fmt: skip
    _, writer = started_store(tmp_path)
    events = EventPipeline(cameras, ["person"], writer, media)
    clips = ClipWriter(media, lambda camera: ring if camera == "cam" else None, 1.0, 1.0)
    events.clips = clips
    clips.start()
    assert clips.request(
        Event("ev1", "cam", EventKind.CROWDING, "r", packets[len(packets) // 2].wall)
    )
    wait_for(lambda: clips.written == 1, 10, what="the clip")
    costs = events.media_cpu_s()
    assert costs["cam"] > 0 and costs["other"] == 0, costs
    assert costs["cam"] == pytest.approx(clips.cpu_s()["cam"])
    events.remove_camera("cam")
    assert "cam" not in clips.cpu_s()
    clips.stop()
    events.close()
    writer.close()
