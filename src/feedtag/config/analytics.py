"""Strict models of one camera's analytics: zones, lines and the rules that watch them.

Coordinates are normalized to the analysed frame (0..1, x to the right, y down), so a zone
drawn once survives a change of ``analysis_width``. Directions (a zone's allowed direction)
are in the image as displayed: 0° points right, 90° points down.

A rule names zones and lines by name; a name that does not exist is an error that names the
rule's field, e.g. ``rules[2].zone: unknown zone 'exit'``.

>>> analytics = CameraAnalytics.model_validate({
...     "zones": [{"name": "road", "polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]],
...                "roadway": True}],
...     "rules": [{"kind": "stopped_vehicle", "zone": "road", "min_duration_s": 30}],
... })
>>> analytics.rules[0].labels
['car', 'truck', 'bus', 'motorcycle']
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from feedtag.config.base import StrictModel

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
VEHICLE_LABELS = ["car", "truck", "bus", "motorcycle"]
MAX_POLYGON_POINTS = 64
MAX_DURATION_S = 86_400.0

Coordinate = Annotated[float, Field(ge=0, le=1)]
Point = tuple[Coordinate, Coordinate]
Labels = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=64)]],
    Field(max_length=80, description="Class names (COCO: person, car ...); empty means all."),
]


def _name_field(what: str) -> Any:
    return Field(pattern=NAME_PATTERN, description=f"Name of the {what}, unique per camera.")


class ZoneConfig(StrictModel):
    """A polygon on the ground, in normalized frame coordinates."""

    name: str = _name_field("zone")
    polygon: list[Point] = Field(
        min_length=3,
        max_length=MAX_POLYGON_POINTS,
        description="Corners [x, y] in 0..1 of the analysed frame, in drawing order.",
    )
    roadway: bool = Field(
        default=False, description="Marks carriageway: stopped_vehicle rules need it."
    )
    allowed_direction_deg: float | None = Field(
        default=None,
        ge=0,
        lt=360,
        description="Allowed direction of travel in the image: 0 = right, 90 = down.",
    )
    allowed_direction: tuple[float, float] | None = Field(
        default=None, description="Allowed direction as an image vector [dx, dy] (y down)."
    )

    @model_validator(mode="after")
    def _one_direction(self) -> Self:
        if self.allowed_direction_deg is not None and self.allowed_direction is not None:
            raise ValueError("give allowed_direction_deg or allowed_direction, not both")
        if self.allowed_direction is not None and math.hypot(*self.allowed_direction) == 0:
            raise ValueError("allowed_direction must not be the zero vector")
        return self

    def direction_deg(self) -> float | None:
        """The allowed direction as an angle, whichever way it was given.

        >>> ZoneConfig(name="z", polygon=[(0, 0), (1, 0), (1, 1)],
        ...            allowed_direction=(0, 1)).direction_deg()
        90.0
        """
        if self.allowed_direction is not None:
            dx, dy = self.allowed_direction
            return math.degrees(math.atan2(dy, dx)) % 360
        return self.allowed_direction_deg


class LineConfig(StrictModel):
    """A counting line from ``start`` to ``end``.

    Crossing from the left-hand side to the right-hand side of the line, as seen walking from
    ``start`` to ``end`` in the image, is ``forward`` (named ``forward_name``, "in" unless set);
    the other way is ``backward``. For a line drawn left to right, moving down the image is
    forward.
    """

    name: str = _name_field("line")
    start: Point = Field(description="First end [x, y] in 0..1 of the analysed frame.")
    end: Point = Field(description="Second end [x, y] in 0..1 of the analysed frame.")
    forward_name: str = Field(
        default="in", pattern=NAME_PATTERN, description="Name of a left-to-right crossing."
    )
    backward_name: str = Field(
        default="out", pattern=NAME_PATTERN, description="Name of a right-to-left crossing."
    )

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        if self.forward_name == self.backward_name:
            raise ValueError("forward_name and backward_name must differ")
        return self


class _RuleBase(StrictModel):
    id: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="Rule id; defaults to kind-index."
    )


def _duration(default: float, what: str) -> Any:
    return Field(default=default, ge=0, le=MAX_DURATION_S, description=what)


class PresenceRule(_RuleBase):
    """Tag segments: when each label was visible (in a zone or anywhere), at most how many."""

    kind: Literal["presence"] = "presence"
    labels: Labels = Field(default_factory=list)
    zone: str | None = Field(default=None, description="Zone to watch; none means the frame.")
    grace_s: float = _duration(5.0, "Absence that closes a segment, so flicker does not split it.")
    count_passing: bool = Field(
        default=True,
        description="With a zone: also count a track whose path since the previous frame "
        "crossed the zone (at 1 fps a person can cross a small zone between two frames).",
    )


class ZoneEnterExitRule(_RuleBase):
    """zone_enter and zone_exit events per track."""

    kind: Literal["zone_enter_exit"] = "zone_enter_exit"
    labels: Labels = Field(default_factory=list)
    zone: str = Field(description="Zone to watch.")
    min_duration_s: float = _duration(1.0, "Time inside (or outside) before a change counts.")


class LineCrossRule(_RuleBase):
    """line_cross events with direction, and counts per direction."""

    kind: Literal["line_cross"] = "line_cross"
    labels: Labels = Field(default_factory=list)
    line: str = Field(description="Line to watch.")
    hysteresis: float = Field(
        default=0.01,
        ge=0,
        le=0.2,
        description="Normalized distance from the line inside which the side does not change.",
    )


class DwellRule(_RuleBase):
    """dwell: a track stayed in a zone longer than ``min_duration_s``."""

    kind: Literal["dwell"] = "dwell"
    labels: Labels = Field(default_factory=list)
    zone: str = Field(description="Zone to watch.")
    min_duration_s: float = _duration(60.0, "Time in the zone that counts as dwelling.")


class StoppedVehicleRule(_RuleBase):
    """stopped_vehicle: a vehicle stationary longer than ``min_duration_s`` on a roadway."""

    kind: Literal["stopped_vehicle"] = "stopped_vehicle"
    labels: Labels = Field(default_factory=lambda: list(VEHICLE_LABELS))
    zone: str = Field(description="A zone marked roadway.")
    min_duration_s: float = _duration(30.0, "Time stationary that counts as stopped.")
    max_movement: float = Field(
        default=0.3,
        gt=0,
        le=5,
        description="Movement, as a fraction of the box diagonal, still counted as stationary.",
    )


class WrongWayRule(_RuleBase):
    """wrong_way: a track moving against its zone's allowed direction."""

    kind: Literal["wrong_way"] = "wrong_way"
    labels: Labels = Field(default_factory=lambda: list(VEHICLE_LABELS))
    zone: str = Field(description="A zone with an allowed direction.")
    max_angle_deg: float = Field(
        default=120, ge=45, le=180, description="Larger angles from the allowed one are wrong."
    )
    min_travel: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Travel, as a fraction of the frame diagonal, needed to judge direction.",
    )


