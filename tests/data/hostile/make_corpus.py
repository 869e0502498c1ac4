"""Make the hostile media corpus: small files a camera may hand feedtag by mistake or malice.

Run from the repository root: ``.venv/bin/python tests/data/hostile/make_corpus.py``. The files
are committed; this script says exactly how each was made. Frames are synthetic (a moving
gradient), encoded with PyAV's libx264 in one thread, and every random choice uses a fixed
seed, so a rerun with the same FFmpeg and x264 gives the same bytes.
"""

from __future__ import annotations

import io
import random
import struct
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Final

import av
import av.audio
import av.video
import numpy as np

HERE: Final = Path(__file__).resolve().parent
FPS: Final = 10
TS_PACKET: Final = 188
#: the SPS field values that give a 65535x65535 picture (4096 macroblocks is 65536 px;
#: the cropping below takes one pixel off each side's far end)
HUGE_MBS: Final = 4096


# -- synthetic encodes ---------------------------------------------------------------------


def gradient_frames(width: int, height: int, count: int) -> Iterator[av.VideoFrame]:
    """A diagonal gradient that moves one step a frame: compresses to a few hundred bytes."""
    ys, xs = np.mgrid[0:height, 0:width]
    for index in range(count):
        luma = ((xs + ys + 4 * index) % 256).astype(np.uint8)
        rgb = np.stack([luma, np.flipud(luma), np.full_like(luma, 128)], axis=-1)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = index
        frame.time_base = Fraction(1, FPS)
        yield frame


def encode(
    container_format: str, width: int, height: int, seconds: float, **format_options: str
) -> bytes:
    """H.264 like an IP camera sends it: a keyframe every second, no B-frames.

    Written to a real file: ``+faststart`` reads the file back to move the index first.
    """
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "clip"
        _encode_to(
            target,
            container_format,
            width=width,
            height=height,
            seconds=seconds,
            format_options=format_options,
        )
        return target.read_bytes()


