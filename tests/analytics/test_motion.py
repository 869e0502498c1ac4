"""Motion rule regions: which tracks are near a line, direction or speed rule."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from feedtag.analytics.motion import MotionRegions
from feedtag.config.analytics import CameraAnalytics
from feedtag.core import Detections

NAMES = ["person", "car"]
SIZE = (100, 100)
LINE = {"name": "door", "start": [0.5, 0.2], "end": [0.5, 0.8]}
ROAD = {"name": "road", "polygon": [[0, 0.6], [1, 0.6], [1, 1], [0, 1]], "roadway": True,
        "allowed_direction_deg": 0}  # fmt: skip


def ground(points: list[tuple[float, float]], labels: list[int]) -> Detections:
    """Boxes whose ground points (bottom-centre) are ``points`` (normalized)."""
    boxes = [[x * 100 - 2, y * 100 - 10, x * 100 + 2, y * 100] for x, y in points]
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.ones(len(points), np.float32),
        np.array(labels, np.int32),
    )


def regions(rules: list[dict[str, Any]], margin: float = 0.05) -> MotionRegions:
    analytics = CameraAnalytics.model_validate({"lines": [LINE], "zones": [ROAD], "rules": rules})
    return MotionRegions.from_analytics(analytics, margin)


@pytest.mark.parametrize(
    ("case", "rules", "points", "labels", "expected"),
    [
        ("within the margin of a line", [{"kind": "line_cross", "line": "door"}],
         [(0.53, 0.5), (0.6, 0.5)], [0, 0], [True, False]),
        ("past the end of a short line: near only within the margin of its end", [{"kind": "line_cross", "line": "door"}],
         [(0.5, 0.95), (0.5, 0.84)], [0, 0], [False, True]),
        ("a label the rule does not watch",
         [{"kind": "line_cross", "line": "door", "labels": ["car"]}],
         [(0.5, 0.5), (0.5, 0.5)], [0, 1], [False, True]),
        ("inside or at the edge of a wrong_way zone", [{"kind": "wrong_way", "zone": "road"}],
         [(0.5, 0.9), (0.5, 0.57), (0.5, 0.3)], [1, 1, 1], [True, True, False]),
        ("stopped_vehicle watches its roadway", [{"kind": "stopped_vehicle", "zone": "road"}],
         [(0.5, 0.9), (0.5, 0.3)], [1, 1], [True, False]),
        ("collision_candidate without a zone watches the frame",
         [{"kind": "collision_candidate"}], [(0.1, 0.1)], [1], [True]),
        ("presence and dwell need no motion",
         [{"kind": "presence"}, {"kind": "dwell", "zone": "road"}],
         [(0.5, 0.9)], [0], [False]),
    ],
)  # fmt: skip
def test_near_mask(
    case: str,
    rules: list[dict[str, Any]],
    points: list[tuple[float, float]],
    labels: list[int],
    expected: list[bool],
) -> None:
    found = regions(rules).near_mask(ground(points, labels), NAMES, SIZE)
    assert found.tolist() == expected, case


def test_no_motion_rule_means_no_regions() -> None:
    assert not regions([{"kind": "presence"}])
    assert regions([{"kind": "line_cross", "line": "door"}])
    assert regions([]).near_mask(ground([(0.5, 0.5)], [0]), NAMES, SIZE).tolist() == [False]
