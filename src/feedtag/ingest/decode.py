"""Decode policy: which packets reach the decoder and which decoded frames are converted.

Decoding dominates ingest cost. When a stream's keyframe interval is at most the analysis
period, decoding only keyframes gives every frame analysis needs and skips the rest of each
group of pictures, so decode cost drops by the GOP length. Otherwise every frame is decoded
(a P-frame needs its references) and only the sampled ones are converted.

The policy is decided only at keyframes: switching to "decode everything" in the middle of
a GOP would feed the decoder P-frames whose references it skipped. The analysis rate can
change while the camera runs (:meth:`DecodePolicy.set_analysis_fps`, steered by the adaptive
rate, :mod:`feedtag.ingest.rate`): the sampling period changes at once, the mode at the next
keyframe, so a tracking rate above the keyframe rate gets every frame decoded from the next
GOP on, and a return to a slower rate goes back to keyframes only.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import TYPE_CHECKING, Final, Literal

import numpy as np
import numpy.typing as npt
from av.video.reformatter import VideoReformatter

from feedtag.core import DecodeMode

if TYPE_CHECKING:
    import av

#: measured intervals kept for the median
KEYFRAME_HISTORY: Final = 5
#: a keyframe interval up to this much longer than the analysis period still qualifies
#: (encoders and RTP clocks jitter by a frame or two).
KEYFRAME_SLACK: Final = 1.05
#: a frame this early is still due, so that timestamp jitter (RTP clocks, rounding) does not
#: skip every other keyframe; well under one frame interval even at 60 fps.
SAMPLE_TOLERANCE_S: Final = 0.012
#: frames larger than any camera sends (8K is 33 MP) are refused before they are decoded
MAX_FRAME_PIXELS: Final = 40_000_000


class KeyframeIntervalMeter:
    """Median interval between keyframes, from their stream timestamps.

    >>> meter = KeyframeIntervalMeter()
    >>> for t in (0.0, 1.0, 2.0, 3.04): meter.observe_keyframe(t)
    >>> meter.interval_s
    1.0
    """

    def __init__(self) -> None:
        self._last: float | None = None
        self._intervals: deque[float] = deque(maxlen=KEYFRAME_HISTORY)

    def observe_keyframe(self, t_s: float) -> None:
        if self._last is not None and t_s > self._last:
            self._intervals.append(t_s - self._last)
        self._last = t_s

    @property
    def interval_s(self) -> float | None:
        if not self._intervals:
            return None
        return float(statistics.median(self._intervals))

    @property
    def last_s(self) -> float | None:
        """Stream time of the last keyframe seen."""
        return self._last


class DecodePolicy:
    """Per camera: the mode, whether a packet is decoded, whether a frame is converted.

    >>> policy = DecodePolicy(analysis_fps=1.0)
    >>> [policy.admit_packet(t, key) for t, key in [(0, True), (0.5, False), (1, True)]]
    [True, True, True]
    >>> policy.mode.value, policy.admit_packet(1.5, False), policy.admit_packet(2.0, True)
    ('keyframes', False, True)
    """

    def __init__(self, analysis_fps: float, *, keyframes_allowed: bool = True) -> None:
        self.analysis_fps = analysis_fps
        self.period_s = 0.0
        self.set_analysis_fps(analysis_fps)
        self.keyframes_allowed = keyframes_allowed
        self.meter = KeyframeIntervalMeter()
        self.mode = DecodeMode.MEASURING
        self._last_sample: float | None = None

    def set_analysis_fps(self, analysis_fps: float) -> None:
        """Change the analysis rate while the camera runs: frames are sampled at the new
        period from now on; keyframe-only or sampled decode is decided again at the next
        keyframe (never mid-GOP).

        >>> policy = DecodePolicy(analysis_fps=1.0)
        >>> for t in (0, 1, 2): _ = policy.admit_packet(t, True)
        >>> policy.set_analysis_fps(5.0); policy.mode.value  # still inside a GOP
        'keyframes'
        >>> policy.admit_packet(3, True), policy.mode.value
        (True, 'sampled')
        """
        if not analysis_fps > 0:
            raise ValueError(f"expected analysis_fps > 0, got {analysis_fps}")
        self.analysis_fps = analysis_fps
        self.period_s = 1.0 / analysis_fps

    def admit_packet(self, t_s: float | None, is_keyframe: bool) -> bool:
        """Whether this packet goes to the decoder."""
        if is_keyframe and t_s is not None:
            self.meter.observe_keyframe(t_s)
            self._decide()
        if self.mode is not DecodeMode.KEYFRAMES:
            return True
        # Keyframes decode on their own, so a keyframe that is not due is skipped too.
        return is_keyframe and (t_s is None or self.is_due(t_s))

    def is_due(self, t_s: float) -> bool:
        """Whether a frame at ``t_s`` should be analysed (without marking it)."""
        if self._last_sample is None or t_s < self._last_sample:
            return True  # first frame, or timestamps restarted
        return t_s - self._last_sample >= self.period_s - SAMPLE_TOLERANCE_S

    @property
    def last_sample_s(self) -> float | None:
        """Stream time of the last frame taken (None before the first)."""
        return self._last_sample

    def take_frame(self, t_s: float) -> bool:
        """Whether a decoded frame at ``t_s`` is converted; marks it when it is."""
        if not self.is_due(t_s):
            return False
        self._last_sample = t_s
        return True

    def next_keyframe_s(self) -> float | None:
        """Stream time of the next keyframe this policy will decode, from the keyframe
        interval; None unless it decodes keyframes only.

        >>> policy = DecodePolicy(analysis_fps=0.5)  # every other keyframe of a 1 s GOP
        >>> for t in (0, 1, 2):
        ...     if policy.admit_packet(t, True): _ = policy.take_frame(t)
        >>> policy.mode.value, policy.next_keyframe_s()
        ('keyframes', 4.0)
        """
        interval, last = self.meter.interval_s, self.meter.last_s
        if self.mode is not DecodeMode.KEYFRAMES or interval is None or last is None:
            return None
        steps = 1
        if self._last_sample is not None:
            due = self._last_sample + self.period_s - SAMPLE_TOLERANCE_S
            steps = max(1, math.ceil((due - last) / interval - 1e-9))
        return last + steps * interval

    @property
    def skip_frame(self) -> Literal["NONKEY", "DEFAULT"]:
        """The decoder's ``skip_frame`` setting for the current mode."""
        return "NONKEY" if self.mode is DecodeMode.KEYFRAMES else "DEFAULT"

    def _decide(self) -> None:
        interval = self.meter.interval_s
        if interval is None:
            return
        if self.keyframes_allowed and interval <= self.period_s * KEYFRAME_SLACK:
            self.mode = DecodeMode.KEYFRAMES
        else:
            self.mode = DecodeMode.SAMPLED