class CrowdingRule(_RuleBase):
    """crowding: at least ``min_count`` of the labels in a zone for ``min_duration_s``."""

    kind: Literal["crowding"] = "crowding"
    labels: Labels = Field(default_factory=lambda: ["person"])
    zone: str | None = Field(default=None, description="Zone to watch; none means the frame.")
    min_count: int = Field(default=10, ge=1, le=10_000, description="Objects that make a crowd.")
    min_duration_s: float = _duration(10.0, "Time the crowd must last.")
    grace_s: float = _duration(5.0, "Time below min_count before a new crowd can fire.")


class CollisionCandidateRule(_RuleBase):
    """collision_candidate: two vehicles overlap and then both stop."""

    kind: Literal["collision_candidate"] = "collision_candidate"
    labels: Labels = Field(default_factory=lambda: list(VEHICLE_LABELS))
    zone: str | None = Field(default=None, description="Zone to watch; none means the frame.")
    min_iou: float = Field(default=0.05, gt=0, le=1, description="Box overlap that counts.")
    min_duration_s: float = _duration(10.0, "Time both must stay stopped.")
    within_s: float = _duration(10.0, "Both must stop at most this long after the overlap.")
    max_movement: float = Field(
        default=0.3, gt=0, le=5, description="Movement (fraction of box diagonal) still stopped."
    )


