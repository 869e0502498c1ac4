"""H.264 re-encodings of the real sample footage (:mod:`feedtag.samples`: ``vtest.avi``,
``bikes.mp4``), made with PyAV.

Live cameras send H.264 with a keyframe every second or two, so benchmarks and the demo use
re-encodings in that shape, cached under the feedtag cache directory. A re-encoding never
distorts the picture: a clip of another aspect ratio is centre-cropped to the target's
(:func:`crop_window`, :func:`fit_frame`), the way a camera's 16:9 substream frames a scene.
4:3 ``vtest.avi`` (768x576) keeps its middle 768x432, rows 72 to 503; 2.35:1 ``bikes.mp4``
(640x272) its middle 484x272, columns 78 to 561.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Final, NamedTuple

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
    "crop_window",
    "encode_h264",
    "fit_frame",
    "points_in_crop",
    "quiet_h264",
    "sample_h264",
    "vtest_path",
]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

#: aspect ratios closer than this (relative) count as equal: a 854x480 frame is not cut to
#: 853x480 for a 16:9 target, the scaler absorbs the difference
ASPECT_TOLERANCE: Final = 0.01


class CropWindow(NamedTuple):
    """A region of a picture in its pixels (:func:`crop_window`)."""

    left: int
    top: int
    width: int
    height: int

    def normalized(self, x: float, y: float, size: tuple[int, int]) -> tuple[float, float]:
        """A point given as a fraction of the whole ``size`` picture, as a fraction of this
        window (outside [0, 1] when the crop cut it off).

        >>> CropWindow(0, 72, 768, 432).normalized(0.5, 0.25, (768, 576))
        (0.5, 0.16666666666666666)
        """
        return (
            (x * size[0] - self.left) / self.width,
            (y * size[1] - self.top) / self.height,
        )


def crop_window(width: int, height: int, target_width: int, target_height: int) -> CropWindow:
    """The centred region of a ``width`` x ``height`` picture that has the aspect ratio of
    ``target_width`` x ``target_height``: ``(left, top, width, height)`` in source pixels,
    even-sized, the whole picture when the aspect ratios already agree.

    >>> crop_window(768, 576, 640, 360)  # vtest.avi to 16:9: rows 72-503
    CropWindow(left=0, top=72, width=768, height=432)
    >>> crop_window(640, 272, 1280, 720)  # bikes.mp4 (2.35:1) to 16:9: columns 78-561
    CropWindow(left=78, top=0, width=484, height=272)
    >>> crop_window(1920, 1080, 640, 360)
    CropWindow(left=0, top=0, width=1920, height=1080)
    """
    target = target_width / target_height
    if abs(width / height / target - 1) <= ASPECT_TOLERANCE:
        return CropWindow(0, 0, width, height)
    if width / height > target:  # wider than the target: cut the sides
        kept = min(width, 2 * round(height * target / 2))
        return CropWindow((width - kept) // 2, 0, kept, height)
    kept = min(height, 2 * round(width / target / 2))
    return CropWindow(0, (height - kept) // 2, width, kept)


def points_in_crop(
    points: list[list[float]], source_size: tuple[int, int], target_size: tuple[int, int] = (16, 9)
) -> list[list[float]]:
    """Points drawn on a source's whole picture (normalized to it), placed on its re-encoding
    at the aspect ratio of ``target_size`` (:func:`crop_window`); what the crop cut off moves
    to the nearest edge, so a zone keeps covering the part of the scene still in view.

    >>> points_in_crop([[0, 0.25], [1, 0.75], [0.5, 0.05]], (768, 576))
    [[0.0, 0.1667], [1.0, 0.8333], [0.5, 0.0]]
    """
    window = crop_window(*source_size, *target_size)
    placed = (window.normalized(x, y, source_size) for x, y in points)
    return [[round(min(max(x, 0.0), 1.0), 4), round(min(max(y, 0.0), 1.0), 4)] for x, y in placed]


def fit_frame(
    frame: av.VideoFrame,
    width: int,
    height: int,
    *,
    pixel_format: str = "yuv420p",
    interpolation: str | None = None,
) -> av.VideoFrame:
    """``frame`` centre-cropped to the aspect ratio of ``width`` x ``height``
    (:func:`crop_window`), then scaled to that size and converted to ``pixel_format``: never
    stretched. A frame whose aspect ratio already agrees is only scaled."""
    window = crop_window(frame.width, frame.height, width, height)
    if (window.width, window.height) != (frame.width, frame.height):
        image = frame.to_ndarray(format="rgb24")
        kept = image[
            window.top : window.top + window.height, window.left : window.left + window.width
        ]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(kept, np.uint8), format="rgb24")
    return frame.reformat(
        width=width, height=height, format=pixel_format, interpolation=interpolation
    )


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
    a keyframe every ``keyframe_interval_frames`` frames exactly, no B-frames, ``width`` x
    ``height`` cut from the middle of the picture where the aspect ratios differ
    (:func:`fit_frame`).

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
            if frame.time is None or written / fps >= frame.time + span:
                continue  # no output frame falls in this one
            # the encoder takes its own reference at each call: one fitted frame is sent
            # once per output frame in its span, with new timestamps
            out = fit_frame(frame, width, height)
            # The source's picture type would force x264 to make an extra IDR frame.
            out.pict_type = av.video.frame.PictureType.NONE
            # each source frame covers [time, time + span): emit the output frames in it
            while written < total and written / fps < frame.time + span:
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
    # "_fit": centre-cropped to the aspect ratio (older, stretched encodings are not reused)
    target = cache_dir() / "footage" / f"{name}_{width}x{height}_fit_25fps_gop25{suffix}.mp4"
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
    first, cut to the target's aspect ratio like :func:`sample_h264`), re-encoded for
    ``seconds`` with per-frame sensor noise and a slow sinusoidal lighting drift, a keyframe
    every second. What most cameras of a fleet show most of the time; it exercises the
    gate's noise tolerance, not the detector."""
    name = f"quiet_{width}x{height}_fit_25fps_gop25_{int(seconds)}s.mp4"
    target = cache_dir() / "footage" / name
    if not target.is_file():
        log.info("encoding the quiet feed at %dx%d (once; cached at %s)", width, height, target)
        _encode_still(target, width, height, int(seconds * fps), fps=fps, wakes_at=None)
    return target


