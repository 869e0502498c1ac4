"""The packet ring: the last seconds of a camera's compressed video, for event clips.

Clips are remuxed from these packets without re-encoding: copying compressed packets costs
almost nothing per feed, where decoding and encoding again would cost more than the whole
analysis. The ring always starts at a keyframe (a clip must begin with one to be playable)
and holds at least ``seconds`` of video.

Packets are kept in Annex B form (start codes, parameter sets in-band): that is what RTSP
cameras send, and MP4 sources are converted with FFmpeg's ``*_mp4toannexb`` bitstream
filters. A clip is first muxed to MPEG-TS, which needs nothing but those packets, then
remuxed to MP4 with the TS stream as the template, so the MP4 gets correct codec headers.

Clips are raw media: they show people unblurred, so recording is off by default and clips
are served only to a privileged role.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Final

import av
import av.video
from av.bitstream import BitStreamFilterContext

from feedtag.errors import FeedtagError

#: the ring holds at most this many packets whatever the frame rate (a memory bound)
MAX_PACKETS: Final = 10_000


@dataclass(frozen=True, slots=True)
class RingPacket:
    data: bytes
    pts: int | None
    dts: int | None
    keyframe: bool
    t_s: float  # stream time, seconds
    wall: float = 0.0  # arrival, Unix seconds: how events (wall-clock stamped) find packets


#: bitstream filters that turn MP4-style (length-prefixed) packets into Annex B; on input that
#: is Annex B already they pass packets through
ANNEX_B_FILTERS: Final = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}


@dataclass(frozen=True, slots=True)
class StreamTemplate:
    """What a muxer needs to know about the stream the packets came from."""

    codec: str
    width: int
    height: int
    time_base: Fraction

    @classmethod
    def of(cls, stream: av.video.VideoStream) -> StreamTemplate:
        context = stream.codec_context
        return cls(
            context.name, context.width, context.height, stream.time_base or Fraction(1, 90_000)
        )


class ClipError(FeedtagError):
    """A clip could not be written (no keyframe in range, or the muxer refused)."""


class PacketRing:
    """The last ``seconds`` of packets of one stream, starting at a keyframe. Thread-safe:
    the ingest thread appends, a clip writer takes snapshots.

    >>> ring = PacketRing(seconds=2.0)
    >>> for i in range(100):
    ...     ring.append(RingPacket(b"x", i, i, i % 25 == 0, i / 25))
    >>> packets = ring.snapshot()
    >>> packets[0].keyframe, packets[0].t_s, packets[-1].t_s
    (True, 1.0, 3.96)
    """

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError(f"expected seconds > 0, got {seconds}")
        self.seconds = seconds
        # whole GOPs, each a keyframe and the packets up to the next one: trimming drops the
        # first GOP without searching the packets for where the next one starts
        self._gops: deque[list[RingPacket]] = deque()
        self._count = 0  # packets in all GOPs
        self._lock = threading.Lock()
        self.template: StreamTemplate | None = None

    def reset(self, template: StreamTemplate) -> None:
        """A new connection: old packets may not match the new stream's parameters."""
        with self._lock:
            self._gops.clear()
            self._count = 0
            self.template = template

    def recorder(self, stream: av.video.VideoStream) -> RingRecorder:
        """Start recording ``stream`` (a new connection) into this ring."""
        self.reset(StreamTemplate.of(stream))
        return RingRecorder(self, stream)

    def append(self, packet: RingPacket) -> None:
        with self._lock:
            if packet.keyframe:
                self._gops.append([packet])
            elif self._gops:
                self._gops[-1].append(packet)
            else:
                return  # a ring must start at a keyframe
            self._count += 1
            self._trim(packet.t_s)

    def snapshot(self) -> list[RingPacket]:
        with self._lock:
            return [packet for gop in self._gops for packet in gop]

    @property
    def bytes(self) -> int:
        with self._lock:
            return sum(len(packet.data) for gop in self._gops for packet in gop)

    def _trim(self, newest_s: float) -> None:
        # Drop whole GOPs from the front while the rest still covers `seconds` (or the ring
        # holds too many packets): the ring then always starts at a keyframe.
        gops = self._gops
        while len(gops) > 1 and (
            self._count > MAX_PACKETS
            or (
                newest_s - gops[0][0].t_s > self.seconds
                and newest_s - gops[1][0].t_s >= self.seconds
            )
        ):
            self._count -= len(gops.popleft())


