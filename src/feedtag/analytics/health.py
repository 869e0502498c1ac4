"""Camera health: offline, frozen image, covered or dark, view moved.

Each check is a condition that must hold for its own duration before it fires, fires once,
and re-arms when the condition clears. Image checks work on a 64x36 grey thumbnail sampled
from the analysed frame: enough to see a lens cap or a turned camera, and cheap at 100,000
feeds. Offline is timed on wall time (no frames, so no stream time while a camera is down);
the image checks on stream time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from feedtag.analytics.rules import Finding, Observation, RuleContext
from feedtag.config.analytics import CameraHealthRule as HealthConfig
from feedtag.core import CameraState, Event, EventEnd, EventKind

THUMBNAIL_SIZE = (64, 36)  # (width, height)
# The background follows slow changes (daylight, shadows) with this time constant; a turned
# camera changes it at once, far faster than this.
BACKGROUND_TIME_CONSTANT_S = 120.0
EDGE_QUANTILE = 0.9  # the strongest 10 % of gradients are the background's edges
MIN_EDGE_STRENGTH = 8.0  # grey levels per pixel; below it a scene has no edges to compare
DOWN_STATES = (CameraState.OFFLINE, CameraState.STALLED)


def thumbnail(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """A grey ``36x64`` thumbnail sampled (not averaged) from an RGB image: sampling keeps the
    sensor noise that tells a live static scene from a frozen one.

    >>> import numpy as np
    >>> thumbnail(np.full((360, 640, 3), 100, np.uint8)).shape
    (36, 64)
    """
    height, width = image.shape[:2]
    rows = np.linspace(0, height - 1, THUMBNAIL_SIZE[1]).astype(np.intp)
    cols = np.linspace(0, width - 1, THUMBNAIL_SIZE[0]).astype(np.intp)
    sample = image[rows][:, cols].astype(np.float32)
    grey: npt.NDArray[np.float32] = sample @ np.array([0.299, 0.587, 0.114], np.float32)
    return grey


def edge_map(grey: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_] | None:
    """The strongest gradients of a thumbnail, or None when it has no real edges."""
    gy, gx = np.gradient(grey)
    magnitude = np.hypot(gx, gy)
    threshold = max(float(np.quantile(magnitude, EDGE_QUANTILE)), MIN_EDGE_STRENGTH)
    edges: npt.NDArray[np.bool_] = magnitude > threshold
    return edges if int(edges.sum()) >= 20 else None


def edge_change(reference: npt.NDArray[np.bool_], grey: npt.NDArray[np.float32]) -> float:
    """Fraction of ``reference`` edges with no edge within one pixel in ``grey``.

    >>> import numpy as np
    >>> grey = np.zeros((36, 64), np.float32); grey[:, 32:] = 200
    >>> ref = edge_map(grey)
    >>> edge_change(ref, grey), edge_change(ref, np.roll(grey, 10, axis=1))
    (0.0, 1.0)
    """
    current = edge_map(grey)
    if current is None:
        return 1.0
    near = current.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near |= np.roll(np.roll(current, dy, axis=0), dx, axis=1)
    missing = reference & ~near
    return float(missing.sum() / reference.sum())


@dataclass(slots=True)
class Condition:
    """A condition that must hold for ``after_s`` before it fires, once per episode.

    >>> c = Condition(10.0)
    >>> c.step(True, 0.0, 1e9), c.step(True, 10.0, 1e9 + 10), c.step(True, 20.0, 1e9 + 20)
    (None, 1000000000.0, None)
    """

    after_s: float
    since_s: float | None = None
    since_wall: float = 0.0
    fired: bool = False

    def step(self, holds: bool, t: float, wall: float) -> float | None:
        """Feed the condition's value now; returns the episode's start wall time on firing."""
        if not holds:
            self.since_s, self.fired = None, False
            return None
        if self.since_s is None:
            self.since_s, self.since_wall = t, wall
        if self.fired or t - self.since_s < self.after_s:
            return None
        self.fired = True
        return self.since_wall


class CameraHealthRule:
    """camera_offline, camera_frozen, camera_covered and camera_moved for one camera.

    Offline, frozen and covered last: their events end when the condition clears (the
    camera is back, the image moves, the lens is uncovered). A moved view is a one-off
    change: the new view becomes the reference at once, so it has no end."""

    def __init__(self, context: RuleContext, config: HealthConfig) -> None:
        self.rule_id = context.rule_id
        self._context = context
        self._config = config
        self._offline = Condition(config.offline_after_s)
        self._frozen = Condition(config.frozen_after_s)
        self._covered = Condition(config.covered_after_s)
        self._moved = Condition(config.moved_after_s)
        self._previous: npt.NDArray[np.float32] | None = None
        self._background: npt.NDArray[np.float32] | None = None
        self._last_s: float | None = None
        self._open: dict[EventKind, Event] = {}  # lasting events not yet ended

    def update(self, observation: Observation) -> list[Finding]:
        found: list[Finding] = []
        wall = observation.wall_time
        state = observation.camera_state
        if state is not None or observation.image is not None:
            down = state in DOWN_STATES and observation.image is None
            details = {"state": state}
            found += self._step(EventKind.CAMERA_OFFLINE, self._offline, down, wall, wall, details)
        if observation.image is not None:
            found.extend(self._check_image(thumbnail(observation.image), observation))
        return found

    def close(self, wall_time: float) -> list[Finding]:
        ends: list[Finding] = [EventEnd.of(event, wall_time) for event in self._open.values()]
        self._open.clear()
        return ends

    def _step(  # noqa: PLR0917 - one call shape for every lasting condition
        self,
        kind: EventKind,
        condition: Condition,
        holds: bool,
        t: float,
        wall: float,
        details: dict[str, Any],
    ) -> list[Finding]:
        """Step a lasting condition: its event when it fires, its end when it clears."""
        was_firing = condition.fired
        started = condition.step(holds, t, wall)
        if started is not None:
            self._open[kind] = event = self._context.event(kind, started, attributes=details)
            return [event]
        if was_firing and not condition.fired and kind in self._open:
            return [EventEnd.of(self._open.pop(kind), wall)]
        return []

    def _check_image(self, grey: npt.NDArray[np.float32], obs: Observation) -> list[Finding]:
        config, t, wall = self._config, obs.t_s, obs.wall_time
        found: list[Finding] = []
        mean, std = float(grey.mean()), float(grey.std())
        covered = mean <= config.dark_luma or std <= config.uniform_std
        reason = "dark" if mean <= config.dark_luma else "uniform"
        details = {"reason": reason, "mean": round(mean, 1), "std": round(std, 1)}
        found += self._step(EventKind.CAMERA_COVERED, self._covered, covered, t, wall, details)
        if self._previous is not None:
            # A black lens cap gives identical frames too; covered is the better answer.
            difference = float(np.abs(grey - self._previous).mean())
            still = difference <= config.frozen_diff and not covered
            found += self._step(EventKind.CAMERA_FROZEN, self._frozen, still, t, wall, {})
        self._previous = grey
        if not covered:  # a covered lens hides the view; it has not moved
            found.extend(self._check_moved(grey, t, wall))
        return found

    def _check_moved(self, grey: npt.NDArray[np.float32], t: float, wall: float) -> list[Finding]:
        if self._background is None or self._last_s is None:
            self._background, self._last_s = grey, t
            return []
        reference = edge_map(self._background)
        change = 0.0 if reference is None else edge_change(reference, grey)
        changed = change >= self._config.moved_edge_change
        started = self._moved.step(changed, t, wall)
        weight = min(1.0, max(0.0, t - self._last_s) / BACKGROUND_TIME_CONSTANT_S)
        self._last_s = t
        if started is not None:
            self._background = grey  # the new view is the reference from now on
            return [self._event(EventKind.CAMERA_MOVED, started, {"edge_change": round(change, 3)})]
        if not changed:  # a changed view must not leak into the reference it is judged by
            self._background = (1 - weight) * self._background + weight * grey
        return []

    def _event(self, kind: EventKind, started: float, details: dict[str, Any]) -> Finding:
        return self._context.event(kind, started, attributes=details)
