"""Geometry tables, and the rule registry matching the config's kinds."""

from __future__ import annotations

import typing

import pytest

from feedtag.analytics.engine import RULE_KINDS
from feedtag.analytics.geometry import point_in_polygon, segments_intersect, signed_distance
from feedtag.config.analytics import Rule

# An L shape: concave, so a bounding-box test would get the notch wrong.
ELL = [(0, 0), (0.5, 0), (0.5, 0.5), (1, 0.5), (1, 1), (0, 1)]


@pytest.mark.parametrize(
    ("point", "inside"),
    [
        ((0.25, 0.25), True),
        ((0.75, 0.25), False),  # the notch
        ((0.75, 0.75), True),
        ((0.5, 0.25), True),  # on an inner edge
        ((1, 1), True),  # a corner
        ((1.0001, 0.75), False),
        ((-0.1, 0.5), False),
    ],
)
def test_point_in_polygon(point: tuple[float, float], inside: bool) -> None:
    assert point_in_polygon(point, ELL) is inside


@pytest.mark.parametrize(
    ("point", "start", "end", "sign"),
    [
        ((0.5, 0.6), (0, 0.5), (1, 0.5), 1),  # below a left-to-right line: its right-hand side
        ((0.5, 0.4), (0, 0.5), (1, 0.5), -1),
        ((0.5, 0.6), (1, 0.5), (0, 0.5), -1),  # the same point, the line drawn the other way
        ((0.6, 0.5), (0.5, 0), (0.5, 1), -1),  # right of a downward line is its left-hand side
        ((0.5, 0.5), (0, 0.5), (1, 0.5), 0),
    ],
)
def test_signed_distance_side(point, start, end, sign: int) -> None:
    distance = signed_distance(point, start, end)
    assert (distance > 0) - (distance < 0) == sign


@pytest.mark.parametrize(
    ("p1", "p2", "meets"),
    [
        ((0.5, 0.4), (0.5, 0.6), True),
        ((1.5, 0.4), (1.5, 0.6), False),  # past the end of the line
        ((1.0, 0.4), (1.0, 0.6), True),  # through its end point
        ((0.2, 0.4), (0.8, 0.4), False),  # parallel
    ],
)
def test_segments_intersect(p1, p2, meets: bool) -> None:
    assert segments_intersect(p1, p2, (0, 0.5), (1, 0.5)) is meets


def test_every_configured_kind_has_a_rule() -> None:
    models = typing.get_args(typing.get_args(Rule)[0])
    kinds = {model.model_fields["kind"].default for model in models}
    assert kinds == set(RULE_KINDS)
