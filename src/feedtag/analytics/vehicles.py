"""Vehicle rules: stopped vehicle on a roadway, and collision candidates."""

from __future__ import annotations

import math
from dataclasses import dataclass

from feedtag.analytics.geometry import box_iou, point_in_polygon, polygon_bounds
from feedtag.analytics.rules import Finding, Observation, RuleContext, Seen, TrackTable, select
from feedtag.config.analytics import CollisionCandidateRule as CollisionConfig
from feedtag.config.analytics import StoppedVehicleRule as StoppedVehicleConfig
from feedtag.core import Event, EventEnd, EventKind


@dataclass(slots=True)
class Stillness:
    """Where a track came to rest and since when.

    Movement is measured against the box diagonal, not pixels: a far vehicle is small and its
    box jitters by few pixels, a near one by many. The anchor only moves when the track has
    moved more than ``max_movement`` diagonals from it, so slow creep is still movement.

    >>> s = Stillness()
    >>> s.observe((0, 0), 10.0, 0.0, 1e9, 0.3); s.observe((1, 0), 10.0, 5.0, 1e9 + 5, 0.3)
    >>> s.still_for(5.0)
    5.0
    """

    anchor: tuple[float, float] | None = None
    since_s: float = 0.0
    since_wall: float = 0.0
    fired: bool = False
    moved: bool = False  # seen moving at least once, not only standing since first seen

    def observe(
        self, point: tuple[float, float], diagonal: float, t: float, wall: float, limit: float
    ) -> None:
        """Note the track at ``point`` (pixels) now; restart the stillness if it moved."""
        if self.anchor is None or math.dist(point, self.anchor) > limit * max(diagonal, 1.0):
            self.moved = self.anchor is not None
            self.anchor, self.since_s, self.since_wall, self.fired = point, t, wall, False

    def still_for(self, t: float) -> float:
        return t - self.since_s


def _pixel_point(seen: Seen, observation: Observation) -> tuple[float, float]:
    width, height = observation.frame_size
    return seen.point[0] * width, seen.point[1] * height


class StoppedVehicleRule:
    """stopped_vehicle: a vehicle inside a roadway zone, stationary for ``min_duration_s``.
    Fires once per stop; moving off and stopping again is a new stop. The event ends at the
    last frame the vehicle stood there: when it moves off, leaves the zone or is lost."""

    def __init__(self, context: RuleContext, config: StoppedVehicleConfig) -> None:
        self.rule_id = context.rule_id
        self._context = context
        self._config = config
        self._zone = context.zones[config.zone]
        self._bounds = polygon_bounds(self._zone.polygon)
        self._tracks: TrackTable[Stillness] = TrackTable(context.lost_track_s, Stillness)
        self._stopped: dict[int, tuple[Event, float]] = {}  # track -> (event, last still wall)

    def update(self, observation: Observation) -> list[Finding]:
        t, wall = observation.t_s, observation.wall_time
        # Lost first (vehicles that left the zone are no longer touched, so they are lost
        # too): a track back after a long gap is a new stop.
        expired = self._tracks.expire(t)
        found: list[Finding] = [self._end(i) for i, _, _ in expired if i in self._stopped]
        for seen in select(observation, self._config.labels, self._zone, self._bounds):
            if not seen.confirmed:
                continue
            track_id = seen.track_id
            still = self._tracks.touch(track_id, t, wall)
            point = _pixel_point(seen, observation)
            still.observe(point, seen.box_diagonal, t, wall, self._config.max_movement)
            if track_id in self._stopped:
                if still.fired:
                    self._stopped[track_id] = (self._stopped[track_id][0], wall)
                else:  # moved off: the stop ended at the last frame it stood
                    found.append(self._end(track_id))
            if still.fired or still.still_for(t) < self._config.min_duration_s:
                continue
            still.fired = True
            event = self._context.event(
                EventKind.STOPPED_VEHICLE,
                still.since_wall,
                track_ids=(track_id,),
                label=seen.label,
                zone=self._config.zone,
                attributes={"duration_s": round(still.still_for(t), 3)},
            )
            self._stopped[track_id] = (event, wall)
            found.append(event)
        return found

    def close(self, wall_time: float) -> list[Finding]:
        return [self._end(track_id) for track_id in list(self._stopped)]

    def _end(self, track_id: int) -> EventEnd:
        event, last_wall = self._stopped.pop(track_id)
        return EventEnd.of(event, last_wall)


