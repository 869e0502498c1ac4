"""Presence tag segments: the searchable index of what was visible, where, how many, when.

A segment of one label opens when the label is first seen (in the zone, or anywhere), keeps
the largest count seen at once, and closes once the label has been absent for ``grace_s``.
The grace period is why a person missed by the detector on one frame at 1 fps does not split
an afternoon into a hundred segments. Unconfirmed detections (track id -1) count: presence
needs no identity.

In a zone, a confirmed track whose path since the previous frame crossed the zone counts too
(``count_passing``): at one analysed frame a second a person walks two metres between frames,
across a small zone without ever being seen in it. Such a sighting is placed halfway between
the two frames. On vtest.avi's 3x3 grid (cells larger than a second's walk) it changes recall
against full-rate analysis by nothing measurable (docs/performance.md): there the misses are
people the one sampled frame did not detect. It matters for zones smaller than a stride
between frames: a doorway, a crossing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from feedtag.analytics.geometry import (
    Point,
    path_within_bounds,
    point_in_polygon,
    polygon_bounds,
    segment_meets_polygon,
)
from feedtag.analytics.rules import Finding, Observation, RuleContext, Seen, TrackTable, select
from feedtag.config.analytics import PresenceRule as PresenceConfig
from feedtag.core import TagSegment, stable_id


@dataclass(slots=True)
class _Step:
    """Where a track was at its previous frame."""

    point: Point | None = None
    t_s: float = 0.0
    wall: float = 0.0


@dataclass(slots=True)
class _Open:
    started_at: float
    last_seen_s: float
    last_seen_wall: float
    max_count: int


class PresenceRule:
    """Emits a :class:`~feedtag.core.TagSegment` per label when its segment closes.

    >>> import numpy as np
    >>> from feedtag.core import Detections
    >>> ctx = RuleContext("door", "presence-0", {}, {}, 5.0)
    >>> rule = PresenceRule(ctx, PresenceConfig(grace_s=2))
    >>> seen = Detections(np.array([[0, 0, 1, 1]], np.float32), np.ones(1, np.float32),
    ...                   np.zeros(1, np.int32))
    >>> for t in (0, 1, 2):
    ...     _ = rule.update(Observation("door", t, 1e9 + t, seen, ("person",), (10, 10)))
    >>> [(s.label, s.started_at - 1e9, s.ended_at - 1e9) for s in rule.close(1e9 + 9)]
    [('person', 0.0, 2.0)]
    """

    def __init__(self, context: RuleContext, config: PresenceConfig) -> None:
        self.rule_id = context.rule_id
        self._context = context
        self._config = config
        self._zone = None if config.zone is None else context.zones[config.zone]
        self._bounds = None if self._zone is None else polygon_bounds(self._zone.polygon)
        self._open: dict[str, _Open] = {}
        self._steps: TrackTable[_Step] = TrackTable(context.lost_track_s, _Step)

    def update(self, observation: Observation) -> list[Finding]:
        inside = list(select(observation, self._config.labels, self._zone, self._bounds))
        counts = Counter(seen.label for seen in inside)
        t, wall = observation.t_s, observation.wall_time
        for label, count in counts.items():
            self._seen(label, count, t, wall)
        for label, (count, mid_s, mid_wall) in self._passing(observation, inside).items():
            self._seen(label, count, mid_s, mid_wall)
        gone = [
            label
            for label, segment in self._open.items()
            if label not in counts and t - segment.last_seen_s > self._config.grace_s
        ]
        return [self._finish(label) for label in sorted(gone)]

    def close(self, wall_time: float) -> list[Finding]:
        return [self._finish(label) for label in sorted(self._open)]

    def _seen(self, label: str, count: int, t: float, wall: float) -> None:
        segment = self._open.get(label)
        if segment is None:
            self._open[label] = _Open(wall, t, wall, count)
            return
        if t >= segment.last_seen_s:
            segment.last_seen_s, segment.last_seen_wall = t, wall
        segment.max_count = max(segment.max_count, count)

    def _passing(
        self, observation: Observation, inside: list[Seen]
    ) -> dict[str, tuple[int, float, float]]:
        """Per label: tracks outside the zone at this frame and at their previous one whose
        path in between crossed it, and the halfway time (stream, wall) of the latest."""
        zone, bounds = self._zone, self._bounds
        if zone is None or bounds is None or not self._config.count_passing:
            return {}
        t, wall = observation.t_s, observation.wall_time
        seen_inside = {seen.track_id for seen in inside}
        passing: dict[str, tuple[int, float, float]] = {}
        for seen in select(observation, self._config.labels, None):
            if not seen.confirmed:
                continue
            step = self._steps.touch(seen.track_id, t, wall)
            before, step.point = step.point, seen.point
            before_s, before_wall, step.t_s, step.wall = step.t_s, step.wall, t, wall
            if before is None or seen.track_id in seen_inside:
                continue
            if not path_within_bounds(before, seen.point, bounds):
                continue  # far from the zone: neither end in it, nor the path across it
            if not point_in_polygon(before, zone.polygon) and segment_meets_polygon(
                before, seen.point, zone.polygon
            ):
                count = passing.get(seen.label, (0, 0.0, 0.0))[0] + 1
                passing[seen.label] = (count, (before_s + t) / 2, (before_wall + wall) / 2)
        self._steps.expire(t)
        return passing

    def open_segments(self) -> list[TagSegment]:
        """Segments still open (``ended_at`` None): what is visible now."""
        return [self._segment(label, segment, None) for label, segment in self._open.items()]

    def _finish(self, label: str) -> TagSegment:
        segment = self._open.pop(label)
        return self._segment(label, segment, segment.last_seen_wall)

    def _segment(self, label: str, segment: _Open, ended_at: float | None) -> TagSegment:
        context = self._context
        return TagSegment(
            segment_id=stable_id(
                context.camera_id,
                context.rule_id,
                label,
                self._config.zone,
                round(segment.started_at, 3),
            ),
            camera_id=context.camera_id,
            label=label,
            zone=self._config.zone,
            started_at=segment.started_at,
            ended_at=ended_at,
            max_count=segment.max_count,
        )
