"""Events that last get an end: dwell, crowding, stopped vehicle, camera health.

Each rule is driven through the camera's analyzer on synthetic tracks; the end must name the
event that started, come once, at the last moment the situation held, and ``close`` must end
what is still going on.
"""

from __future__ import annotations

import numpy as np
import pytest

from feedtag.analytics.engine import AnalysisResult
from feedtag.analytics.rules import Observation
from feedtag.core import CameraState, Event, EventEnd
from tests.analytics.synth import CAMERA, T0, Frames, analyzer, line_path, merge, observe, still
from tests.analytics.test_health import HEIGHT, WIDTH, black, frozen, health, live
from tests.analytics.test_lines_vehicles import crossing, stopped
from tests.analytics.test_zones import crowd, crowding, dwell

CLOSE_AT = T0 + 10_000


def drive(config: dict, frames: Frames, close: bool = True) -> tuple[list[Event], list[EventEnd]]:
    camera = analyzer(config)
    results = [camera.update(observe(t, objs)) for t, objs in frames]
    if close:
        results.append(camera.close(CLOSE_AT))
    return collect(results)


def collect(results: list[AnalysisResult]) -> tuple[list[Event], list[EventEnd]]:
    events = [e for r in results for e in r.events]
    ends = [e for r in results for e in r.ends]
    return events, ends


def ends_by_event(events: list[Event], ends: list[EventEnd]) -> dict[str, float]:
    ended = {end.event_id: end.ended_at for end in ends}
    assert len(ended) == len(ends), "an event ended twice"
    assert set(ended) <= {event.event_id for event in events}, "an end of an unknown event"
    return ended


@pytest.mark.parametrize(
    ("name", "config", "frames", "expected_ends"),
    [
        # dwell: the visit ends at the last sighting inside, once outside longer than lost time
        (
            "dwell, then walks out",
            dwell(),
            merge(
                still(1, "person", (0.5, 0.5), 0, 15),
                line_path(1, "person", (0.5, 0.5), (0.1, 0.5), 16, 30, 1),
            ),
            [19.0],  # 0.5 -> 0.1 over 14 s: x = 0.414 at t=19 (inside), 0.386 at t=20
        ),
        (
            "dwell, then lost",
            dwell(),
            merge(still(1, "person", (0.5, 0.5), 0, 15), until=40),
            [15.0],
        ),
        ("dwell still going at close", dwell(), still(1, "person", (0.5, 0.5), 0, 15), [15.0]),
        (
            "two visits, two ends",
            dwell(),
            merge(still(1, "person", (0.5, 0.5), 0, 12), still(1, "person", (0.5, 0.5), 30, 42)),
            [12.0, 42.0],
        ),
        # crowding: ends at the last frame with a crowd, after the grace period
        ("crowd disperses", crowding(), merge(crowd(3, 0, 10), until=30), [10.0]),
        (
            "a dip shorter than grace does not end it",
            crowding(),
            merge(
                crowd(2, 0, 20),
                still(9, "person", (0.5, 0.5), 0, 8),
                still(9, "person", (0.5, 0.5), 9, 20),
                until=40,
            ),
            [20.0],
        ),
        # stopped vehicle: ends at the last frame it stood, when it drives off or is lost
        (
            "stops, then drives off",
            stopped(),
            merge(
                still(1, "car", (0.2, 0.6), 0, 40),
                line_path(1, "car", (0.2, 0.6), (0.8, 0.6), 41, 45, 1),
            ),
            [41.0],  # the drive starts where it stood: moving from t=42
        ),
        (
            "stops, then lost",
            stopped(),
            merge(still(1, "car", (0.5, 0.6), 0, 40), until=60),
            [40.0],
        ),
        ("still stopped at close", stopped(), still(1, "car", (0.5, 0.6), 0, 40), [40.0]),
    ],
)
def test_lasting_events_end(
    name: str, config: dict, frames: Frames, expected_ends: list[float]
) -> None:
    events, ends = drive(config, frames)
    ended = ends_by_event(events, ends)
    assert sorted(ended.values()) == [T0 + t for t in expected_ends], name
    assert len(events) == len(expected_ends), name
    for event in events:
        assert ended[event.event_id] >= event.started_at, name


def test_a_lasting_event_without_an_end_until_it_ends() -> None:
    events, ends = drive(dwell(), still(1, "person", (0.5, 0.5), 0, 15), close=False)
    assert len(events) == 1 and ends == []


@pytest.mark.parametrize(
    ("name", "config", "frames"),
    [
        ("zone enter/exit", {"zones": [{"name": "box", "polygon": [[0.4, 0.4], [0.6, 0.4],
         [0.6, 0.6], [0.4, 0.6]]}], "rules": [{"kind": "zone_enter_exit", "zone": "box"}]},
         line_path(1, "person", (0.1, 0.5), (0.9, 0.5), 0, 20, 1)),
        ("line crossing", crossing(), line_path(1, "person", (0.5, 0.2), (0.5, 0.8), 0, 6, 1)),
    ],
)  # fmt: skip
def test_instant_events_have_no_end(name: str, config: dict, frames: Frames) -> None:
    events, ends = drive(config, frames)
    assert events, name
    assert ends == [], name


def run_health(segments: list[tuple[float, float, object]]) -> tuple[list[Event], list[EventEnd]]:
    camera = analyzer(health())
    results = []
    for t0, t1, images in segments:
        for step in np.arange(t0, t1, 1.0):
            t = float(step)
            if images is None:  # down: status ticks only, every 5 s
                if t % 5 == 0:
                    results.append(
                        camera.update(Observation.status(CAMERA, T0 + t, CameraState.OFFLINE))
                    )
                continue
            obs = observe(t, image=images(t), state=CameraState.ONLINE, frame_size=(WIDTH, HEIGHT))  # type: ignore[operator]
            results.append(camera.update(obs))
    results.append(camera.close(CLOSE_AT))
    return collect(results)


@pytest.mark.parametrize(
    ("name", "segments", "kind", "ended_at"),
    [
        ("frozen, then live again", [(0, 10, live), (10, 50, frozen), (50, 60, live)],
         "camera_frozen", 50.0),
        ("covered, then uncovered", [(0, 10, live), (10, 50, black), (50, 60, live)],
         "camera_covered", 50.0),
        ("offline, then back", [(0, 10, live), (10, 100, None), (100, 110, live)],
         "camera_offline", 100.0),
        ("offline at close", [(0, 10, live), (10, 100, None)], "camera_offline", CLOSE_AT - T0),
    ],
)  # fmt: skip
def test_health_events_end_when_the_condition_clears(
    name: str, segments: list, kind: str, ended_at: float
) -> None:
    events, ends = run_health(segments)
    assert [e.kind.value for e in events] == [kind], name
    assert ends_by_event(events, ends) == {events[0].event_id: T0 + ended_at}, name


def test_camera_moved_is_a_one_off() -> None:
    from tests.analytics.test_health import turned

    events, ends = run_health([(0, 10, live), (10, 60, turned)])
    assert [e.kind.value for e in events] == ["camera_moved"]
    assert ends == []
