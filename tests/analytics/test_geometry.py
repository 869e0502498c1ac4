"""Geometry tables, and the rule registry matching the config's kinds."""

from __future__ import annotations

import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedtag.analytics.engine import RULE_KINDS
from feedtag.analytics.geometry import (
    EDGE_EPSILON,
    path_within_bounds,
    point_in_polygon,
    polygon_bounds,
    segment_meets_polygon,
    segments_intersect,
    signed_distance,
    within_bounds,
)
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


# Coordinates on a coarse grid as well as anywhere: corners, edges and points exactly on
# them are where a box test could disagree with the polygon test.
coordinate = st.one_of(
    st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), st.floats(-0.2, 1.2, allow_nan=False)
)
point = st.tuples(coordinate, coordinate)


@settings(max_examples=400, deadline=None)
@given(polygon=st.lists(point, min_size=3, max_size=7), a=point, b=point)
def test_the_bounds_never_rule_out_what_the_polygon_test_lets_in(
    polygon: list[tuple[float, float]], a: tuple[float, float], b: tuple[float, float]
) -> None:
    """The zone rules skip the polygon tests outside a zone's bounds: only sound if nothing
    outside them is inside, on an edge, or crossed."""
    bounds = polygon_bounds(polygon)
    if not within_bounds(a, bounds):
        assert not point_in_polygon(a, polygon)
    if not path_within_bounds(a, b, bounds):
        assert not segment_meets_polygon(a, b, polygon)


def test_the_bounds_hold_the_edges_with_their_tolerance() -> None:
    bounds = polygon_bounds(ELL)
    assert within_bounds((1 + EDGE_EPSILON / 2, 1), bounds)  # on the edge, within tolerance
    assert point_in_polygon((1 + EDGE_EPSILON / 2, 1), ELL)
    assert not within_bounds((1.0001, 0.75), bounds)
    assert path_within_bounds((-0.5, 0.75), (0.1, 0.75), bounds)
    assert not path_within_bounds((-0.5, -0.1), (1.5, -0.1), bounds)