def analysis_size(
    width: int, height: int, target_width: int, target_height: int | None
) -> tuple[int, int]:
    """The size frames are scaled to: never upscaled, aspect kept unless both are given,
    even numbers (what swscale and encoders prefer).

    >>> analysis_size(1280, 720, 640, None)
    (640, 360)
    >>> analysis_size(320, 240, 640, None)
    (320, 240)
    >>> analysis_size(1, 1, 640, None)  # swscale refuses a size of 0
    (2, 2)
    """
    if target_height is None:
        if width <= target_width:
            return max(2, width - width % 2), max(2, height - height % 2)
        scaled_height = round(height * target_width / width)
        return target_width - target_width % 2, max(2, scaled_height - scaled_height % 2)
    return target_width - target_width % 2, target_height - target_height % 2


class FrameConverter:
    """Colour conversion and downscale to RGB in one swscale call, per camera.

    The swscale context is kept between frames: building it costs more than using it
    (1280x720 -> 640x360: 1.3 ms a frame when built each time, 0.7 ms when kept). Area
    averaging gives the best downscale and, here, is cheaper than bilinear.
    """

    def __init__(self) -> None:
        self._reformatter = VideoReformatter()

    def to_rgb(self, frame: av.VideoFrame, width: int, height: int) -> npt.NDArray[np.uint8]:
        converted = self._reformatter.reformat(
            frame, width=width, height=height, format="rgb24", interpolation="AREA"
        )
        return np.ascontiguousarray(converted.to_ndarray(), dtype=np.uint8)