def _encode_to(
    target: Path,
    container_format: str,
    *,
    width: int,
    height: int,
    seconds: float,
    format_options: dict[str, str],
) -> None:
    with av.open(str(target), "w", format=container_format, options=format_options) as dst:
        stream = dst.add_stream(
            "libx264",
            rate=FPS,
            options={
                "preset": "veryfast",
                "crf": "35",
                "threads": "1",
                "x264-params": f"keyint={FPS}:min-keyint={FPS}:scenecut=0:bframes=0",
            },
        )
        assert isinstance(stream, av.video.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in gradient_frames(width, height, int(seconds * FPS)):
            dst.mux(stream.encode(frame.reformat(format="yuv420p")))
        dst.mux(stream.encode(None))


def audio_only_mp4() -> bytes:
    """One second of a 440 Hz tone in AAC: a valid file with no video stream."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as dst:
        stream = dst.add_stream("aac", rate=8000)
        assert isinstance(stream, av.audio.AudioStream)
        stream.layout = "mono"
        samples = 1024
        for index in range(8):
            t = (np.arange(samples) + index * samples) / 8000
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, index * samples
            dst.mux(stream.encode(frame))
        dst.mux(stream.encode(None))
    return buffer.getvalue()


def png_image(width: int = 32, height: int = 32) -> bytes:
    """A tiny grey PNG, written by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes([128]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# -- mutations -----------------------------------------------------------------------------


def cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def flip_bytes(data: bytes, seed: int, count: int) -> bytes:
    """``count`` random bytes XOR-ed with a random non-zero value, sync bytes included."""
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(count):
        out[rng.randrange(len(out))] ^= rng.randrange(1, 256)
    return bytes(out)


def patch_mp4_dimensions(data: bytes, width: int, height: int) -> bytes:
    """Claim ``width`` x ``height`` in the ``tkhd`` box and the ``avc1`` sample entry.

    The H.264 parameter sets inside (``avcC``) still say the real size: the container lies.
    """
    out = bytearray(data)
    tkhd = out.index(b"tkhd")
    version = out[tkhd + 4]
    # tkhd: version+flags(4), times and ids (v0: 20, v1: 32), reserved(8), layer,
    # group, volume, reserved (8), matrix (36), then width and height as 16.16 fixed point
    offset = tkhd + 4 + 4 + (32 if version == 1 else 20) + 8 + 8 + 36
    struct.pack_into(">II", out, offset, min(width, 0xFFFF) << 16, min(height, 0xFFFF) << 16)
    avc1 = out.index(b"avc1")
    # avc1 (VisualSampleEntry): reserved(6), data ref index(2), pre_defined and
    # reserved(16), then width and height as 16-bit
    struct.pack_into(">HH", out, avc1 + 4 + 6 + 2 + 16, width, height)
    return bytes(out)


class BitReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def bit(self) -> int:
        value = (self.data[self.pos // 8] >> (7 - self.pos % 8)) & 1
        self.pos += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = value << 1 | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
        return (1 << zeros) - 1 + self.bits(zeros)


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def write(self, value: int, count: int) -> None:
        self.bits += [(value >> (count - 1 - i)) & 1 for i in range(count)]

    def ue(self, value: int) -> None:
        code = value + 1
        length = code.bit_length()
        self.write(0, length - 1)
        self.write(code, length)

    def to_bytes(self) -> bytes:
        bits = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def unescape(payload: bytes) -> bytes:
    return payload.replace(b"\x00\x00\x03", b"\x00\x00")


def escape(rbsp: bytes) -> bytes:
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


HIGH_PROFILES: Final = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def patch_sps(nal: bytes, width_mbs: int, height_mbs: int) -> bytes:
    """An SPS NAL unit (header byte first) with its picture size replaced, the rest kept bit
    for bit. Handles what x264 writes: no scaling matrices, frame pictures only."""
    reader = BitReader(unescape(nal[1:]))
    writer = BitWriter()
    profile = reader.bits(8)
    writer.write(profile, 8)
    writer.write(reader.bits(16), 16)  # constraint flags, level
    writer.ue(reader.ue())  # seq_parameter_set_id
    if profile in HIGH_PROFILES:
        chroma_format_idc = reader.ue()
        writer.ue(chroma_format_idc)
        if chroma_format_idc == 3:
            writer.write(reader.bit(), 1)  # separate_colour_plane_flag
        writer.ue(reader.ue())  # bit_depth_luma_minus8
        writer.ue(reader.ue())  # bit_depth_chroma_minus8
        writer.write(reader.bit(), 1)  # qpprime_y_zero_transform_bypass_flag
        if reader.bit():
            raise ValueError("scaling matrices are not handled")
        writer.write(0, 1)
    writer.ue(reader.ue())  # log2_max_frame_num_minus4
    poc_type = reader.ue()
    writer.ue(poc_type)
    if poc_type == 0:
        writer.ue(reader.ue())
    elif poc_type == 1:
        raise ValueError("pic_order_cnt_type 1 is not handled")
    writer.ue(reader.ue())  # max_num_ref_frames
    writer.write(reader.bit(), 1)  # gaps_in_frame_num_value_allowed_flag
    reader.ue()
    reader.ue()  # the real size, dropped
    writer.ue(width_mbs - 1)
    writer.ue(height_mbs - 1)
    rest = len(reader.data) * 8 - reader.pos
    writer.write(reader.bits(rest), rest)  # flags, cropping, VUI, trailing bits, verbatim
    return nal[:1] + escape(writer.to_bytes().rstrip(b"\x00"))


def patch_annexb_sps(data: bytes, width_mbs: int, height_mbs: int) -> bytes:
    """Every SPS (NAL type 7) of an Annex B stream, patched."""
    parts = data.split(b"\x00\x00\x01")
    for index, part in enumerate(parts):
        if part and part[0] & 0x1F == 7:
            body = part.rstrip(b"\x00")
            parts[index] = patch_sps(body, width_mbs, height_mbs) + part[len(body) :]
    return b"\x00\x00\x01".join(parts)


def splice(first: bytes, second: bytes) -> bytes:
    """Two MPEG-TS streams back to back: the second restarts its PSI and continuity."""
    assert len(first) % TS_PACKET == 0 and len(second) % TS_PACKET == 0
    return first + second


# -- the corpus ------------------------------------------------------------------------------


def corpus() -> dict[str, Callable[[], bytes]]:
    ts = encode("mpegts", 160, 96, 2)
    mp4_faststart = encode("mp4", 160, 96, 2, movflags="+faststart")
    mp4 = encode("mp4", 160, 96, 2)
    h264 = encode("h264", 160, 96, 2)
    return {
        "valid.ts": lambda: ts,  # the unharmed original: the healthy camera, the fuzzer's seed
        "empty.mp4": lambda: b"",
        "random_bytes.ts": lambda: random.Random(1).randbytes(8192),
        "truncated_moov_first.mp4": lambda: cut(mp4_faststart, 0.5),
        "truncated_moov_last.mp4": lambda: cut(mp4, 0.5),
        "truncated.h264": lambda: cut(h264, 0.4),
        "truncated.ts": lambda: cut(ts, 0.4)[:-37],  # mid-way through a TS packet too
        "bitflip_seed1.ts": lambda: flip_bytes(ts, 1, 24),
        "bitflip_seed2.ts": lambda: flip_bytes(ts, 2, 24),
        "bitflip_seed3.ts": lambda: flip_bytes(ts, 3, 200),
        "resolution_change.ts": lambda: splice(ts, encode("mpegts", 320, 176, 2)),
        "sps_65535x65535.h264": lambda: patch_annexb_sps(h264, HUGE_MBS, HUGE_MBS),
        # within FFmpeg's own limit: 64 MP frames, 100 MB each, if nothing else refuses them
        "sps_8192x8192.h264": lambda: patch_annexb_sps(h264, 512, 512),
        "header_65535x65535.mp4": lambda: patch_mp4_dimensions(mp4_faststart, 65535, 65535),
        "header_0x0.mp4": lambda: patch_mp4_dimensions(mp4_faststart, 0, 0),
        "audio_only.mp4": audio_only_mp4,
        "png_renamed.mp4": png_image,
        "png_1x1_renamed.mp4": lambda: png_image(1, 1),  # smaller than swscale's least output
    }


def main(folder: Path = HERE) -> None:
    for name, make in corpus().items():
        data = make()
        (folder / name).write_bytes(data)
        print(f"{name:28} {len(data):6d} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
