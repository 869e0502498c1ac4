"""The adaptive analysis rate of a camera (``CameraConfig.adaptive``; docs/ingest.md).

Defaults that depend on ``analysis_fps`` are left unset (None) and resolved by
:meth:`AdaptiveRateConfig.rates`, so that a camera whose ``analysis_fps`` changes through the
API keeps sane floor and tracking rates; only rates given explicitly are checked against it.
"""

from __future__ import annotations

from typing import Final

from pydantic import Field

from feedtag.config.base import StrictModel

#: the floor rate when ``adaptive.floor_fps`` is not given (at most analysis_fps): one frame
#: every 2 s still sees anyone who stays in view for 2 s, and the first frame that shows them
#: raises the rate again
DEFAULT_FLOOR_FPS: Final = 0.5
#: the tracking rate when ``adaptive.tracking_fps`` is not given (at least analysis_fps): at
#: 5 fps a walker moves about 0.3 m between frames, which the tracker follows across a line
DEFAULT_TRACKING_FPS: Final = 5.0


class AdaptiveRateConfig(StrictModel):
    """How a camera's analysis rate adapts to what it sees (docs/ingest.md).

    Quiet (no object appeared and no track moved for ``quiet_after_s``): the floor rate;
    activity: ``analysis_fps``; a moving track near a line, direction or speed rule (line_cross,
    wrong_way, stopped_vehicle, collision_candidate): the tracking rate, until no such
    track has moved for ``quiet_after_s``.
    """

    enabled: bool = Field(
        default=True, description="Set false to analyse at analysis_fps all the time."
    )
    floor_fps: float | None = Field(
        default=None,
        gt=0,
        le=30,
        description=f"Rate of a quiet scene; at most analysis_fps. Default: "
        f"{DEFAULT_FLOOR_FPS:g}, or analysis_fps if that is lower.",
    )
    tracking_fps: float | None = Field(
        default=None,
        gt=0,
        le=30,
        description=f"Rate while a track moves near a motion rule; at least analysis_fps. "
        f"Default: {DEFAULT_TRACKING_FPS:g}, or analysis_fps if that is higher.",
    )
    quiet_after_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Seconds of stream time in which no object appeared and no track moved "
        "(for the tracking rate: no track moved near a motion rule) before the rate drops.",
    )
    packet_gate: bool = Field(
        default=True,
        description="At the floor rate, leave a due keyframe undecoded when the compressed "
        "stream's packet sizes show nothing changed since the keyframe before; a frame is "
        "still decoded at least every gate.refresh_s. Off while the camera's encoder "
        "hides change from its packet sizes (docs/ingest.md).",
    )
    rule_margin: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Normalized distance from a rule's line (or zone edge) that counts as near it.",
    )

    def rates(self, analysis_fps: float) -> tuple[float, float, float]:
        """(floor, normal, tracking) frames per second for a camera's ``analysis_fps``.

        >>> AdaptiveRateConfig().rates(1.0), AdaptiveRateConfig(enabled=False).rates(2.0)
        ((0.5, 1.0, 5.0), (2.0, 2.0, 2.0))
        """
        if not self.enabled:
            return analysis_fps, analysis_fps, analysis_fps
        floor = self.floor_fps or min(DEFAULT_FLOOR_FPS, analysis_fps)
        tracking = self.tracking_fps or max(DEFAULT_TRACKING_FPS, analysis_fps)
        return floor, analysis_fps, tracking

    def check_against(self, analysis_fps: float) -> None:
        """Raises ValueError when a rate given explicitly crosses ``analysis_fps``."""
        if self.floor_fps is not None and self.floor_fps > analysis_fps:
            raise ValueError(
                f"adaptive.floor_fps ({self.floor_fps:g}) must be at most analysis_fps "
                f"({analysis_fps:g})"
            )
        if self.tracking_fps is not None and self.tracking_fps < analysis_fps:
            raise ValueError(
                f"adaptive.tracking_fps ({self.tracking_fps:g}) must be at least analysis_fps "
                f"({analysis_fps:g})"
            )
