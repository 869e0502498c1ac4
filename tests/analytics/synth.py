"""Synthetic tracks for rule tests: objects placed by their ground point, in normalized
coordinates, on a 100x100 frame, observed at chosen stream times."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from feedtag.analytics.engine import AnalysisResult, CameraAnalyzer
from feedtag.analytics.rules import Observation
from feedtag.config.analytics import CameraAnalytics
from feedtag.core import CameraState, Detections, Event

CAMERA = "cam-1"
NAMES = ("person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck")
SIZE = (100, 100)
T0 = 1_700_000_000.0  # wall time of stream time 0


@dataclass(frozen=True)
class Obj:
    """One detection: track id (-1 unconfirmed), label, ground point, box size (normalized)."""

    track: int
    label: str
    x: float
    y: float
    w: float = 0.1
    h: float = 0.2

    def box(self) -> list[float]:
        width, height = SIZE
        cx, bottom = self.x * width, self.y * height
        return [cx - self.w * width / 2, bottom - self.h * height, cx + self.w * width / 2, bottom]


def detections(objs: Sequence[Obj]) -> Detections:
    if not objs:
        return Detections(
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int32),
            np.zeros(0, np.int64),
        )
    return Detections(
        np.array([o.box() for o in objs], np.float32),
        np.full(len(objs), 0.9, np.float32),
        np.array([NAMES.index(o.label) for o in objs], np.int32),
        np.array([o.track for o in objs], np.int64),
    )


def observe(
    t: float,
    objs: Sequence[Obj] = (),
    *,
    image: np.ndarray | None = None,
    state: CameraState | None = None,
    frame_size: tuple[int, int] = SIZE,
) -> Observation:
    return Observation(CAMERA, t, T0 + t, detections(objs), NAMES, frame_size, image, state)


Frames = list[tuple[float, list[Obj]]]


def path(
    track: int, label: str, points: Sequence[tuple[float, float]], times: Sequence[float], **kw: Any
) -> Frames:
    """One object at ``points[i]`` at ``times[i]``."""
    return [(t, [Obj(track, label, x, y, **kw)]) for t, (x, y) in zip(times, points, strict=True)]


def line_path(  # noqa: PLR0917 - table rows read best positionally
    track: int,
    label: str,
    start: tuple[float, float],
    end: tuple[float, float],
    t0: float,
    t1: float,
    fps: float,
    **kw: Any,
) -> Frames:
    """An object moving at constant speed from ``start`` (at t0) to ``end`` (at t1)."""
    steps = max(1, round((t1 - t0) * fps))
    times = [t0 + (t1 - t0) * i / steps for i in range(steps + 1)]
    points = [
        (start[0] + (end[0] - start[0]) * i / steps, start[1] + (end[1] - start[1]) * i / steps)
        for i in range(steps + 1)
    ]
    return path(track, label, points, times, **kw)


def still(  # noqa: PLR0917 - table rows read best positionally
    track: int,
    label: str,
    point: tuple[float, float],
    t0: float,
    t1: float,
    fps: float = 1.0,
    **kw: Any,
) -> Frames:
    return line_path(track, label, point, point, t0, t1, fps, **kw)


def merge(*timelines: Frames, until: float | None = None, fps: float = 1.0) -> Frames:
    """One timeline from several; with ``until``, empty frames fill the gaps at ``fps`` so
    that time passes while nothing is seen."""
    by_time: dict[float, list[Obj]] = {}
    for timeline in timelines:
        for t, objs in timeline:
            by_time.setdefault(round(t, 6), []).extend(objs)
    if until is not None:
        step = 1.0 / fps
        t = 0.0
        while t <= until + 1e-9:
            by_time.setdefault(round(t, 6), [])
            t += step
    return sorted(by_time.items())


def analyzer(config: dict[str, Any]) -> CameraAnalyzer:
    return CameraAnalyzer(CAMERA, CameraAnalytics.model_validate(config))


def run(config: dict[str, Any], frames: Iterable[tuple[float, list[Obj]]]) -> list[Event]:
    """Every event the config's rules produce on ``frames``, in order."""
    results = run_results(config, frames)
    return [event for result in results for event in result.events]


def run_results(
    config: dict[str, Any], frames: Iterable[tuple[float, list[Obj]]]
) -> list[AnalysisResult]:
    camera = analyzer(config)
    results = [camera.update(observe(t, objs)) for t, objs in frames]
    results.append(camera.close(T0 + 10_000))
    return results


def kinds(events: Iterable[Event]) -> list[str]:
    return [event.kind.value for event in events]
