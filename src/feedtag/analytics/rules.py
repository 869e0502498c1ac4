"""The seam every rule kind plugs into, and what rules share.

A rule sees one :class:`Observation` per analysed frame of its camera and answers with
findings: :class:`~feedtag.core.Event` values when something happens, an
:class:`~feedtag.core.EventEnd` when an event that lasts is over, and for presence rules
:class:`~feedtag.core.TagSegment` values. ``close`` ends the rule (camera removed, stream
restarted) and returns what was still open, events that last included.

Durations are measured on stream time ``t_s`` (a file analysed faster than real time still
dwells for its own seconds); reported times are ``wall_time`` (Unix seconds). Event ids are
:func:`~feedtag.core.stable_id` of camera, rule, kind, tracks and start time, so the same input
twice gives the same ids and writing an event twice stores it once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from feedtag.analytics.geometry import (
    Bounds,
    Point,
    ground_points,
    point_in_polygon,
    within_bounds,
)
from feedtag.config.analytics import LineConfig, ZoneConfig
from feedtag.core import CameraState, Detections, Event, EventEnd, EventKind, TagSegment, stable_id

Finding = Event | EventEnd | TagSegment
UNCONFIRMED = -1  # tracker id of a detection that is not (yet) a confirmed track


@dataclass(frozen=True, slots=True)
class Seen:
    """One detection as rules see it: anonymous track id (-1 unconfirmed), class name, ground
    point (normalized), box in pixels."""

    track_id: int
    label: str
    point: Point
    box: npt.NDArray[np.float32]

    @property
    def confirmed(self) -> bool:
        return self.track_id != UNCONFIRMED

    @property
    def box_diagonal(self) -> float:
        return float(np.hypot(self.box[2] - self.box[0], self.box[3] - self.box[1]))


@dataclass(frozen=True, slots=True)
class Observation:
    """What one camera's rules see of one analysed frame.

    ``image`` (RGB uint8, the analysed frame) and ``camera_state`` (ingest state) are for the
    camera-health rule. :meth:`status` makes a status tick (``is_frame`` False), sent while
    no frames arrive so that the health rule still sees the camera's state.

    >>> import numpy as np
    >>> d = Detections(np.array([[40, 10, 60, 50]], np.float32), np.array([0.9], np.float32),
    ...                np.array([2], np.int32), np.array([7], np.int64))
    >>> seen = Observation("door", 1.0, 1.7e9, d, ("person", "bicycle", "car"), (100, 50)).seen
    >>> seen[0].track_id, seen[0].label, seen[0].point
    (7, 'car', (0.5, 1.0))
    """

    camera_id: str
    t_s: float
    wall_time: float
    detections: Detections
    class_names: Sequence[str]
    frame_size: tuple[int, int]
    image: npt.NDArray[np.uint8] | None = None
    camera_state: CameraState | None = None
    is_frame: bool = True
    seen: tuple[Seen, ...] = field(init=False, repr=False)

    @classmethod
    def status(cls, camera_id: str, wall_time: float, state: CameraState) -> Observation:
        """A status tick: no frame, only the camera's ingest state.

        >>> Observation.status("door", 1.7e9, CameraState.OFFLINE).is_frame
        False
        """
        empty = Detections.empty()
        return cls(camera_id, 0.0, wall_time, empty, (), (1, 1), None, state, is_frame=False)

    def __post_init__(self) -> None:
        if self.frame_size[0] <= 0 or self.frame_size[1] <= 0:
            raise ValueError(f"expected a positive frame_size, got {self.frame_size!r}")
        if self.wall_time <= 0:
            raise ValueError(f"expected wall_time as Unix seconds > 0, got {self.wall_time!r}")
        object.__setattr__(
            self, "seen", _seen_of(self.detections, self.class_names, self.frame_size)
        )


def _seen_of(
    detections: Detections, class_names: Sequence[str], frame_size: tuple[int, int]
) -> tuple[Seen, ...]:
    points = ground_points(detections.xyxy, frame_size)
    ids = detections.tracker_id
    out = []
    for index in range(len(detections)):
        class_id = int(detections.class_id[index])
        label = class_names[class_id] if 0 <= class_id < len(class_names) else f"class_{class_id}"
        track_id = UNCONFIRMED if ids is None else int(ids[index])
        point = (float(points[index, 0]), float(points[index, 1]))
        out.append(Seen(track_id, label, point, detections.xyxy[index]))
    return tuple(out)


class Rule(Protocol):
    """A rule kind: fed every observation of its camera, answers with findings."""

    rule_id: str

    def update(self, observation: Observation) -> list[Finding]: ...

    def close(self, wall_time: float) -> list[Finding]: ...


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What every rule of one camera knows besides its own parameters."""

    camera_id: str
    rule_id: str
    zones: dict[str, ZoneConfig]
    lines: dict[str, LineConfig]
    lost_track_s: float

    def event(
        self,
        kind: EventKind,
        started_at: float,
        *,
        track_ids: tuple[int, ...] = (),
        label: str | None = None,
        zone: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> Event:
        """An event with its deterministic id (camera, rule, kind, tracks, start in ms)."""
        event_id = stable_id(
            self.camera_id, self.rule_id, kind.value, track_ids, round(started_at, 3)
        )
        return Event(
            event_id=event_id,
            camera_id=self.camera_id,
            kind=kind,
            rule_id=self.rule_id,
            started_at=started_at,
            label=label,
            zone=zone,
            track_ids=track_ids,
            attributes=attributes or {},
        )


def select(
    observation: Observation,
    labels: Sequence[str],
    zone: ZoneConfig | None,
    bounds: Bounds | None = None,
) -> Iterator[Seen]:
    """The detections with one of ``labels`` (all when empty) whose ground point is in
    ``zone`` (anywhere when None); ``bounds``, the zone's :func:`polygon_bounds` when the
    caller keeps them, rule out points far from it without the polygon test."""
    for seen in observation.seen:
        if labels and seen.label not in labels:
            continue
        if zone is not None and not (
            (bounds is None or within_bounds(seen.point, bounds))
            and point_in_polygon(seen.point, zone.polygon)
        ):
            continue
        yield seen


S = TypeVar("S")


@dataclass(slots=True)
class _Entry(Generic[S]):
    state: S
    last_seen_s: float
    last_seen_wall: float


class TrackTable(Generic[S]):
    """Per-track state that outlives short gaps: a track unseen for less than ``lost_after_s``
    keeps its state when it comes back; after that, :meth:`expire` hands it back once.

    >>> table = TrackTable(5.0, list)
    >>> table.touch(7, 0.0, 1e9).append("x")
    >>> table.touch(7, 4.0, 1e9)  # back within 5 s: the same track
    ['x']
    >>> [track for track, _, _ in table.expire(10.0)]
    [7]
    """

    def __init__(self, lost_after_s: float, factory: Callable[[], S]) -> None:
        self._lost_after_s = lost_after_s
        self._factory = factory
        self._entries: dict[int, _Entry[S]] = {}

    def touch(self, track_id: int, t_s: float, wall_time: float) -> S:
        """The state of ``track_id``, created if new or lost; marks it seen now."""
        entry = self._entries.get(track_id)
        if entry is None or t_s - entry.last_seen_s > self._lost_after_s:
            entry = _Entry(self._factory(), t_s, wall_time)
            self._entries[track_id] = entry
        entry.last_seen_s, entry.last_seen_wall = t_s, wall_time
        return entry.state

    def items(self) -> list[tuple[int, S]]:
        """Every ``(track_id, state)`` held now."""
        return [(track_id, entry.state) for track_id, entry in self._entries.items()]

    def get(self, track_id: int) -> S | None:
        entry = self._entries.get(track_id)
        return None if entry is None else entry.state

    def expire(self, t_s: float) -> list[tuple[int, S, float]]:
        """Remove and return ``(track_id, state, last_seen_wall)`` of tracks lost at ``t_s``."""
        lost = [
            (track_id, entry.state, entry.last_seen_wall)
            for track_id, entry in self._entries.items()
            if t_s - entry.last_seen_s > self._lost_after_s
        ]
        for track_id, _, _ in lost:
            del self._entries[track_id]
        return lost

    def __len__(self) -> int:
        return len(self._entries)
