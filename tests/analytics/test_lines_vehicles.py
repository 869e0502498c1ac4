"""Line crossing, stopped vehicle and collision candidate on synthetic tracks."""

from __future__ import annotations

import pytest

from tests.analytics.synth import (
    T0,
    Frames,
    analyzer,
    kinds,
    line_path,
    merge,
    observe,
    path,
    run,
    still,
)

DOOR = {"name": "door", "start": [0, 0.5], "end": [1, 0.5]}  # forward ("in") = moving down
SHORT = {"name": "door", "start": [0, 0.5], "end": [0.3, 0.5]}


def crossing(line: dict = DOOR, **rule: object) -> dict:
    return {
        "lines": [line],
        "rules": [{"kind": "line_cross", "line": "door", **rule}],
        "lost_track_s": 5,
    }


def directions(config: dict, frames: Frames) -> list[str]:
    return [event.attributes["direction"] for event in run(config, frames)]


@pytest.mark.parametrize(
    ("name", "config", "frames", "expected"),
    [
        ("walks down", crossing(), line_path(1, "person", (0.5, 0.2), (0.5, 0.8), 0, 6, 1), ["in"]),
        ("walks up", crossing(), line_path(1, "person", (0.5, 0.8), (0.5, 0.2), 0, 6, 1), ["out"]),
        (
            "walks down at 0.5 fps",
            crossing(),
            line_path(1, "person", (0.5, 0.2), (0.5, 0.8), 0, 6, 0.5),
            ["in"],
        ),
        (
            "walks down at 10 fps",
            crossing(),
            line_path(1, "person", (0.5, 0.2), (0.5, 0.8), 0, 6, 10),
            ["in"],
        ),
        ("walks along", crossing(), line_path(1, "person", (0.1, 0.3), (0.9, 0.3), 0, 6, 1), []),
        (
            "stands on the line",
            crossing(),
            path(1, "person", [(0.5, 0.495), (0.5, 0.505), (0.5, 0.5)] * 4, list(range(12))),
            [],
        ),
        (
            "there and back",
            crossing(),
            path(1, "person", [(0.5, 0.4), (0.5, 0.6), (0.5, 0.4)], [0, 1, 2]),
            ["in", "out"],
        ),
        (
            "passes beyond the end of the line",
            crossing(SHORT),
            line_path(1, "person", (0.6, 0.2), (0.6, 0.8), 0, 6, 1),
            [],
        ),
        (
            "crosses the short line",
            crossing(SHORT),
            line_path(1, "person", (0.2, 0.2), (0.2, 0.8), 0, 6, 1),
            ["in"],
        ),
        (
            "lost and found across",
            crossing(),
            path(1, "person", [(0.5, 0.3), (0.5, 0.7)], [0, 4]),
            ["in"],
        ),
        (
            "lost too long across",
            crossing(),
            merge(path(1, "person", [(0.5, 0.3), (0.5, 0.7)], [0, 9]), until=9),
            [],
        ),
        ("unconfirmed", crossing(), line_path(-1, "person", (0.5, 0.2), (0.5, 0.8), 0, 6, 1), []),
        (
            "other label",
            crossing(labels=["car"]),
            line_path(1, "person", (0.5, 0.2), (0.5, 0.8), 0, 6, 1),
            [],
        ),
        (
            "named directions",
            crossing({**DOOR, "forward_name": "south", "backward_name": "north"}),
            line_path(1, "car", (0.5, 0.2), (0.5, 0.8), 0, 6, 1),
            ["south"],
        ),
    ],
)
def test_line_cross(name: str, config: dict, frames: Frames, expected: list[str]) -> None:
    assert directions(config, frames) == expected, name


def test_line_counts_per_direction() -> None:
    camera = analyzer(crossing())
    frames = merge(
        line_path(1, "person", (0.5, 0.2), (0.5, 0.8), 0, 6, 1),
        line_path(2, "person", (0.3, 0.2), (0.3, 0.8), 0, 6, 1),
        line_path(3, "person", (0.7, 0.8), (0.7, 0.2), 0, 6, 1),
    )
    events = [e for t, objs in frames for e in camera.update(observe(t, objs)).events]
    assert camera.line_counts() == {"line_cross-0": {"in": 2, "out": 1}}
    assert events[-1].attributes["counts"] == {"in": 2, "out": 1}
    assert {e.zone for e in events} == {"door"}


ROAD = {"name": "road", "polygon": [[0, 0.3], [1, 0.3], [1, 1], [0, 1]], "roadway": True}


def stopped(min_duration_s: float = 30) -> dict:
    rule = {"kind": "stopped_vehicle", "zone": "road", "min_duration_s": min_duration_s}
    return {"zones": [ROAD], "rules": [rule], "lost_track_s": 5}


def creep(track: int, t1: float) -> Frames:
    # 0.4 of the box diagonal (~22 px here) every second: slow, but moving
    return line_path(track, "car", (0.1, 0.6), (0.1 + 0.09 * t1, 0.6), 0, t1, 1)


