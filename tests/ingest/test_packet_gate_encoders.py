"""The packet gate on what real rate control makes of a scene that wakes up: the waking
benchmark feed (still for 20 s, then people walking through 8.5% of the view) re-encoded
by x264 the ways cameras are set up. Variable-rate encoders show the people in their packet
sizes; constant-rate ones hide them, so the gate must never believe those."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from feedtag.bench.footage import waking_h264
from feedtag.core import PacketGateState
from feedtag.ingest.policies import PacketGate

from ..conftest import wait_for
from .test_camera import at_the_floor, make_config

QUIET_S = 20
FPS = 25
#: x264 settings as a camera's substream would have them (a keyframe a second, no B-frames)
RATE_CONTROLS = {
    "crf": {"crf": "26"},
    "capped-vbr": {"crf": "23", "maxrate": "400k", "bufsize": "800k"},
    "cbr": {"b": "400k", "minrate": "400k", "maxrate": "400k", "bufsize": "400k"},
    "cbr-filler": {"b": "400k", "minrate": "400k", "maxrate": "400k", "bufsize": "400k",
                   "nal-hrd": "cbr"},
}  # fmt: skip


@pytest.fixture(scope="module")
def waking_frames() -> list[np.ndarray]:
    with av.open(str(waking_h264(640, 360, quiet_s=QUIET_S, busy_s=10))) as container:
        return [frame.to_ndarray(format="yuv420p") for frame in container.decode(video=0)]


def encode(frames: list[np.ndarray], target: Path, settings: dict[str, str]) -> Path:
    options = {"preset": "veryfast", "tune": "zerolatency",
               "x264-params": f"keyint={FPS}:min-keyint={FPS}:scenecut=0:bframes=0"}  # fmt: skip
    options.update({key: value for key, value in settings.items() if key != "b"})
    with av.open(str(target), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS, options=options)
        assert isinstance(stream, av.video.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        if "b" in settings:
            stream.codec_context.bit_rate = int(settings["b"].removesuffix("k")) * 1000
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
            frame.pts, frame.time_base = index, Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return target


def verdicts(path: Path) -> tuple[dict[int, bool], bool | None]:
    """Second of each keyframe -> whether the gate called the group before it unchanged,
    decoding every keyframe (the gate judges each group on its own); and whether the gate
    believed the last group's sizes."""
    gate, seen = PacketGate(), {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            t_s = float(packet.pts * stream.time_base)
            gate.observe(t_s, packet.size, packet.is_keyframe)
            if packet.is_keyframe:
                seen[round(t_s)] = gate.unchanged
                gate.decoded()
    return seen, gate.believed


@pytest.mark.parametrize("rate_control", ["crf", "capped-vbr"])
def test_variable_rate_shows_the_people_walking_in(
    rate_control: str, waking_frames: list[np.ndarray], tmp_path: Path
) -> None:
    seen, believed = verdicts(
        encode(waking_frames, tmp_path / "feed.mp4", RATE_CONTROLS[rate_control])
    )
    quiet = [seen[t] for t in range(8, QUIET_S + 1)]
    assert sum(quiet) >= len(quiet) - 1  # the still scene: keyframes left undecoded
    assert not seen[QUIET_S + 1]  # the group in which they walk in is a change
    assert believed  # at the end, with people walking


@pytest.mark.parametrize("rate_control", ["cbr", "cbr-filler"])
def test_constant_rate_is_never_believed(
    rate_control: str, waking_frames: list[np.ndarray], tmp_path: Path
) -> None:
    path = encode(waking_frames, tmp_path / "feed.mp4", RATE_CONTROLS[rate_control])
    kbit_s = path.stat().st_size * 8 / 1000 / 30
    assert 300 < kbit_s < 500  # the encoder did hold its rate
    seen, believed = verdicts(path)
    assert len(seen) >= 29 and not any(seen.values())
    assert believed is False


@pytest.mark.slow
def test_a_constant_rate_camera_decodes_every_floor_keyframe(
    waking_frames: list[np.ndarray], tmp_path: Path
) -> None:
    """The camera itself, live-paced at the floor rate on the constant-rate feed: nothing is
    left undecoded, and its status says why."""
    path = encode(waking_frames[: 12 * FPS], tmp_path / "cbr.mp4", RATE_CONTROLS["cbr"])
    config = make_config(
        path.parent, url=path.name, gate={"refresh_s": 6}, adaptive={"quiet_after_s": 1}
    )
    with at_the_floor(config) as ingest:
        wait_for(lambda: ingest.status().counters.keyframes >= 10, 20, what="ten keyframes")
        status = ingest.status()
    assert status.packet_gate is PacketGateState.NOT_BELIEVED
    assert status.counters.keyframes_unchanged == 0