def waking_h264(
    width: int, height: int, *, quiet_s: int = 20, busy_s: int = 10, fps: int = 25
) -> Path:
    """A cached feed that is :func:`quiet_h264` for ``quiet_s`` seconds, after which people
    walk through one part of the view: from then on the window of :data:`WAKING_WINDOW`
    shows vtest's own frames, one after another, in place of the still. Activity that
    starts in a small part of a quiet view, the hard case for anything that watches a
    camera cheaply."""
    name = f"waking_{width}x{height}_fit_25fps_gop25_{quiet_s}+{busy_s}s.mp4"
    target = cache_dir() / "footage" / name
    if not target.is_file():
        log.info("encoding the waking feed at %dx%d (once; cached at %s)", width, height, target)
        _encode_still(
            target, width, height, (quiet_s + busy_s) * fps, fps=fps, wakes_at=quiet_s * fps
        )
    return target


#: the part of the view where :func:`waking_h264` comes alive, (left, top, width, height) as
#: fractions of the frame: 8.5% of it, in the middle of vtest's square, where people cross
WAKING_WINDOW: Final = (0.4375, 0.1667, 0.21875, 0.3889)


def _encode_still(
    target: Path, width: int, height: int, frames: int, *, fps: int, wakes_at: int | None
) -> None:
    with av.open(str(vtest_path())) as src:
        decoded = src.decode(video=0)
        still = fit_frame(next(decoded), width, height, pixel_format="rgb24").to_ndarray()
        left, top, across, down = WAKING_WINDOW
        x, y = int(left * width), int(top * height)
        window = (slice(y, y + int(down * height)), slice(x, x + int(across * width)))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        rng = np.random.default_rng(0)
        base = still.astype(np.float32)
        with av.open(str(partial), "w", format="mp4", options={"movflags": "+faststart"}) as dst:
            stream = _camera_stream(dst, width, height, fps, fps)
            for index in range(frames):
                scene = base
                if wakes_at is not None and index >= wakes_at:
                    moving = fit_frame(next(decoded), width, height, pixel_format="rgb24")
                    scene = base.copy()
                    scene[window] = moving.to_ndarray()[window]
                gain = 1 + QUIET_DRIFT * math.sin(
                    2 * math.pi * index / (QUIET_DRIFT_PERIOD_S * fps)
                )
                noise = rng.normal(0.0, QUIET_NOISE, size=base.shape)
                image = np.clip(scene * np.float32(gain) + noise, 0, 255).astype(np.uint8)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
                frame.pts, frame.time_base = index, Fraction(1, fps)
                dst.mux(stream.encode(frame))
            dst.mux(stream.encode(None))
    partial.replace(target)


def _duration_s(container: av.container.InputContainer, stream: av.video.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    raise FootageMissing("cannot tell the duration of the sample")


def _frame_span(stream: av.video.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or 25
    return float(1 / rate)