@pytest.mark.parametrize(
    ("name", "frames", "expected"),
    [
        ("stopped 35 s", still(1, "car", (0.5, 0.6), 0, 35), 1),
        ("stopped 20 s", still(1, "car", (0.5, 0.6), 0, 20), 0),
        ("stopped 35 s at 0.5 fps", still(1, "car", (0.5, 0.6), 0, 36, fps=0.5), 1),
        ("stopped 35 s at 10 fps", still(1, "car", (0.5, 0.6), 0, 35, fps=10), 1),
        ("stopped 100 s fires once", still(1, "car", (0.5, 0.6), 0, 100), 1),
        ("creeping", creep(1, 9), 0),
        (
            "box jitter is still stopped",
            path(1, "car", [(0.5, 0.6), (0.51, 0.6), (0.5, 0.61)] * 12, list(range(36))),
            1,
        ),
        ("stopped off the roadway", still(1, "car", (0.5, 0.2), 0, 35), 0),
        ("a person standing", still(1, "person", (0.5, 0.6), 0, 35), 0),
        ("unconfirmed", still(-1, "car", (0.5, 0.6), 0, 35), 0),
        (
            "lost and found while stopped",
            merge(still(1, "car", (0.5, 0.6), 0, 14), still(1, "car", (0.5, 0.6), 18, 35)),
            1,
        ),
        (
            "stops, drives, stops again",
            merge(
                still(1, "car", (0.2, 0.6), 0, 31),
                line_path(1, "car", (0.2, 0.6), (0.8, 0.6), 32, 36, 1),
                still(1, "car", (0.8, 0.6), 37, 70),
            ),
            2,
        ),
    ],
)
def test_stopped_vehicle(name: str, frames: Frames, expected: int) -> None:
    assert kinds(run(stopped(), frames)) == ["stopped_vehicle"] * expected, name


def test_stopped_vehicle_reports_when_it_stopped() -> None:
    frames = merge(
        line_path(1, "car", (0.1, 0.6), (0.5, 0.6), 0, 4, 1), still(1, "car", (0.5, 0.6), 5, 40)
    )
    (event,) = run(stopped(), frames)
    assert event.started_at == T0 + 4 and event.attributes["duration_s"] == 30.0


def collision(**rule: object) -> dict:
    return {
        "rules": [{"kind": "collision_candidate", "min_duration_s": 10, "within_s": 10, **rule}]
    }


def approach(track: int, start_x: float, meet_x: float, t_meet: float = 5) -> Frames:
    return line_path(track, "car", (start_x, 0.6), (meet_x, 0.6), 0, t_meet, 1)


CRASH = merge(
    approach(1, 0.1, 0.47),
    still(1, "car", (0.47, 0.6), 6, 20),
    approach(2, 0.9, 0.53),
    still(2, "car", (0.53, 0.6), 6, 20),
)


@pytest.mark.parametrize(
    ("name", "config", "frames", "expected"),
    [
        ("meet and both stop", collision(), CRASH, 1),
        ("meet and stop too briefly", collision(min_duration_s=30), CRASH, 0),
        (
            "pass each other",
            collision(),
            merge(
                line_path(1, "car", (0.1, 0.6), (0.9, 0.6), 0, 10, 1),
                line_path(2, "car", (0.9, 0.6), (0.1, 0.6), 0, 10, 1),
            ),
            0,
        ),
        (
            "parked overlapping all along",
            collision(),
            merge(still(1, "car", (0.47, 0.6), 0, 30), still(2, "car", (0.53, 0.6), 0, 30)),
            0,
        ),
        (
            "meet and stop much later",
            collision(),
            merge(
                approach(1, 0.1, 0.47),
                still(1, "car", (0.47, 0.6), 6, 60),
                approach(2, 0.9, 0.53),
                line_path(2, "car", (0.53, 0.6), (0.53, 0.95), 6, 30, 1),
                still(2, "car", (0.53, 0.95), 31, 60),
            ),
            0,
        ),
        (
            "people, not vehicles",
            collision(),
            merge(
                *(
                    merge(
                        line_path(i, "person", (x, 0.6), (m, 0.6), 0, 5, 1),
                        still(i, "person", (m, 0.6), 6, 20),
                    )
                    for i, x, m in ((1, 0.1, 0.47), (2, 0.9, 0.53))
                )
            ),
            0,
        ),
        (
            "meet at 0.5 fps",
            collision(),
            merge(
                line_path(1, "car", (0.1, 0.6), (0.47, 0.6), 0, 6, 0.5),
                still(1, "car", (0.47, 0.6), 8, 24, 0.5),
                line_path(2, "car", (0.9, 0.6), (0.53, 0.6), 0, 6, 0.5),
                still(2, "car", (0.53, 0.6), 8, 24, 0.5),
            ),
            1,
        ),
    ],
)
def test_collision_candidate(name: str, config: dict, frames: Frames, expected: int) -> None:
    assert kinds(run(config, frames)) == ["collision_candidate"] * expected, name


def test_collision_names_both_tracks() -> None:
    (event,) = run(collision(), CRASH)
    assert event.track_ids == (1, 2) and event.started_at <= T0 + 6
