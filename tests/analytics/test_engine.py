"""Presence segments, deterministic ids and the CameraAnalyzer's handling of time."""

from __future__ import annotations

import numpy as np
import pytest

from feedtag.analytics.rules import Observation
from feedtag.core import CameraState, Detections, TagSegment
from tests.analytics.synth import (
    CAMERA,
    T0,
    Frames,
    analyzer,
    line_path,
    merge,
    observe,
    path,
    run,
    run_results,
    still,
)

BOX = {"name": "box", "polygon": [[0.4, 0.4], [0.6, 0.4], [0.6, 0.6], [0.4, 0.6]]}


def presence(
    zone: str | None = None,
    grace_s: float = 3,
    labels: list[str] | None = None,
    count_passing: bool = True,
) -> dict:
    rule: dict = {"kind": "presence", "grace_s": grace_s}
    if zone:
        rule["zone"] = zone
        rule["count_passing"] = count_passing
    if labels is not None:
        rule["labels"] = labels
    return {"zones": [BOX], "rules": [rule]}


def segments(config: dict, frames: Frames) -> list[tuple[str, float, float | None, int]]:
    found: list[TagSegment] = [s for r in run_results(config, frames) for s in r.segments]
    return [
        (s.label, s.started_at - T0, None if s.ended_at is None else s.ended_at - T0, s.max_count)
        for s in found
    ]


def flicker(t1: int, every: int) -> Frames:
    """A person missed by the detector on every ``every``-th frame, at 1 fps."""
    return [(t, objs if t % every else []) for t, objs in still(1, "person", (0.5, 0.5), 0, t1)]


@pytest.mark.parametrize(
    ("name", "config", "frames", "expected"),
    [
        (
            "one person 10 s",
            presence(),
            still(1, "person", (0.5, 0.5), 0, 10),
            [("person", 0, 10, 1)],
        ),
        (
            "flicker shorter than grace is one segment",
            presence(),
            flicker(20, 3),
            [("person", 1, 20, 1)],
        ),
        (
            "gap longer than grace splits",
            presence(),
            merge(
                still(1, "person", (0.5, 0.5), 0, 5),
                still(1, "person", (0.5, 0.5), 10, 15),
                until=15,
            ),
            [("person", 0, 5, 1), ("person", 10, 15, 1)],
        ),
        (
            "max count",
            presence(),
            merge(
                still(1, "person", (0.5, 0.5), 0, 10),
                still(2, "person", (0.45, 0.5), 3, 6),
                still(-1, "person", (0.55, 0.5), 4, 5),
            ),
            [("person", 0, 10, 3)],
        ),
        (
            "labels apart",
            presence(),
            merge(still(1, "person", (0.5, 0.5), 0, 4), still(2, "car", (0.5, 0.9), 2, 8)),
            [("person", 0, 4, 1), ("car", 2, 8, 1)],
        ),
        (
            "label filter",
            presence(labels=["car"]),
            merge(still(1, "person", (0.5, 0.5), 0, 4), still(2, "car", (0.5, 0.9), 2, 8)),
            [("car", 2, 8, 1)],
        ),
        (
            "in the zone only",
            presence(zone="box"),
            line_path(1, "person", (0.2, 0.5), (0.8, 0.5), 0, 6, 1),
            [("person", 2, 4, 1)],
        ),
        (
            "at 0.5 fps",
            presence(),
            still(1, "person", (0.5, 0.5), 0, 10, fps=0.5),
            [("person", 0, 10, 1)],
        ),
        # at 1 fps a person crosses the small zone between two frames, never seen in it
        (
            "crossed between frames counts halfway",
            presence(zone="box"),
            line_path(1, "person", (0.3, 0.5), (0.7, 0.5), 0, 1, 1),
            [("person", 0.5, 0.5, 1)],
        ),
        (
            "crossed between frames, passing not counted",
            presence(zone="box", count_passing=False),
            line_path(1, "person", (0.3, 0.5), (0.7, 0.5), 0, 1, 1),
            [],
        ),
        (
            "an unconfirmed detection has no path",
            presence(zone="box"),
            line_path(-1, "person", (0.3, 0.5), (0.7, 0.5), 0, 1, 1),
            [],
        ),
        (
            "passes by above",
            presence(zone="box"),
            line_path(1, "person", (0.3, 0.3), (0.7, 0.3), 0, 1, 1),
            [],
        ),
        (
            "two crossings a second apart are one segment of one",
            presence(zone="box"),
            path(1, "person", [(0.3, 0.5), (0.7, 0.5), (0.3, 0.5)], [0, 1, 2]),
            [("person", 0.5, 1.5, 1)],
        ),
        (
            "a new track after a long gap has no path yet",
            presence(zone="box"),
            path(1, "person", [(0.3, 0.5), (0.7, 0.5)], [0, 10]),
            [],
        ),
    ],
)
def test_presence_segments(name: str, config: dict, frames: Frames, expected: list) -> None:
    assert sorted(segments(config, frames), key=lambda s: s[1]) == sorted(
        expected, key=lambda s: s[1]
    ), name