class RingRecorder:
    """Feeds one connection's packets into a ring, in Annex B form."""

    def __init__(self, ring: PacketRing, stream: av.video.VideoStream) -> None:
        self._ring = ring
        self._time_base = float(stream.time_base or Fraction(1, 90_000))
        name = ANNEX_B_FILTERS.get(stream.codec_context.name)
        self._filter = BitStreamFilterContext(name, stream) if name else None

    def add(self, packet: av.Packet[av.video.VideoStream]) -> None:
        if packet.dts is None or not packet.size:
            return
        out = self._filter.filter(packet) if self._filter is not None else [packet]
        for item in out:
            if item.dts is None:
                continue
            self._ring.append(
                RingPacket(
                    bytes(item),
                    item.pts,
                    item.dts,
                    item.is_keyframe,
                    item.dts * self._time_base,
                    time.time(),
                )
            )


def stream_time_at(packets: list[RingPacket], wall: float) -> float | None:
    """The stream time of the packet that arrived closest to ``wall`` (None if empty)."""
    if not packets:
        return None
    return min(packets, key=lambda p: abs(p.wall - wall)).t_s


def write_clip(
    packets: list[RingPacket], template: StreamTemplate, path: Path, start_s: float, end_s: float
) -> Path:
    """Remux the packets covering ``start_s``..``end_s`` (stream time) into an MP4 at ``path``,
    starting at the last keyframe at or before ``start_s``. No re-encoding. Written under a
    temporary name and renamed, so a partial clip is never served."""
    start = max((i for i, p in enumerate(packets) if p.keyframe and p.t_s <= start_s), default=None)
    if start is None:
        start = next((i for i, p in enumerate(packets) if p.keyframe), None)
    if start is None:
        raise ClipError("no keyframe in the packet ring")
    chosen = [p for p in packets[start:] if p.t_s <= end_s]
    path.parent.mkdir(parents=True, exist_ok=True)
    transport = path.with_name(path.name + ".ts.part")
    partial = path.with_name(path.name + ".part")
    try:
        _write_transport_stream(chosen, template, transport)
        _remux_to_mp4(transport, partial)
    except (av.error.FFmpegError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise ClipError(f"could not write clip {path.name}: {type(exc).__name__}") from None
    finally:
        transport.unlink(missing_ok=True)
    partial.replace(path)
    return path


def _write_transport_stream(
    packets: list[RingPacket], template: StreamTemplate, path: Path
) -> None:
    first_dts = next((p.dts for p in packets if p.dts is not None), 0)
    with av.open(str(path), "w", format="mpegts") as output:
        stream = output.add_stream(template.codec)
        stream.width, stream.height = template.width, template.height  # type: ignore[union-attr]
        stream.time_base = template.time_base
        for item in packets:
            packet = av.Packet(item.data)
            packet.stream = stream
            packet.time_base = template.time_base
            packet.pts = None if item.pts is None else item.pts - first_dts
            packet.dts = None if item.dts is None else item.dts - first_dts
            packet.is_keyframe = item.keyframe
            output.mux(packet)


def _remux_to_mp4(source: Path, target: Path) -> None:
    with (
        av.open(str(source), "r", format="mpegts") as reader,
        av.open(str(target), "w", format="mp4", options={"movflags": "+faststart"}) as output,
    ):
        in_stream = reader.streams.video[0]
        out_stream = output.add_stream_from_template(in_stream)
        for packet in reader.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            output.mux(packet)
