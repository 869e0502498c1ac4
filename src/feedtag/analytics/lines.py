"""Line crossing with direction, and running counts per direction."""

from __future__ import annotations

from dataclasses import dataclass

from feedtag.analytics.geometry import Point, segments_intersect, signed_distance
from feedtag.analytics.rules import Finding, Observation, RuleContext, select
from feedtag.config.analytics import LineCrossRule as LineCrossConfig
from feedtag.core import EventKind


@dataclass(slots=True)
class _Side:
    side: int = 0  # -1 left of the line, +1 right, 0 not yet known
    point: Point = (0.0, 0.0)  # last ground point off the line's dead band


class LineCrossRule:
    """line_cross: a track's ground point moves from one side of the line to the other.

    The side only changes once the point is more than ``hysteresis`` from the line, so a
    person standing on it does not count in and out at every frame. The path from the last
    point on the old side to the first on the new must meet the drawn segment: walking past
    the end of a short line is not a crossing. A track lost on one side and found on the
    other within the lost time crosses once. Unconfirmed detections are ignored.

    >>> import numpy as np
    >>> from feedtag.config.analytics import LineConfig
    >>> from feedtag.core import Detections
    >>> line = LineConfig(name="door", start=(0, 0.5), end=(1, 0.5))
    >>> ctx = RuleContext("cam", "line_cross-0", {}, {"door": line}, 5.0)
    >>> rule = LineCrossRule(ctx, LineCrossConfig(line="door"))
    >>> def at(y):
    ...     return Detections(np.array([[40, y - 10, 60, y]], np.float32),
    ...                       np.ones(1, np.float32), np.zeros(1, np.int32), np.array([3]))
    >>> for t, y in enumerate((20, 40, 60, 80)):
    ...     _ = rule.update(Observation("cam", t, 1e9 + t, at(y), ("person",), (100, 100)))
    >>> rule.counts
    {'in': 1, 'out': 0}
    """

    def __init__(self, context: RuleContext, config: LineCrossConfig) -> None:
        self.rule_id = context.rule_id
        self._context = context
        self._config = config
        self._line = context.lines[config.line]
        self._tracks: dict[int, _Side] = {}
        self._last_seen: dict[int, float] = {}
        self.counts = {self._line.forward_name: 0, self._line.backward_name: 0}

    def update(self, observation: Observation) -> list[Finding]:
        t = observation.t_s
        found: list[Finding] = []
        for seen in select(observation, self._config.labels, None):
            if not seen.confirmed:
                continue
            self._last_seen[seen.track_id] = t
            state = self._tracks.setdefault(seen.track_id, _Side())
            side = self._side_of(seen.point)
            if side == 0:
                continue
            if state.side == -side and self._crossed(state.point, seen.point):
                direction = self._line.forward_name if side > 0 else self._line.backward_name
                self.counts[direction] += 1
                found.append(self._event(seen.track_id, seen.label, direction, observation))
            state.side, state.point = side, seen.point
        self._forget(t)
        return found

    def close(self, wall_time: float) -> list[Finding]:
        return []

    def _side_of(self, point: Point) -> int:
        distance = signed_distance(point, self._line.start, self._line.end)
        if abs(distance) <= self._config.hysteresis:
            return 0
        return 1 if distance > 0 else -1

    def _crossed(self, before: Point, after: Point) -> bool:
        return segments_intersect(before, after, self._line.start, self._line.end)

    def _forget(self, t: float) -> None:
        lost = [
            k for k, seen_s in self._last_seen.items() if t - seen_s > self._context.lost_track_s
        ]
        for track_id in lost:
            del self._last_seen[track_id]
            self._tracks.pop(track_id, None)

    def _event(self, track_id: int, label: str, direction: str, obs: Observation) -> Finding:
        return self._context.event(
            EventKind.LINE_CROSS,
            obs.wall_time,
            track_ids=(track_id,),
            label=label,
            zone=self._config.line,
            attributes={
                "line": self._config.line,
                "direction": direction,
                "counts": dict(self.counts),
            },
        )