@dataclass(slots=True)
class _Contact:
    overlap_s: float
    overlap_wall: float
    fired: bool = False


class CollisionCandidateRule:
    """collision_candidate: two vehicle tracks whose boxes overlap (IoU ≥ ``min_iou``), and
    then both stand still for ``min_duration_s``, having stopped no later than ``within_s``
    after the overlap, one of them no earlier than ``within_s`` before it, and at least one
    having been seen moving.

    The last two conditions are why a queue of cars parked bumper to bumper, overlapping in
    perspective long after they stopped, is not a collision. It stays a *candidate*: a car
    stopping behind a parked one looks the same to boxes, and a person has to look.
    """

    def __init__(self, context: RuleContext, config: CollisionConfig) -> None:
        self.rule_id = context.rule_id
        self._context = context
        self._config = config
        self._zone = None if config.zone is None else context.zones[config.zone]
        self._tracks: TrackTable[Stillness] = TrackTable(context.lost_track_s, Stillness)
        self._contacts: dict[tuple[int, int], _Contact] = {}

    def update(self, observation: Observation) -> list[Finding]:
        t, wall = observation.t_s, observation.wall_time
        vehicles = [s for s in select(observation, self._config.labels, None) if s.confirmed]
        for seen in vehicles:
            still = self._tracks.touch(seen.track_id, t, wall)
            point = _pixel_point(seen, observation)
            still.observe(point, seen.box_diagonal, t, wall, self._config.max_movement)
        self._note_contacts(vehicles, t, wall)
        found = [self._event(pair, contact) for pair, contact in self._ready(t)]
        self._forget(t)
        return found

    def close(self, wall_time: float) -> list[Finding]:
        return []

    def _note_contacts(self, vehicles: list[Seen], t: float, wall: float) -> None:
        for i, a in enumerate(vehicles):
            for b in vehicles[i + 1 :]:
                pair = (min(a.track_id, b.track_id), max(a.track_id, b.track_id))
                if pair in self._contacts or not self._in_zone(a, b):
                    continue
                if box_iou(a.box, b.box) >= self._config.min_iou:
                    self._contacts[pair] = _Contact(t, wall)

    def _in_zone(self, a: Seen, b: Seen) -> bool:
        zone = self._zone
        return zone is None or (
            point_in_polygon(a.point, zone.polygon) or point_in_polygon(b.point, zone.polygon)
        )

    def _ready(self, t: float) -> list[tuple[tuple[int, int], _Contact]]:
        ready = []
        config = self._config
        for pair, contact in self._contacts.items():
            first, second = (self._tracks.get(track_id) for track_id in pair)
            if contact.fired or first is None or second is None:
                continue
            if min(first.still_for(t), second.still_for(t)) < config.min_duration_s:
                continue
            if not (first.moved or second.moved):
                continue  # parked side by side since they were first seen
            last_stop_s = max(first.since_s, second.since_s)
            if last_stop_s > contact.overlap_s + config.within_s:
                continue  # stopped too long after touching: unrelated stops
            if last_stop_s < contact.overlap_s - config.within_s:
                continue  # both had long stood still when their boxes met
            contact.fired = True
            ready.append((pair, contact))
        return ready

    def _forget(self, t: float) -> None:
        self._tracks.expire(t)
        horizon = self._config.within_s + self._config.min_duration_s + self._context.lost_track_s
        for pair in list(self._contacts):
            contact = self._contacts[pair]
            gone = any(self._tracks.get(track_id) is None for track_id in pair)
            if gone or (not contact.fired and t - contact.overlap_s > horizon):
                del self._contacts[pair]

    def _event(self, pair: tuple[int, int], contact: _Contact) -> Finding:
        return self._context.event(
            EventKind.COLLISION_CANDIDATE,
            contact.overlap_wall,
            track_ids=pair,
            zone=self._config.zone,
            attributes={"min_duration_s": self._config.min_duration_s},
        )