def test_open_segments_show_what_is_visible_now() -> None:
    camera = analyzer(presence(zone="box"))
    camera.update(observe(0, still(1, "person", (0.5, 0.5), 0, 0)[0][1]))
    (segment,) = camera.open_segments()
    assert segment.ended_at is None and segment.zone == "box" and segment.camera_id == CAMERA


EVERYTHING = {
    "zones": [
        BOX,
        {
            "name": "road",
            "polygon": [[0, 0.7], [1, 0.7], [1, 1], [0, 1]],
            "roadway": True,
            "allowed_direction_deg": 0,
        },
    ],
    "lines": [{"name": "door", "start": [0, 0.5], "end": [1, 0.5]}],
    "rules": [
        {"kind": "presence"},
        {"kind": "zone_enter_exit", "zone": "box"},
        {"kind": "line_cross", "line": "door"},
        {"kind": "dwell", "zone": "box", "min_duration_s": 5},
        {"kind": "stopped_vehicle", "zone": "road", "min_duration_s": 5},
        {"kind": "wrong_way", "zone": "road"},
        {"kind": "crowding", "labels": [], "min_count": 2, "min_duration_s": 2},
    ],
}
BUSY = merge(
    line_path(1, "person", (0.5, 0.2), (0.5, 0.55), 0, 4, 1),
    still(1, "person", (0.5, 0.55), 5, 12),
    line_path(2, "car", (0.9, 0.8), (0.5, 0.8), 0, 4, 1),
    still(2, "car", (0.5, 0.8), 5, 12),
)


def test_same_input_twice_gives_the_same_ids() -> None:
    first, second = run(EVERYTHING, BUSY), run(EVERYTHING, BUSY)
    assert {e.kind.value for e in first} >= {
        "zone_enter",
        "line_cross",
        "dwell",
        "stopped_vehicle",
        "wrong_way",
        "crowding",
    }
    assert [e.event_id for e in first] == [e.event_id for e in second]
    assert len({e.event_id for e in first}) == len(first)
    first_segments = [s.segment_id for r in run_results(EVERYTHING, BUSY) for s in r.segments]
    assert first_segments == [
        s.segment_id for r in run_results(EVERYTHING, BUSY) for s in r.segments
    ]


def test_other_camera_or_time_gives_other_ids() -> None:
    shifted = [(t + 100, objs) for t, objs in BUSY]
    assert not {e.event_id for e in run(EVERYTHING, BUSY)} & {
        e.event_id for e in run(EVERYTHING, shifted)
    }


def test_stream_time_going_back_restarts_rules() -> None:
    camera = analyzer(presence(grace_s=60))
    for t, objs in still(1, "person", (0.5, 0.5), 100, 110):
        camera.update(observe(t, objs))
    result = camera.update(observe(0, []))  # reconnect: the stream clock starts again
    assert [(s.started_at - T0, s.ended_at - T0) for s in result.segments if s.ended_at] == [
        (100, 110)
    ]
    assert camera.open_segments() == []


def test_observation_of_another_camera_is_refused() -> None:
    camera = analyzer(presence())
    other = observe(0)
    object.__setattr__(other, "camera_id", "elsewhere")
    with pytest.raises(ValueError, match="expected camera 'cam-1'"):
        camera.update(other)


def test_unknown_class_ids_get_a_name() -> None:
    detections = Detections(
        np.array([[0, 0, 10, 10]], np.float32), np.ones(1, np.float32), np.array([9], np.int32)
    )
    obs = Observation(CAMERA, 0, T0, detections, ("person",), (100, 100))
    assert [(s.label, s.track_id) for s in obs.seen] == [("class_9", -1)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"frame_size": (0, 10)}, "positive frame_size"), ({"wall_time": 0.0}, "Unix seconds")],
)
def test_observation_is_validated(kwargs: dict, message: str) -> None:
    values = {
        "camera_id": CAMERA,
        "t_s": 0.0,
        "wall_time": T0,
        "detections": Detections.empty(),
        "class_names": (),
        "frame_size": (10, 10),
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        Observation(**values)


def test_status_ticks_do_not_restart_rules() -> None:
    camera = analyzer(presence(grace_s=60))
    for t, objs in still(1, "person", (0.5, 0.5), 100, 110):
        camera.update(observe(t, objs))
    tick = Observation.status(CAMERA, T0 + 200, CameraState.OFFLINE)  # no stream time
    assert camera.update(tick).segments == []
    assert len(camera.open_segments()) == 1
