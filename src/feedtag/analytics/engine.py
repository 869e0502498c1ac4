"""One camera's rules, built from its config and fed every observation.

>>> import numpy as np
>>> from feedtag.config.analytics import CameraAnalytics
>>> from feedtag.core import Detections
>>> analyzer = CameraAnalyzer("door", CameraAnalytics.model_validate(
...     {"rules": [{"kind": "presence", "labels": ["person"], "grace_s": 1}]}))
>>> one = Detections(np.array([[0, 0, 5, 9]], np.float32), np.ones(1, np.float32),
...                  np.zeros(1, np.int32), np.array([4]))
>>> for t, detections in enumerate([one, one, Detections.empty(), Detections.empty()]):
...     result = analyzer.update(Observation("door", t, 1e9 + t, detections, ("person",), (10, 10)))
>>> [(s.label, s.ended_at - s.started_at, s.max_count) for s in result.segments]
[('person', 1.0, 1)]
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from feedtag.analytics.health import CameraHealthRule
from feedtag.analytics.lines import LineCrossRule
from feedtag.analytics.presence import PresenceRule
from feedtag.analytics.rules import Finding, Observation, Rule, RuleContext
from feedtag.analytics.vehicles import CollisionCandidateRule, StoppedVehicleRule
from feedtag.analytics.zones import CrowdingRule, DwellRule, WrongWayRule, ZoneEnterExitRule
from feedtag.config.analytics import CameraAnalytics, rule_id_of
from feedtag.core import Event, EventEnd, TagSegment

log = logging.getLogger(__name__)

# The plug-in table: a rule kind's name in the config -> how to build it. A new kind adds a
# config model to feedtag.config.analytics and a line here.
RULE_KINDS: dict[str, Callable[[RuleContext, Any], Rule]] = {
    "presence": PresenceRule,
    "zone_enter_exit": ZoneEnterExitRule,
    "line_cross": LineCrossRule,
    "dwell": DwellRule,
    "stopped_vehicle": StoppedVehicleRule,
    "wrong_way": WrongWayRule,
    "crowding": CrowdingRule,
    "collision_candidate": CollisionCandidateRule,
    "camera_health": CameraHealthRule,
}


@dataclass(frozen=True, slots=True)
class AnalysisResult:
    """What one observation produced: events, ends of events that lasted, and presence
    segments that closed."""

    events: list[Event] = field(default_factory=list)
    segments: list[TagSegment] = field(default_factory=list)
    ends: list[EventEnd] = field(default_factory=list)

    @classmethod
    def of(cls, findings: list[Finding]) -> AnalysisResult:
        events = [f for f in findings if isinstance(f, Event)]
        segments = [f for f in findings if isinstance(f, TagSegment)]
        ends = [f for f in findings if isinstance(f, EventEnd)]
        return cls(events, segments, ends)


class CameraAnalyzer:
    """The rules of one camera. Not thread-safe: one camera's observations arrive in order
    from one thread.

    Stream time that goes backwards (a reconnect, a file looping without continuing its
    clock) restarts every rule: what was open is closed and returned, and durations start
    again, instead of a dwell of minus ten minutes. Status ticks
    (:meth:`Observation.status`) are placed at the last frame's stream time.
    """

    def __init__(self, camera_id: str, config: CameraAnalytics) -> None:
        self.camera_id = camera_id
        self._config = config
        self._rules = self._build()
        self._last_t_s: float | None = None

    def _build(self) -> list[Rule]:
        zones = {zone.name: zone for zone in self._config.zones}
        lines = {line.name: line for line in self._config.lines}
        rules = []
        for index, rule_config in enumerate(self._config.rules):
            rule_id = rule_id_of(index, rule_config)
            context = RuleContext(self.camera_id, rule_id, zones, lines, self._config.lost_track_s)
            rules.append(RULE_KINDS[rule_config.kind](context, rule_config))
        return rules

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(self._rules)

    def update(self, observation: Observation) -> AnalysisResult:
        """Feed one observation to every rule."""
        if observation.camera_id != self.camera_id:
            raise ValueError(f"expected camera {self.camera_id!r}, got {observation.camera_id!r}")
        findings: list[Finding] = []
        if not observation.is_frame:
            # No frame, so no stream time of its own: it happens at the last frame's time.
            observation = replace(observation, t_s=self._last_t_s or 0.0)
        if self._last_t_s is not None and observation.t_s < self._last_t_s:
            log.info("camera %s: stream time went back, restarting rules", self.camera_id)
            findings.extend(self._close_all(observation.wall_time))
            self._rules = self._build()
        self._last_t_s = observation.t_s
        for rule in self._rules:
            findings.extend(rule.update(observation))
        return AnalysisResult.of(findings)

    def close(self, wall_time: float) -> AnalysisResult:
        """End every rule (camera stopped or removed); returns what was still open."""
        return AnalysisResult.of(self._close_all(wall_time))

    def _close_all(self, wall_time: float) -> list[Finding]:
        findings: list[Finding] = []
        for rule in self._rules:
            findings.extend(rule.close(wall_time))
        return findings

    def open_segments(self) -> list[TagSegment]:
        """Presence segments still open: what is visible now."""
        return [
            s
            for rule in self._rules
            if isinstance(rule, PresenceRule)
            for s in rule.open_segments()
        ]

    def line_counts(self) -> dict[str, dict[str, int]]:
        """Crossings per direction of every line-cross rule, by rule id."""
        return {
            rule.rule_id: dict(rule.counts)
            for rule in self._rules
            if isinstance(rule, LineCrossRule)
        }
