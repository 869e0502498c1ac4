"""Zone rules on synthetic tracks: enter/exit, dwell, crowding, wrong-way."""

from __future__ import annotations

import pytest

from tests.analytics.synth import T0, Frames, Obj, kinds, line_path, merge, path, run, still

BOX = {"name": "box", "polygon": [[0.4, 0.4], [0.6, 0.4], [0.6, 0.6], [0.4, 0.6]]}


def enter_exit(min_duration_s: float = 1.0, labels: list[str] | None = None) -> dict:
    rule = {"kind": "zone_enter_exit", "zone": "box", "min_duration_s": min_duration_s}
    if labels is not None:
        rule["labels"] = labels
    return {"zones": [BOX], "rules": [rule], "lost_track_s": 5}


ACROSS = line_path(1, "person", (0.2, 0.5), (0.8, 0.5), 0, 6, 1)  # inside at t = 2, 3, 4


@pytest.mark.parametrize(
    ("name", "config", "frames", "expected"),
    [
        ("walks through", enter_exit(), ACROSS, ["zone_enter", "zone_exit"]),
        (
            "walks through, 0.5 fps",
            enter_exit(),
            line_path(1, "person", (0.1, 0.5), (0.9, 0.5), 0, 16, 0.5),
            ["zone_enter", "zone_exit"],
        ),
        (
            "walks through, 10 fps",
            enter_exit(),
            line_path(1, "person", (0.2, 0.5), (0.8, 0.5), 0, 6, 10),
            ["zone_enter", "zone_exit"],
        ),
        ("stays outside", enter_exit(), still(1, "person", (0.2, 0.5), 0, 10), []),
        (
            "one frame inside is flicker",
            enter_exit(),
            path(1, "person", [(0.3, 0.5), (0.5, 0.5), (0.3, 0.5), (0.3, 0.5)], [0, 1, 2, 3]),
            [],
        ),
        (
            "on the edge counts as inside",
            enter_exit(),
            still(1, "person", (0.4, 0.5), 0, 3),
            ["zone_enter"],
        ),
        ("just outside the edge", enter_exit(), still(1, "person", (0.399, 0.5), 0, 3), []),
        ("too short inside", enter_exit(min_duration_s=5), ACROSS, []),
        (
            "no minimum",
            enter_exit(min_duration_s=0),
            path(1, "person", [(0.3, 0.5), (0.5, 0.5), (0.3, 0.5)], [0, 1, 2]),
            ["zone_enter", "zone_exit"],
        ),
        ("other label", enter_exit(labels=["car"]), ACROSS, []),
        (
            "unconfirmed track",
            enter_exit(),
            line_path(-1, "person", (0.2, 0.5), (0.8, 0.5), 0, 6, 1),
            [],
        ),
        (
            "lost inside exits",
            enter_exit(),
            merge(still(1, "person", (0.5, 0.5), 0, 3), until=12),
            ["zone_enter", "zone_exit"],
        ),
        (
            "lost and found inside is one visit",
            enter_exit(),
            merge(
                still(1, "person", (0.5, 0.5), 0, 3),
                still(1, "person", (0.5, 0.5), 7, 10),
                until=10,
            ),
            ["zone_enter"],
        ),
        (
            "lost too long is two visits",
            enter_exit(),
            merge(
                still(1, "person", (0.5, 0.5), 0, 3),
                still(1, "person", (0.5, 0.5), 12, 15),
                until=15,
            ),
            ["zone_enter", "zone_exit", "zone_enter"],
        ),
    ],
)
def test_zone_enter_exit(name: str, config: dict, frames: Frames, expected: list[str]) -> None:
    assert kinds(run(config, frames)) == expected, name


def test_enter_exit_times_and_attributes() -> None:
    enter, leave = run(enter_exit(), ACROSS)
    assert enter.started_at == T0 + 2 and enter.zone == "box" and enter.track_ids == (1,)
    assert leave.started_at == T0 + 5 and leave.attributes == {"reason": "moved", "duration_s": 3.0}
    assert enter.label == "person"


