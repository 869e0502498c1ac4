"""H.264 re-encodings of the real sample footage (:mod:`feedtag.samples`: ``vtest.avi``,
``bikes.mp4``), made with PyAV.

Live cameras send H.264 with a keyframe every second or two, so benchmarks and the demo use
re-encodings in that shape, cached under the feedtag cache directory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import av.video
import av.video.frame

from feedtag.samples import VTEST_PATHS, FootageMissing, bikes_path, vtest_path

__all__ = [
    "VTEST_PATHS",
    "FootageMissing",
    "bikes_path",
    "cache_dir",
    "encode_h264",
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
        out_stream = dst.add_stream(
            "libx264",
            rate=fps,
            options={
                "preset": "veryfast",
                "crf": "26",
                "x264-params": (
                    f"keyint={keyframe_interval_frames}:min-keyint={keyframe_interval_frames}"
                    ":scenecut=0:bframes=0"
                ),
            },
        )
        assert isinstance(out_stream, av.video.VideoStream)  # noqa: S101 - narrows the type
        out_stream.width, out_stream.height = width, height
        out_stream.pix_fmt = "yuv420p"
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


def _duration_s(container: av.container.InputContainer, stream: av.video.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    raise FootageMissing("cannot tell the duration of the sample")


def _frame_span(stream: av.video.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or 25
    return float(1 / rate)
