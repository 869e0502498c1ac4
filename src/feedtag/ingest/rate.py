"""The adaptive analysis rate: how often a camera's frames are analysed, from what it shows.

A quiet scene needs few frames; a person walking across a counting line needs many, or the
tracker loses them between two frames. :class:`AdaptiveRate` is fed by the vision stage after
each analysed frame (did an object appear, did a track move, did a track move near a line,
direction or speed rule) and sets :attr:`AdaptiveRate.target_fps`, which the camera's
ingest reads before each packet and hands to its
:class:`~feedtag.ingest.decode.DecodePolicy`:

- nothing appeared and nothing moved for ``quiet_after_s``: the floor rate;
- activity (an object appeared, or a track moved since the detection before):
  ``analysis_fps``;
- a track moving near a motion rule: the tracking rate, until no such track has moved for
  ``quiet_after_s``.

A track that stands still is not activity: the gate carries its detection forward (and its
refresh re-detects it), so a parked car or a seated person is still tagged at the floor rate,
and a still scene that shows people (the quiet benchmark feed is such a frame) is quiet.
Time is the frames' stream time, not the wall clock, so a file analysed as fast as possible
adapts exactly as it would live. The controller is pure logic; it lives in ``ingest`` because
the decoder is what it steers, and the vision stage (``runtime``) may import it.
"""

from __future__ import annotations

import threading
from typing import Final

from feedtag.config.models import CameraConfig
from feedtag.core import AnalysisLevel

__all__ = ["AdaptiveRate", "AnalysisRates"]

#: stream time going back by more than this is a restart of the stream's clock; less is a
#: result that arrived after a later frame's (detection takes longer than the gate)
RESTART_BACKWARD_S: Final = 30.0
#: once a frame decoded although the packet gate called it unchanged shows activity, the
#: camera's packet gate stays shut for this long (stream time)
PACKET_GATE_DISTRUST_S: Final = 600.0


