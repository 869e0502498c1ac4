"""Frames from sample clips: spread evenly for calibration, and held out for checking the
INT8 model against FP32 (see :mod:`feedtag.vision.modelbuild.quantize`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

import av
import numpy as np
import numpy.typing as npt

from feedtag.errors import ModelError
from feedtag.samples import bikes_path, vtest_path
from feedtag.vision.registry import Progress

Image = npt.NDArray[np.uint8]
#: held-out frames per clip on which every build compares INT8 with FP32
CHECK_FRAMES_PER_CLIP: Final = 8


def default_clips() -> list[Path]:
    """The clips the default model is calibrated on: ``vtest.avi`` and ``bikes.mp4``."""
    return [vtest_path(), bikes_path()]


def clip_frame_count(path: Path) -> int:
    """How many video frames a clip has (from its header, else duration x rate)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            rate = stream.average_rate or stream.guessed_rate
            if stream.duration is None or stream.time_base is None or not rate:
                raise ModelError(f"cannot tell how many frames {path} has")
            return max(1, int(stream.duration * stream.time_base * rate))
    except av.error.FFmpegError as exc:
        raise ModelError(f"cannot read {path}: {type(exc).__name__}") from None


def spread_indices(total: int, count: int, offset: float = 0.5) -> list[int]:
    """``count`` frame indices spread evenly over ``total`` frames: ``(k + offset) / count``
    of the way through. Calibration uses offset 0.5.

    >>> spread_indices(100, 4), spread_indices(100, 4, offset=0.0)
    ([12, 37, 62, 87], [0, 25, 50, 75])
    """
    return sorted({min(total - 1, int((k + offset) * total / count)) for k in range(count)})


def read_frames(path: Path, indices: Sequence[int]) -> list[Image]:
    """The RGB frames of a clip at the given (sorted) decode-order indices."""
    wanted = sorted(set(indices))
    frames: list[Image] = []
    if not wanted:
        return frames
    decoded = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                if decoded == wanted[len(frames)]:
                    frames.append(np.asarray(frame.to_ndarray(format="rgb24"), np.uint8))
                    if len(frames) == len(wanted):
                        break
                decoded += 1
    except av.error.FFmpegError as exc:
        raise ModelError(f"cannot read frames from {path}: {type(exc).__name__}") from None
    if len(frames) < len(wanted):
        raise ModelError(f"{path} ended after {decoded} frames, before frame {wanted[-1]}")
    return frames


def sample_frames(path: Path, count: int, offset: float = 0.5) -> list[Image]:
    """``count`` RGB frames spread evenly over a clip (see :func:`spread_indices`)."""
    return read_frames(path, spread_indices(clip_frame_count(path), count, offset))


def unseen_frames(path: Path, count: int, calibration_share: int) -> list[Image]:
    """``count`` RGB frames spread over a clip from its start, minus any of the
    ``calibration_share`` frames calibration takes from it (:func:`footage`): frames the
    build never saw, for checking a model built from them."""
    total = clip_frame_count(path)
    used = set(spread_indices(total, calibration_share, 0.5))
    return read_frames(path, [i for i in spread_indices(total, count, 0.0) if i not in used])


def footage(clips: Sequence[Path], count: int, report: Progress) -> tuple[list[Image], list[Image]]:
    """Calibration frames (``count``, spread over the clips) and, in the same decoding pass,
    held-out frames for :func:`~feedtag.vision.modelbuild.quantize.check_agreement`."""
    per_clip = [count // len(clips) + (k < count % len(clips)) for k in range(len(clips))]
    calibration: list[Image] = []
    check: list[Image] = []
    for done, (clip, share) in enumerate(zip(clips, per_clip, strict=True), start=1):
        total = clip_frame_count(clip)
        used = spread_indices(total, share, 0.5) if share else []
        held_out = [i for i in spread_indices(total, CHECK_FRAMES_PER_CLIP, 0.0) if i not in used]
        wanted = sorted({*used, *held_out})
        frames = dict(zip(wanted, read_frames(clip, wanted), strict=True))
        calibration += [frames[i] for i in used]
        check += [frames[i] for i in held_out]
        report("frames", done, len(clips))
    return calibration, check
