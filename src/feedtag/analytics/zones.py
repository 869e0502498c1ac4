"""Zone rules: enter/exit, dwell, crowding and wrong-way movement.

Track rules ignore unconfirmed detections (id -1): an enter without a track to exit later
would be noise. Crowding counts them, since it needs a count, not an identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from feedtag.analytics.geometry import (
    Point,
    angle_between_deg,
    heading_deg,
    in_polygon,
    polygon_bounds,
)
from feedtag.analytics.rules import Finding, Observation, RuleContext, Seen, TrackTable, select
from feedtag.config.analytics import CrowdingRule as CrowdingConfig
from feedtag.config.analytics import DwellRule as DwellConfig
from feedtag.config.analytics import WrongWayRule as WrongWayConfig
from feedtag.config.analytics import ZoneEnterExitRule as ZoneEnterExitConfig
from feedtag.core import Event, EventEnd, EventKind


def _labelled(observation: Observation, labels: list[str]) -> list[Seen]:
    return [s for s in select(observation, labels, None) if s.confirmed]


@dataclass(slots=True)
class _Membership:
    inside: bool = False
    entered_s: float = 0.0
    pending: bool | None = None  # a change of side not yet held for min_duration_s
    pending_s: float = 0.0
    pending_wall: float = 0.0
    label: str = ""
    last_s: float = 0.0  # last sighting, where a lost track exits
    last_wall: float = 0.0


class ZoneEnterExitRule:
    """zone_enter and zone_exit per track. A change of side counts once it has held for
    ``min_duration_s``, so a ground point jittering on the zone's edge fires nothing; a track
    lost while inside exits at its last sighting (``attributes["reason"] == "lost"``)."""

    def __init__(self, context: RuleContext, config: ZoneEnterExitConfig) -> None:
        self.rule_id = context.rule_id
        self._context = context
        self._config = config
        self._zone = context.zones[config.zone]
        self._bounds = polygon_bounds(self._zone.polygon)
        self._tracks: TrackTable[_Membership] = TrackTable(context.lost_track_s, _Membership)

    def update(self, observation: Observation) -> list[Finding]:
        t, wall = observation.t_s, observation.wall_time
        found: list[Finding] = []
        for seen in _labelled(observation, self._config.labels):
            state = self._tracks.touch(seen.track_id, t, wall)
            state.label, state.last_s, state.last_wall = seen.label, t, wall
            inside = in_polygon(seen.point, self._zone.polygon, self._bounds)
            if inside == state.inside:
                state.pending = None
                continue
            if state.pending is not inside:
                state.pending, state.pending_s, state.pending_wall = inside, t, wall
            if t - state.pending_s >= self._config.min_duration_s:
                found.append(self._change(seen.track_id, state, "moved"))
        for track_id, state, _ in self._tracks.expire(t):
            if state.inside:
                state.pending_wall, state.pending_s = state.last_wall, state.last_s
                state.pending = False
                found.append(self._change(track_id, state, "lost"))
        return found

    def close(self, wall_time: float) -> list[Finding]:
        return []

    def _change(self, track_id: int, state: _Membership, reason: str) -> Finding:
        state.inside = bool(state.pending)
        state.pending = None
        kind = EventKind.ZONE_ENTER if state.inside else EventKind.ZONE_EXIT
        attributes: dict[str, object] = {"reason": reason}
        if state.inside:
            state.entered_s = state.pending_s
        else:
            attributes["duration_s"] = round(state.pending_s - state.entered_s, 3)
        return self._context.event(
            kind,
            state.pending_wall,
            track_ids=(track_id,),
            label=state.label,
            zone=self._config.zone,
            attributes=attributes,
        )


@dataclass(slots=True)
class _Visit:
    since_s: float | None = None
    since_wall: float = 0.0
    last_inside_s: float = 0.0
    last_inside_wall: float = 0.0
    fired: bool = False
    event: Event | None = None  # the dwell event of this visit, until the visit ends

    def end(self) -> EventEnd | None:
        """The end of this visit's dwell event (at the last sighting inside), once."""
        event, self.event = self.event, None
        return None if event is None else EventEnd.of(event, self.last_inside_wall)


class DwellRule:
    """dwell: a track inside a zone for ``min_duration_s``. Fires once per visit; a visit ends
    when the track has been outside (or unseen) for longer than the camera's lost time, and
    the event then ends at the track's last sighting inside."""

    def __init__(self, context: RuleContext, config: DwellConfig) -> None:
        self.rule_id = context.rule_id
        self._context = context
        self._config = config
        self._zone = context.zones[config.zone]
        self._bounds = polygon_bounds(self._zone.polygon)
        self._tracks: TrackTable[_Visit] = TrackTable(context.lost_track_s, _Visit)

    def update(self, observation: Observation) -> list[Finding]:
        t, wall = observation.t_s, observation.wall_time
        # Visits that are over end first: a track back after a long gap is a new visit.
        over = [
            visit  # outside for longer than a gap
            for _, visit in self._tracks.items()
            if t - visit.last_inside_s > self._context.lost_track_s
        ]
        over += [visit for _, visit, _ in self._tracks.expire(t)]
        found: list[Finding] = [end for visit in over if (end := visit.end()) is not None]
        for seen in _labelled(observation, self._config.labels):
            visit = self._tracks.touch(seen.track_id, t, wall)
            if not in_polygon(seen.point, self._zone.polygon, self._bounds):
                continue
            if visit.since_s is None or t - visit.last_inside_s > self._context.lost_track_s:
                visit.since_s, visit.since_wall, visit.fired = t, wall, False
            visit.last_inside_s, visit.last_inside_wall = t, wall
            if not visit.fired and t - visit.since_s >= self._config.min_duration_s:
                visit.fired = True
                visit.event = self._context.event(
                    EventKind.DWELL,
                    visit.since_wall,
                    track_ids=(seen.track_id,),
                    label=seen.label,
                    zone=self._config.zone,
                    attributes={"duration_s": round(t - visit.since_s, 3)},
                )
                found.append(visit.event)
        return found

    def close(self, wall_time: float) -> list[Finding]:
        return [end for _, visit in self._tracks.items() if (end := visit.end()) is not None]