def test_lost_track_exits_at_last_sighting() -> None:
    _, leave = run(enter_exit(), merge(still(1, "person", (0.5, 0.5), 0, 3), until=12))
    assert leave.started_at == T0 + 3 and leave.attributes["reason"] == "lost"


def dwell(min_duration_s: float = 10) -> dict:
    return {
        "zones": [BOX],
        "rules": [{"kind": "dwell", "zone": "box", "min_duration_s": min_duration_s}],
        "lost_track_s": 5,
    }


@pytest.mark.parametrize(
    ("name", "frames", "expected"),
    [
        ("stays 12 s", still(1, "person", (0.5, 0.5), 0, 12), 1),
        ("stays 8 s", still(1, "person", (0.5, 0.5), 0, 8), 0),
        ("stays 60 s fires once", still(1, "person", (0.5, 0.5), 0, 60), 1),
        ("stays 12 s at 0.5 fps", still(1, "person", (0.5, 0.5), 0, 12, fps=0.5), 1),
        ("stays 12 s at 10 fps", still(1, "person", (0.5, 0.5), 0, 12, fps=10), 1),
        ("stays outside", still(1, "person", (0.3, 0.5), 0, 30), 0),
        ("unconfirmed", still(-1, "person", (0.5, 0.5), 0, 30), 0),
        (
            "lost and found within lost time",
            merge(still(1, "person", (0.5, 0.5), 0, 6), still(1, "person", (0.5, 0.5), 9, 12)),
            1,
        ),
        (
            "two visits",
            merge(still(1, "person", (0.5, 0.5), 0, 12), still(1, "person", (0.5, 0.5), 30, 42)),
            2,
        ),
        (
            "two short visits",
            merge(still(1, "person", (0.5, 0.5), 0, 6), still(1, "person", (0.5, 0.5), 20, 26)),
            0,
        ),
        (
            "two people",
            merge(still(1, "person", (0.5, 0.5), 0, 12), still(2, "person", (0.45, 0.5), 0, 12)),
            2,
        ),
    ],
)
def test_dwell(name: str, frames: Frames, expected: int) -> None:
    events = run(dwell(), frames)
    assert kinds(events) == ["dwell"] * expected, name


def test_dwell_reports_its_start() -> None:
    (event,) = run(dwell(), still(1, "person", (0.5, 0.5), 3, 20))
    assert event.started_at == T0 + 3 and event.attributes["duration_s"] == 10.0


def crowd(
    n: int, t0: float, t1: float, *, track0: int = 1, x: float = 0.5, fps: float = 1.0
) -> Frames:
    return merge(*(still(track0 + i, "person", (x, 0.5), t0, t1, fps) for i in range(n)))


def crowding(zone: bool = True) -> dict:
    rule = {"kind": "crowding", "min_count": 3, "min_duration_s": 5, "grace_s": 2}
    if zone:
        rule["zone"] = "box"
    return {"zones": [BOX], "rules": [rule]}


@pytest.mark.parametrize(
    ("name", "frames", "expected"),
    [
        ("three for 6 s", crowd(3, 0, 6), 1),
        ("three for 6 s at 0.5 fps", crowd(3, 0, 6, fps=0.5), 1),
        ("three for 6 s at 10 fps", crowd(3, 0, 6, fps=10), 1),
        ("two for 60 s", crowd(2, 0, 60), 0),
        ("three for 4 s", crowd(3, 0, 4), 0),
        ("three outside the zone", crowd(3, 0, 10, x=0.2), 0),
        (
            "unconfirmed detections count",
            merge(still(-1, "person", (0.5, 0.5), 0, 6), crowd(2, 0, 6, track0=5)),
            1,
        ),
        (
            "a dip shorter than grace is one crowd",
            merge(
                crowd(2, 0, 20),
                still(9, "person", (0.5, 0.5), 0, 3),
                still(9, "person", (0.5, 0.5), 5, 20),
            ),
            1,
        ),
        ("two crowds apart", merge(crowd(3, 0, 6), crowd(3, 20, 26, track0=10), until=26), 2),
    ],
)
def test_crowding(name: str, frames: Frames, expected: int) -> None:
    assert kinds(run(crowding(), frames)) == ["crowding"] * expected, name


