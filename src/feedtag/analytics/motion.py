"""Where a camera's motion rules watch: the places a moving track needs the tracking rate.

Rules that judge motion (line_cross, wrong_way, stopped_vehicle, collision_candidate) need
more than one frame a second while something moves near them: at 1 fps a walker is 1.4 m
further on at each frame and the tracker loses them, a crossing goes uncounted. Elsewhere
the normal rate is enough. :class:`MotionRegions` answers "which tracks are near such a
rule" from the camera's analytics: within ``margin`` of a line, or inside (or within
``margin`` of) the rule's zone; a rule without a zone watches the whole frame. Only tracks
whose label the rule watches count. The adaptive rate (:mod:`feedtag.ingest.rate`) is fed
from it by the vision stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedtag.analytics.geometry import Point, distance_to_segment, ground_points, near_polygon
from feedtag.config.analytics import (
    CameraAnalytics,
    CollisionCandidateRule,
    LineCrossRule,
    StoppedVehicleRule,
    WrongWayRule,
)
from feedtag.core import Detections

__all__ = ["MotionRegions"]


@dataclass(frozen=True, slots=True)
class _Region:
    labels: frozenset[str]  # empty: every label
    line: tuple[Point, Point] | None = None
    polygon: tuple[Point, ...] | None = None  # None with no line: the whole frame

    def near(self, point: Point, label: str, margin: float) -> bool:
        if self.labels and label not in self.labels:
            return False
        if self.line is not None:
            return distance_to_segment(point, *self.line) <= margin
        if self.polygon is not None:
            return near_polygon(point, self.polygon, margin)
        return True


class MotionRegions:
    """The lines and zones of a camera's motion rules.

    >>> analytics = CameraAnalytics.model_validate({
    ...     "lines": [{"name": "door", "start": [0.5, 0], "end": [0.5, 1]}],
    ...     "rules": [{"kind": "line_cross", "line": "door", "labels": ["person"]}]})
    >>> regions = MotionRegions.from_analytics(analytics, margin=0.05)
    >>> boxes = np.array([[40, 0, 52, 100], [0, 0, 10, 100]], np.float32)
    >>> found = Detections(boxes, np.ones(2, np.float32), np.zeros(2, np.int32))
    >>> regions.near_mask(found, ["person"], (100, 100)).tolist()
    [True, False]
    """

    def __init__(self, regions: Sequence[_Region], margin: float) -> None:
        self._regions = tuple(regions)
        self.margin = margin

    @classmethod
    def from_analytics(cls, analytics: CameraAnalytics, margin: float) -> MotionRegions:
        zones = {zone.name: tuple(zone.polygon) for zone in analytics.zones}
        lines = {line.name: (line.start, line.end) for line in analytics.lines}
        regions = []
        for rule in analytics.rules:
            if isinstance(rule, LineCrossRule):
                regions.append(_Region(frozenset(rule.labels), line=lines[rule.line]))
            elif isinstance(rule, (WrongWayRule, StoppedVehicleRule, CollisionCandidateRule)):
                polygon = None if rule.zone is None else zones[rule.zone]
                regions.append(_Region(frozenset(rule.labels), polygon=polygon))
        return cls(regions, margin)

    def __bool__(self) -> bool:
        return bool(self._regions)

    def near_mask(
        self, detections: Detections, class_names: Sequence[str], frame_size: tuple[int, int]
    ) -> npt.NDArray[np.bool_]:
        """Per detection: whether it is near one of the regions."""
        mask = np.zeros(len(detections), np.bool_)
        if not self._regions or not len(detections):
            return mask
        points = ground_points(detections.xyxy, frame_size)
        for index, (class_id, point) in enumerate(
            zip(detections.class_id.tolist(), points.tolist(), strict=True)
        ):
            label = class_names[class_id]
            where = (float(point[0]), float(point[1]))
            mask[index] = any(region.near(where, label, self.margin) for region in self._regions)
        return mask