class CrowdingRule:
    """crowding: at least ``min_count`` objects in the zone for ``min_duration_s``. Fires once
    per crowd; a new crowd needs the count below ``min_count`` for ``grace_s`` first, so a
    count flickering around the threshold is one crowd. The event ends at the last frame
    the crowd was seen."""

    def __init__(self, context: RuleContext, config: CrowdingConfig) -> None:
        self.rule_id = context.rule_id
        self._context = context
        self._config = config
        self._zone = None if config.zone is None else context.zones[config.zone]
        self._bounds = None if self._zone is None else polygon_bounds(self._zone.polygon)
        self._since: tuple[float, float] | None = None  # (t_s, wall) the crowd began
        self._below_s: float | None = None
        self._last_wall = 0.0  # the last frame with a crowd
        self._event: Event | None = None  # fired and not yet ended

    def update(self, observation: Observation) -> list[Finding]:
        t = observation.t_s
        count = sum(1 for _ in select(observation, self._config.labels, self._zone, self._bounds))
        if count < self._config.min_count:
            self._below_s = t if self._below_s is None else self._below_s
            if t - self._below_s >= self._config.grace_s:
                self._since = None
                return self._end()
            return []
        self._below_s = None
        self._last_wall = observation.wall_time
        if self._since is None:
            self._since = (t, observation.wall_time)
        if self._event is not None or t - self._since[0] < self._config.min_duration_s:
            return []
        self._event = event = self._context.event(
            EventKind.CROWDING,
            self._since[1],
            label=",".join(self._config.labels) or None,
            zone=self._config.zone,
            attributes={"count": count, "duration_s": round(t - self._since[0], 3)},
        )
        return [event]

    def close(self, wall_time: float) -> list[Finding]:
        return self._end()

    def _end(self) -> list[Finding]:
        event, self._event = self._event, None
        return [] if event is None else [EventEnd.of(event, self._last_wall)]


@dataclass(slots=True)
class _Path:
    start: Point | None = None  # pixel ground point where the current measurement began
    fired: bool = False


class WrongWayRule:
    """wrong_way: a track inside the zone travels against the zone's allowed direction.

    Direction is judged over ``min_travel`` (a fraction of the frame diagonal) of travel, not
    frame to frame, so box jitter of a waiting vehicle reads as no direction at all. Fires
    once per track visit."""

    def __init__(self, context: RuleContext, config: WrongWayConfig) -> None:
        self.rule_id = context.rule_id
        self._context = context
        self._config = config
        self._zone = context.zones[config.zone]
        self._bounds = polygon_bounds(self._zone.polygon)
        allowed = self._zone.direction_deg()
        if allowed is None:
            raise ValueError(f"zone {config.zone!r} has no allowed direction")
        self._allowed_deg = allowed
        self._tracks: TrackTable[_Path] = TrackTable(context.lost_track_s, _Path)

    def update(self, observation: Observation) -> list[Finding]:
        t, wall = observation.t_s, observation.wall_time
        width, height = observation.frame_size
        min_travel = self._config.min_travel * math.hypot(width, height)
        found: list[Finding] = []
        for seen in _labelled(observation, self._config.labels):
            path = self._tracks.touch(seen.track_id, t, wall)
            if not in_polygon(seen.point, self._zone.polygon, self._bounds):
                path.start = None  # left the zone: the next visit is judged afresh
                path.fired = False
                continue
            here = (seen.point[0] * width, seen.point[1] * height)
            if path.start is None:
                path.start = here
                continue
            delta = (here[0] - path.start[0], here[1] - path.start[1])
            if math.hypot(*delta) < min_travel:
                continue
            path.start = here
            heading = heading_deg(delta)
            angle = angle_between_deg(heading, self._allowed_deg)
            if angle > self._config.max_angle_deg and not path.fired:
                path.fired = True
                found.append(self._event(seen, wall, heading, angle))
        self._tracks.expire(t)
        return found

    def close(self, wall_time: float) -> list[Finding]:
        return []

    def _event(self, seen: Seen, wall: float, heading: float, angle: float) -> Finding:
        return self._context.event(
            EventKind.WRONG_WAY,
            wall,
            track_ids=(seen.track_id,),
            label=seen.label,
            zone=self._config.zone,
            attributes={
                "heading_deg": round(heading, 1),
                "allowed_deg": round(self._allowed_deg, 1),
                "angle_deg": round(angle, 1),
            },
        )