class CameraHealthRule(_RuleBase):
    """camera_offline, camera_frozen, camera_covered and camera_moved."""

    kind: Literal["camera_health"] = "camera_health"
    offline_after_s: float = _duration(60.0, "Ingest offline or stalled this long.")
    frozen_after_s: float = _duration(30.0, "Identical frames this long.")
    covered_after_s: float = _duration(30.0, "Dark or featureless frames this long.")
    moved_after_s: float = _duration(30.0, "Changed background this long.")
    dark_luma: float = Field(default=18, ge=0, le=255, description="Mean grey at or below: dark.")
    uniform_std: float = Field(
        default=6, ge=0, le=128, description="Grey standard deviation at or below: covered."
    )
    frozen_diff: float = Field(
        default=0.5, ge=0, le=255, description="Mean grey change at or below: same image."
    )
    moved_edge_change: float = Field(
        default=0.5, gt=0, le=1, description="Fraction of background edges that must change."
    )


Rule = Annotated[
    PresenceRule
    | ZoneEnterExitRule
    | LineCrossRule
    | DwellRule
    | StoppedVehicleRule
    | WrongWayRule
    | CrowdingRule
    | CollisionCandidateRule
    | CameraHealthRule,
    Field(discriminator="kind"),
]


class CameraAnalytics(StrictModel):
    """Zones, lines and rules of one camera."""

    lost_track_s: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="A track unseen for less than this is the same track when it comes back.",
    )
    zones: list[ZoneConfig] = Field(default_factory=list, max_length=256, description="Zones.")
    lines: list[LineConfig] = Field(default_factory=list, max_length=256, description="Lines.")
    rules: list[Rule] = Field(default_factory=list, max_length=256, description="Rules.")

    @field_validator("zones")
    @classmethod
    def _unique_zones(cls, zones: list[ZoneConfig]) -> list[ZoneConfig]:
        _check_unique([zone.name for zone in zones])
        return zones

    @field_validator("lines")
    @classmethod
    def _unique_lines(cls, lines: list[LineConfig]) -> list[LineConfig]:
        _check_unique([line.name for line in lines])
        return lines

    @field_validator("rules")
    @classmethod
    def _references(cls, rules: list[Rule], info: ValidationInfo) -> list[Rule]:
        zones = {zone.name: zone for zone in info.data.get("zones", [])}
        lines = {line.name for line in info.data.get("lines", [])}
        ids: set[str] = set()
        for index, rule in enumerate(rules):
            _check_rule(index, rule, zones, lines)
            rule_id = rule_id_of(index, rule)
            if rule_id in ids:
                raise ValueError(f"rules[{index}].id: duplicate rule id {rule_id!r}")
            ids.add(rule_id)
        return rules


def _check_unique(names: list[str]) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise ValueError(f"[{index}].name: duplicate name {name!r}")
        seen.add(name)


def rule_id_of(index: int, rule: Rule) -> str:
    """The rule's id: its own, or ``kind-index``.

    >>> rule_id_of(3, DwellRule(zone="z"))
    'dwell-3'
    """
    return rule.id if rule.id is not None else f"{rule.kind}-{index}"


def _check_rule(index: int, rule: Rule, zones: dict[str, ZoneConfig], lines: set[str]) -> None:
    where = f"rules[{index}]"
    zone_name = getattr(rule, "zone", None)
    if zone_name is not None and zone_name not in zones:
        known = ", ".join(sorted(zones)) or "none"
        raise ValueError(f"{where}.zone: unknown zone {zone_name!r} (known: {known})")
    line_name = getattr(rule, "line", None)
    if line_name is not None and line_name not in lines:
        known = ", ".join(sorted(lines)) or "none"
        raise ValueError(f"{where}.line: unknown line {line_name!r} (known: {known})")
    if isinstance(rule, StoppedVehicleRule) and not zones[rule.zone].roadway:
        raise ValueError(f"{where}.zone: zone {rule.zone!r} is not marked roadway")
    if isinstance(rule, WrongWayRule) and zones[rule.zone].direction_deg() is None:
        raise ValueError(f"{where}.zone: zone {rule.zone!r} has no allowed direction")
