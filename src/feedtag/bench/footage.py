"""H.264 re-encodings of the real sample footage (:mod:`feedtag.samples`: ``vtest.avi``,
``bikes.mp4``), made with PyAV.

Live cameras send H.264 with a keyframe every second or two, so benchmarks and the demo use
re-encodings in that shape, cached under the feedtag cache directory.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Final

import av
import av.video
import av.video.frame
import numpy as np

from feedtag.samples import VTEST_PATHS, FootageMissing, bikes_path, vtest_path

__all__ = [
    "VTEST_PATHS",
    "FootageMissing",
    "bikes_path",
    "cache_dir",
    "encode_h264",
    "quiet_h264",
    "sample_h264",
    "vtest_path",
]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def cache_dir() -> Path:
    """``$FEEDTAG_CACHE_DIR``, else ``$XDG_CACHE_HOME/feedtag``, else ``~/.cache/feedtag``."""
    explicit = os.environ.get("FEEDTAG_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "feedtag"


def encode_h264(
    source: Path,
    target: Path,
    *,
    width: int,
    height: int,
    fps: int = 25,
    keyframe_interval_frames: int = 25,
    max_seconds: float | None = None,
    container_format: str = "mp4",
    progress: Progress | None = None,
) -> Path:
    """Re-encode ``source`` to H.264 in MP4 like an IP camera sends it: constant ``fps``,
    a keyframe every ``keyframe_interval_frames`` frames exactly, no B-frames.

    Frames are resampled by timestamp (a 10 fps source repeats frames at 25 fps). The file
    is written under a temporary name and renamed, so a half-written file is never used.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    with (
        av.open(str(source)) as src,
        av.open(
            str(partial),
            "w",
            format=container_format,
            # moov first: the file can be streamed over HTTP without range requests
            options={"movflags": "+faststart"} if container_format == "mp4" else {},
        ) as dst,
    ):
        in_stream = src.streams.video[0]
        out_stream = _camera_stream(dst, width, height, fps, keyframe_interval_frames)
        duration = _duration_s(src, in_stream)
        if max_seconds is not None:
            duration = min(duration, max_seconds)
        total = max(1, int(duration * fps))
        written = 0
        span = _frame_span(in_stream)
        for frame in src.decode(in_stream):
            if frame.time is None:
                continue
            # each source frame covers [time, time + span): emit the output frames in it
            while written < total and written / fps < frame.time + span:
                out = frame.reformat(width=width, height=height, format="yuv420p")
                # The source's picture type would force x264 to make an extra IDR frame.
                out.pict_type = av.video.frame.PictureType.NONE
                out.pts = written
                out.time_base = Fraction(1, fps)
                dst.mux(out_stream.encode(out))
                written += 1
                if progress is not None and written % fps == 0:
                    progress(written, total)
            if written >= total:
                break
        dst.mux(out_stream.encode(None))
    partial.replace(target)
    return target


def sample_h264(
    name: str,
    width: int,
    height: int,
    *,
    seconds: float | None = None,
    progress: Progress | None = None,
) -> Path:
    """A cached H.264 re-encoding of a named sample (``vtest`` or ``bikes``)."""
    sources = {"vtest": vtest_path, "bikes": bikes_path}
    if name not in sources:
        raise FootageMissing(f"unknown sample {name!r}; known: {', '.join(sources)}")
    source = sources[name]()
    suffix = f"_{int(seconds)}s" if seconds is not None else ""
    target = cache_dir() / "footage" / f"{name}_{width}x{height}_25fps_gop25{suffix}.mp4"
    if not target.is_file():
        log.info("encoding %s to %dx%d H.264 (once; cached at %s)", name, width, height, target)
        encode_h264(
            source, target, width=width, height=height, max_seconds=seconds, progress=progress
        )
    return target


def _camera_stream(
    dst: av.container.OutputContainer, width: int, height: int, fps: int, gop: int
) -> av.video.VideoStream:
    """An H.264 stream as an IP camera sends it: a keyframe every ``gop`` frames exactly,
    no B-frames."""
    stream = dst.add_stream(
        "libx264",
        rate=fps,
        options={
            "preset": "veryfast",
            "crf": "26",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0",
        },
    )
    assert isinstance(stream, av.video.VideoStream)  # noqa: S101 - narrows the type
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    return stream


#: the quiet feed's sensor noise (standard deviation, 8-bit levels) and lighting drift
#: (peak relative brightness change, over one period in seconds)
QUIET_NOISE: Final = 3.0
QUIET_DRIFT: Final = 0.08
QUIET_DRIFT_PERIOD_S: Final = 40.0


def quiet_h264(width: int, height: int, *, seconds: float = 60.0, fps: int = 25) -> Path:
    """A cached feed of real footage where nothing moves: one still frame of vtest (its
    first), re-encoded for ``seconds`` with per-frame sensor noise and a slow sinusoidal
    lighting drift, a keyframe every second. What most cameras of a fleet show most of the
    time; it exercises the gate's noise tolerance, not the detector."""
    target = cache_dir() / "footage" / f"quiet_{width}x{height}_25fps_gop25_{int(seconds)}s.mp4"
    if target.is_file():
        return target
    log.info("encoding the quiet feed at %dx%d (once; cached at %s)", width, height, target)
    with av.open(str(vtest_path())) as src:
        still = next(src.decode(video=0)).to_ndarray(width=width, height=height, format="rgb24")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    rng = np.random.default_rng(0)
    base = still.astype(np.float32)
    with av.open(str(partial), "w", format="mp4", options={"movflags": "+faststart"}) as dst:
        stream = _camera_stream(dst, width, height, fps, fps)
        for index in range(int(seconds * fps)):
            gain = 1 + QUIET_DRIFT * math.sin(2 * math.pi * index / (QUIET_DRIFT_PERIOD_S * fps))
            noise = rng.normal(0.0, QUIET_NOISE, size=base.shape)
            image = np.clip(base * np.float32(gain) + noise, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            dst.mux(stream.encode(frame))
        dst.mux(stream.encode(None))
    partial.replace(target)
    return target


def _duration_s(container: av.container.InputContainer, stream: av.video.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    raise FootageMissing("cannot tell the duration of the sample")


def _frame_span(stream: av.video.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or 25
    return float(1 / rate)