def test_crowding_anywhere_counts_the_frame() -> None:
    (event,) = run(crowding(zone=False), crowd(3, 0, 6, x=0.2))
    assert event.zone is None and event.attributes["count"] == 3 and event.started_at == T0


ROAD = {
    "name": "road",
    "polygon": [[0, 0.3], [1, 0.3], [1, 1], [0, 1]],
    "roadway": True,
    "allowed_direction_deg": 0,
}


def wrong_way(zone: dict = ROAD, **rule: object) -> dict:
    return {"zones": [zone], "rules": [{"kind": "wrong_way", "zone": "road", **rule}]}


@pytest.mark.parametrize(
    ("name", "config", "frames", "expected"),
    [
        (
            "drives left against right",
            wrong_way(),
            line_path(1, "car", (0.9, 0.6), (0.1, 0.6), 0, 8, 1),
            1,
        ),
        ("drives right", wrong_way(), line_path(1, "car", (0.1, 0.6), (0.9, 0.6), 0, 8, 1), 0),
        (
            "drives down, within the angle",
            wrong_way(),
            line_path(1, "car", (0.5, 0.35), (0.5, 0.95), 0, 8, 1),
            0,
        ),
        (
            "drives down, strict angle",
            wrong_way(max_angle_deg=60),
            line_path(1, "car", (0.5, 0.35), (0.5, 0.95), 0, 8, 1),
            1,
        ),
        (
            "waits with jitter",
            wrong_way(),
            path(
                1, "car", [(0.5, 0.6), (0.49, 0.6), (0.51, 0.6), (0.48, 0.6)] * 3, list(range(12))
            ),
            0,
        ),
        (
            "drives left at 0.5 fps",
            wrong_way(),
            line_path(1, "car", (0.9, 0.6), (0.1, 0.6), 0, 8, 0.5),
            1,
        ),
        (
            "drives left at 10 fps",
            wrong_way(),
            line_path(1, "car", (0.9, 0.6), (0.1, 0.6), 0, 8, 10),
            1,
        ),
        (
            "drives left outside the zone",
            wrong_way(),
            line_path(1, "car", (0.9, 0.1), (0.1, 0.1), 0, 8, 1),
            0,
        ),
        (
            "a person is not watched",
            wrong_way(),
            line_path(1, "person", (0.9, 0.6), (0.1, 0.6), 0, 8, 1),
            0,
        ),
        (
            "direction as a vector",
            wrong_way({**ROAD, "allowed_direction_deg": None, "allowed_direction": [-1, 0]}),
            line_path(1, "car", (0.1, 0.6), (0.9, 0.6), 0, 8, 1),
            1,
        ),
        ("unconfirmed", wrong_way(), line_path(-1, "car", (0.9, 0.6), (0.1, 0.6), 0, 8, 1), 0),
        (
            "lost and found still judged",
            wrong_way(),
            merge(path(1, "car", [(0.9, 0.6), (0.88, 0.6), (0.6, 0.6)], [0, 1, 4])),
            1,
        ),
        (
            "lost too long is judged afresh",
            wrong_way(),
            merge(path(1, "car", [(0.9, 0.6), (0.88, 0.6), (0.6, 0.6)], [0, 1, 9])),
            0,
        ),
    ],
)
def test_wrong_way(name: str, config: dict, frames: Frames, expected: int) -> None:
    assert kinds(run(config, frames)) == ["wrong_way"] * expected, name


def test_wrong_way_attributes() -> None:
    (event,) = run(wrong_way(), line_path(1, "car", (0.9, 0.6), (0.1, 0.6), 0, 8, 1))
    assert event.attributes == {"heading_deg": 180.0, "allowed_deg": 0.0, "angle_deg": 180.0}
    assert event.track_ids == (1,) and event.label == "car"


def test_ground_point_is_the_box_bottom_centre() -> None:
    assert Obj(1, "car", 0.5, 0.5).box() == [45.0, 30.0, 55.0, 50.0]