class AdaptiveRate:
    """One camera's rate controller; :meth:`observe` from any thread, :attr:`target_fps`
    read without a lock (a float replaced whole).

    >>> rate = AdaptiveRate(floor_fps=0.5, normal_fps=1.0, tracking_fps=5.0, quiet_after_s=10)
    >>> rate.observe(0.0, appeared=True, moving_tracks=False).value, rate.target_fps
    ('normal', 1.0)
    >>> rate.observe(10.0, appeared=False, moving_tracks=False).value, rate.target_fps
    ('floor', 0.5)
    >>> rate.observe(12.0, appeared=True, moving_tracks=True, near_rule_motion=True).value
    'tracking'
    """

    def __init__(
        self,
        floor_fps: float,
        normal_fps: float,
        tracking_fps: float,
        quiet_after_s: float = 10.0,
    ) -> None:
        if not 0 < floor_fps <= normal_fps <= tracking_fps:
            raise ValueError(
                "expected 0 < floor_fps <= normal_fps <= tracking_fps, got "
                f"{floor_fps}, {normal_fps}, {tracking_fps}"
            )
        if quiet_after_s <= 0:
            raise ValueError(f"expected quiet_after_s > 0, got {quiet_after_s}")
        self._fps = {
            AnalysisLevel.FLOOR: float(floor_fps),
            AnalysisLevel.NORMAL: float(normal_fps),
            AnalysisLevel.TRACKING: float(tracking_fps),
        }
        self.quiet_after_s = quiet_after_s
        self._lock = threading.Lock()
        self._observed = threading.Condition(self._lock)
        self._last_t: float | None = None
        self._last_active: float | None = None
        self._last_rule_motion: float | None = None
        self.level = AnalysisLevel.NORMAL
        #: the rate the ingest should sample at now, in frames per second
        self.target_fps = float(normal_fps)
        self._check_s: float | None = None  # stream time of a frame that checks the packet gate
        self._distrust_until: float | None = None

    @classmethod
    def for_camera(cls, camera: CameraConfig) -> AdaptiveRate:
        """The controller ``camera.adaptive`` asks for (fixed at analysis_fps when off)."""
        floor, normal, tracking = camera.analysis_rates
        return cls(floor, normal, tracking, camera.adaptive.quiet_after_s)

    @property
    def adapts(self) -> bool:
        """Whether the rate can change at all."""
        return len(set(self._fps.values())) > 1

    def fps(self, level: AnalysisLevel) -> float:
        """The rate of ``level``."""
        return self._fps[level]

    def observe(
        self, t_s: float, *, appeared: bool, moving_tracks: bool, near_rule_motion: bool = False
    ) -> AnalysisLevel:
        """One analysed frame at stream time ``t_s``: whether an object appeared that the
        result before did not have, whether a track moved since the detection before, whether
        one moved near a motion rule. Returns the level now in force."""
        with self._lock:
            last = self._last_t
            if last is None or t_s < last - RESTART_BACKWARD_S:
                # first frame, or the stream's clock restarted: quiet is measured from here
                last = self._last_active = t_s
                self._last_rule_motion = None
                self._check_s = self._distrust_until = None
            # Results arrive slightly out of order (a gated frame is handed on while the
            # frame before it is still in the detector): an earlier time only adds what it
            # saw, it never moves the clock back.
            now = self._last_t = max(last, t_s)
            if appeared or moving_tracks:
                self._last_active = max(self._last_active or t_s, t_s)
                if t_s == self._check_s:
                    self._distrust_until = t_s + PACKET_GATE_DISTRUST_S
            if self._check_s is not None and t_s >= self._check_s:
                self._check_s = None  # analysed (or a later frame was: it was dropped)
            if near_rule_motion:
                self._last_rule_motion = max(self._last_rule_motion or t_s, t_s)
            level = self._level_at(now)
            self.level = level
            self.target_fps = self._fps[level]
            self._observed.notify_all()
            return level

    def wait_observed(self, t_s: float, timeout_s: float) -> bool:
        """Wait until the frame at stream time ``t_s`` (or a later one) has been observed, at
        most ``timeout_s``; whether it was. For a file read as fast as possible, whose ingest
        would otherwise decide on a level that frame may change."""
        with self._observed:
            return self._observed.wait_for(
                lambda: self._last_t is not None and self._last_t >= t_s, timeout_s
            )

    def packet_gate_open(self, t_s: float, handed_s: float | None) -> bool:
        """Whether the camera's ingest may leave a keyframe at stream time ``t_s`` undecoded
        when its packet sizes show nothing changed (:class:`~feedtag.ingest.policies.
        PacketGate`): only at the floor rate, once the result of the last frame the ingest
        handed to analysis (at ``handed_s``) has been observed, so that a file read faster
        than it is analysed does not skip on a level that frame would have raised; and not
        for ``PACKET_GATE_DISTRUST_S`` after a check frame (:meth:`checks_packet_gate`)
        showed activity the packet sizes did not."""
        seen = self._last_t
        return (
            self.level is AnalysisLevel.FLOOR
            and not self._distrusted_at(t_s)
            and (handed_s is None or (seen is not None and seen >= handed_s))
        )

    def packet_gate_distrusted(self) -> bool:
        """Whether a check frame's activity has the packet gate shut now (stream time)."""
        seen = self._last_t
        return seen is not None and self._distrusted_at(seen)

    def _distrusted_at(self, t_s: float) -> bool:
        until = self._distrust_until
        return until is not None and t_s < until

    def checks_packet_gate(self, t_s: float) -> None:
        """The frame at ``t_s`` is decoded although the packet gate called it unchanged (the
        gate's refresh was due): if its analysis finds activity, the packet sizes missed it
        and the camera's packet gate shuts (an encoder that holds a constant bitrate, say)."""
        with self._lock:
            self._check_s = t_s

    def _level_at(self, t_s: float) -> AnalysisLevel:
        motion = self._last_rule_motion
        if motion is not None and t_s - motion < self.quiet_after_s:
            return self._distinct(AnalysisLevel.TRACKING)
        active = self._last_active
        if active is not None and t_s - active >= self.quiet_after_s:
            return self._distinct(AnalysisLevel.FLOOR)
        return AnalysisLevel.NORMAL

    def _distinct(self, level: AnalysisLevel) -> AnalysisLevel:
        """``level``, or NORMAL when its rate is the normal one (a floor or tracking rate
        equal to analysis_fps is not reported as a change)."""
        if self._fps[level] == self._fps[AnalysisLevel.NORMAL]:
            return AnalysisLevel.NORMAL
        return level


class AnalysisRates:
    """The controllers of a node's cameras, by camera id: the ingest reads them, the vision
    stage feeds them. Thread-safe; copy-on-write, so :meth:`get` takes no lock.

    >>> rates = AnalysisRates()
    >>> camera = CameraConfig(id="door", url="rtsp://cam/x")
    >>> rates.for_camera(camera) is rates.for_camera(camera), rates.get("gone")
    (True, None)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rates: dict[str, AdaptiveRate] = {}

    def for_camera(self, camera: CameraConfig) -> AdaptiveRate:
        """The controller of ``camera``, made on first use: the ingest and the vision stage
        of one camera share it whichever asks first."""
        with self._lock:
            rate = self._rates.get(camera.id)
            if rate is None:
                rate = AdaptiveRate.for_camera(camera)
                self._rates = {**self._rates, camera.id: rate}
            return rate

    def get(self, camera_id: str) -> AdaptiveRate | None:
        return self._rates.get(camera_id)

    def remove(self, camera_id: str) -> None:
        """Forget a camera's controller (removed, or about to be changed)."""
        with self._lock:
            self._rates = {cid: r for cid, r in self._rates.items() if cid != camera_id}
