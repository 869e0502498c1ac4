"""Analytics config: allowed and rejected inputs side by side, the error naming the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from feedtag.config.analytics import CameraAnalytics
from feedtag.config.loading import field_path

REPO = Path(__file__).resolve().parents[2]
SQUARE = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]
ROAD = {"name": "road", "polygon": SQUARE, "roadway": True, "allowed_direction_deg": 90}
LAWN = {"name": "lawn", "polygon": SQUARE}
DOOR = {"name": "door", "start": [0, 0.5], "end": [1, 0.5]}


def base(**extra: Any) -> dict[str, Any]:
    return {"zones": [ROAD, LAWN], "lines": [DOOR], **extra}


def problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        CameraAnalytics.model_validate(data)
    return [(field_path(error["loc"]), error["msg"]) for error in info.value.errors()]


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        (
            base(rules=[{"kind": "dwell", "zone": "exit"}]),
            "rules",
            "rules[0].zone: unknown zone 'exit'",
        ),
        (
            base(rules=[{"kind": "presence"}, {"kind": "line_cross", "line": "gate"}]),
            "rules",
            "rules[1].line: unknown line 'gate' (known: door)",
        ),
        (base(rules=[{"kind": "stopped_vehicle", "zone": "lawn"}]), "rules", "not marked roadway"),
        (base(rules=[{"kind": "wrong_way", "zone": "lawn"}]), "rules", "no allowed direction"),
        (
            base(
                rules=[
                    {"kind": "dwell", "zone": "road", "id": "a"},
                    {"kind": "presence", "id": "a"},
                ]
            ),
            "rules",
            "rules[1].id: duplicate rule id 'a'",
        ),
        (base(rules=[{"kind": "teleport"}]), "rules[0]", "does not match any of the expected tags"),
        (
            base(rules=[{"kind": "dwell", "zone": "road", "min_duration_s": -1}]),
            "rules[0].dwell.min_duration_s",
            "greater than or equal to 0",
        ),
        (
            base(rules=[{"kind": "crowding", "min_count": 0}]),
            "rules[0].crowding.min_count",
            "greater than or equal to 1",
        ),
        (
            base(rules=[{"kind": "dwell", "zone": "road", "colour": "red"}]),
            "rules[0].dwell.colour",
            "Extra inputs",
        ),
        ({"zones": [LAWN, LAWN]}, "zones", "[1].name: duplicate name 'lawn'"),
        ({"zones": [{"name": "z", "polygon": [[0, 0], [1, 1]]}]}, "zones[0].polygon", "at least 3"),
        (
            {"zones": [{"name": "z", "polygon": [[0, 0], [1.5, 0], [1, 1]]}]},
            "zones[0].polygon[1][0]",
            "less than or equal to 1",
        ),
        (
            {"zones": [{**LAWN, "allowed_direction_deg": 0, "allowed_direction": [1, 0]}]},
            "zones[0]",
            "not both",
        ),
        ({"zones": [{**LAWN, "allowed_direction": [0, 0]}]}, "zones[0]", "zero vector"),
        (
            {"zones": [{**LAWN, "allowed_direction_deg": 360}]},
            "zones[0].allowed_direction_deg",
            "less than 360",
        ),
        ({"zones": [{**LAWN, "name": "a b"}]}, "zones[0].name", "pattern"),
        (
            {"lines": [{"name": "l", "start": [0.5, 0.5], "end": [0.5, 0.5]}]},
            "lines[0]",
            "must differ",
        ),
        (
            {"lines": [{**DOOR, "forward_name": "x", "backward_name": "x"}]},
            "lines[0]",
            "must differ",
        ),
        ({"lost_track_s": 0}, "lost_track_s", "greater than 0"),
    ],
)
def test_rejected(data: dict[str, Any], path: str, message: str) -> None:
    found = problems(data)
    assert any(p == path and message in m for p, m in found), found


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "presence"},
        {"kind": "presence", "labels": ["person", "dog"], "zone": "lawn", "grace_s": 0},
        {"kind": "zone_enter_exit", "zone": "lawn"},
        {"kind": "line_cross", "line": "door", "hysteresis": 0},
        {"kind": "dwell", "zone": "lawn", "min_duration_s": 120},
        {"kind": "stopped_vehicle", "zone": "road"},
        {"kind": "wrong_way", "zone": "road", "max_angle_deg": 90},
        {"kind": "crowding", "zone": "lawn", "min_count": 20},
        {"kind": "collision_candidate", "zone": "road"},
        {"kind": "camera_health", "dark_luma": 10},
    ],
)
def test_allowed(rule: dict[str, Any]) -> None:
    analytics = CameraAnalytics.model_validate(base(rules=[rule]))
    assert analytics.rules[0].kind == rule["kind"]


def test_defaults_and_schema() -> None:
    analytics = CameraAnalytics.model_validate(
        base(rules=[{"kind": "stopped_vehicle", "zone": "road"}])
    )
    assert analytics.rules[0].labels == ["car", "truck", "bus", "motorcycle"]
    assert analytics.zones[0].direction_deg() == 90
    schema = CameraAnalytics.model_json_schema()
    assert set(schema["properties"]) == {"lost_track_s", "zones", "lines", "rules"}


def test_docs_example_is_valid() -> None:
    text = (REPO / "docs" / "rules.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    assert blocks
    for block in blocks:
        data = yaml.safe_load(block)
        analytics = CameraAnalytics.model_validate(data.get("analytics", data))
        assert analytics.rules
