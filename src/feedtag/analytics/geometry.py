"""Plane geometry for zones and lines, in normalized frame coordinates (0..1, y down).

An object's position is its *ground point*: the bottom-centre of its box. Zones and lines
are drawn on the ground (a pavement, a lane, a doorway threshold); the feet or wheels touch
it, while the box centre of a standing person floats a metre above it and, seen in
perspective, can lie over a different zone than the one the person stands in.

Pure Python and numpy: zones have a handful of corners and shapely would add a compiled
dependency for ten lines of arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Point = tuple[float, float]

# Points closer than this to a polygon's edge count as inside: a ground point resting exactly
# on a zone's border must not flicker between inside and outside through rounding.
EDGE_EPSILON = 1e-9


def ground_points(
    xyxy: npt.NDArray[np.float32], frame_size: tuple[int, int]
) -> npt.NDArray[np.float64]:
    """Bottom-centre of each box, normalized by the frame's ``(width, height)``.

    >>> import numpy as np
    >>> ground_points(np.array([[10, 0, 30, 50]], np.float32), (100, 100)).tolist()
    [[0.2, 0.5]]
    """
    width, height = frame_size
    x = (xyxy[:, 0].astype(np.float64) + xyxy[:, 2]) / 2 / width
    y = xyxy[:, 3].astype(np.float64) / height
    return np.stack([x, y], axis=1)


def _on_segment(p: Point, a: Point, b: Point) -> bool:
    cross = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
    if abs(cross) > EDGE_EPSILON:
        return False
    return (
        min(a[0], b[0]) - EDGE_EPSILON <= p[0] <= max(a[0], b[0]) + EDGE_EPSILON
        and min(a[1], b[1]) - EDGE_EPSILON <= p[1] <= max(a[1], b[1]) + EDGE_EPSILON
    )


#: a polygon's bounding box, widened by EDGE_EPSILON: (left, top, right, bottom)
Bounds = tuple[float, float, float, float]


def polygon_bounds(polygon: Sequence[Point]) -> Bounds:
    """The box outside of which nothing is inside ``polygon`` or on its edge; a rule computes
    it once for its zone, so that the points and paths far from the zone (most of them, when
    a frame has several zones) are ruled out by four comparisons.

    >>> polygon_bounds([(0.2, 0.5), (0.4, 0.5), (0.3, 0.9)]) == (
    ...     0.2 - EDGE_EPSILON, 0.5 - EDGE_EPSILON, 0.4 + EDGE_EPSILON, 0.9 + EDGE_EPSILON)
    True
    """
    xs = [corner[0] for corner in polygon]
    ys = [corner[1] for corner in polygon]
    return (
        min(xs) - EDGE_EPSILON,
        min(ys) - EDGE_EPSILON,
        max(xs) + EDGE_EPSILON,
        max(ys) + EDGE_EPSILON,
    )


def within_bounds(point: Point, bounds: Bounds) -> bool:
    """False when ``point`` cannot be inside the polygon of ``bounds`` (nor on its edge).

    >>> box = polygon_bounds([(0, 0), (1, 0), (1, 1)])
    >>> within_bounds((0.5, 0.5), box), within_bounds((1.5, 0.5), box)
    (True, False)
    """
    return bounds[0] <= point[0] <= bounds[2] and bounds[1] <= point[1] <= bounds[3]


def path_within_bounds(a: Point, b: Point, bounds: Bounds) -> bool:
    """False when the path from ``a`` to ``b`` cannot touch the polygon of ``bounds``.

    >>> box = polygon_bounds([(0.4, 0.4), (0.6, 0.4), (0.6, 0.6), (0.4, 0.6)])
    >>> path_within_bounds((0.1, 0.5), (0.9, 0.5), box)  # its box overlaps the zone's
    True
    >>> path_within_bounds((0.1, 0.1), (0.9, 0.1), box)  # passes above
    False
    """
    return (
        min(a[0], b[0]) <= bounds[2]
        and max(a[0], b[0]) >= bounds[0]
        and min(a[1], b[1]) <= bounds[3]
        and max(a[1], b[1]) >= bounds[1]
    )


def in_polygon(point: Point, polygon: Sequence[Point], bounds: Bounds) -> bool:
    """:func:`point_in_polygon`, ruling out a point outside ``bounds`` (the polygon's
    :func:`polygon_bounds`) first.

    >>> square = [(0, 0), (1, 0), (1, 1), (0, 1)]
    >>> in_polygon((0.5, 0.5), square, polygon_bounds(square))
    True
    """
    return within_bounds(point, bounds) and point_in_polygon(point, polygon)


def point_in_polygon(point: Point, polygon: Sequence[Point]) -> bool:
    """Whether ``point`` lies inside ``polygon`` or on its edge (even-odd rule).

    >>> square = [(0, 0), (1, 0), (1, 1), (0, 1)]
    >>> point_in_polygon((0.5, 0.5), square), point_in_polygon((1, 0.5), square)
    (True, True)
    >>> point_in_polygon((1.5, 0.5), square)
    False
    """
    x, y = point
    inside = False
    previous = polygon[-1]
    for current in polygon:
        if _on_segment(point, previous, current):
            return True
        (x1, y1), (x2, y2) = previous, current
        if (y1 > y) != (y2 > y):
            x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < x_cross:
                inside = not inside
        previous = current
    return inside


def signed_distance(point: Point, start: Point, end: Point) -> float:
    """Distance of ``point`` from the infinite line ``start→end``: positive on its right-hand
    side as seen walking from start to end in the image (y down), negative on its left.

    >>> signed_distance((0.5, 0.7), (0, 0.5), (1, 0.5))  # below a left-to-right line
    0.2
    """
    dx, dy = end[0] - start[0], end[1] - start[1]
    cross = dx * (point[1] - start[1]) - dy * (point[0] - start[0])
    return round(cross / math.hypot(dx, dy), 12)


def distance_to_segment(point: Point, start: Point, end: Point) -> float:
    """Distance of ``point`` from the segment ``start→end`` (not the infinite line).

    >>> distance_to_segment((0.5, 0.7), (0, 0.5), (1, 0.5))
    0.2
    >>> distance_to_segment((1.3, 0.9), (0, 0.5), (1, 0.5))  # past the end
    0.5
    """
    dx, dy = end[0] - start[0], end[1] - start[1]
    length_sq = dx * dx + dy * dy
    along = 0.0
    if length_sq > 0:
        along = ((point[0] - start[0]) * dx + (point[1] - start[1]) * dy) / length_sq
        along = min(1.0, max(0.0, along))
    nearest_x, nearest_y = start[0] + along * dx, start[1] + along * dy
    return round(math.hypot(point[0] - nearest_x, point[1] - nearest_y), 12)


def near_polygon(point: Point, polygon: Sequence[Point], margin: float) -> bool:
    """Whether ``point`` lies inside ``polygon`` or within ``margin`` of its edge.

    >>> square = [(0.4, 0.4), (0.6, 0.4), (0.6, 0.6), (0.4, 0.6)]
    >>> near_polygon((0.5, 0.5), square, 0), near_polygon((0.65, 0.5), square, 0.1)
    (True, True)
    >>> near_polygon((0.8, 0.5), square, 0.1)
    False
    """
    if point_in_polygon(point, polygon):
        return True
    corners = list(polygon)
    return any(
        distance_to_segment(point, corners[i - 1], corners[i]) <= margin
        for i in range(len(corners))
    )


def segments_intersect(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """Whether segment ``p1p2`` meets segment ``q1q2`` (touching counts).

    >>> segments_intersect((0, 0), (1, 1), (0, 1), (1, 0))
    True
    >>> segments_intersect((0, 0), (1, 0), (0, 1), (1, 1))
    False
    """

    def orient(a: Point, b: Point, c: Point) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0) or d1 == 0 or d2 == 0) and (
        (d3 > 0) != (d4 > 0) or d3 == 0 or d4 == 0
    ):
        if 0 in (d1, d2, d3, d4):
            return (
                _on_segment(p1, q1, q2)
                or _on_segment(p2, q1, q2)
                or _on_segment(q1, p1, p2)
                or _on_segment(q2, p1, p2)
            )
        return True
    return False


def segment_meets_polygon(a: Point, b: Point, polygon: Sequence[Point]) -> bool:
    """Whether the path from ``a`` to ``b`` touches ``polygon`` (inside or across it).

    >>> square = [(0.4, 0.4), (0.6, 0.4), (0.6, 0.6), (0.4, 0.6)]
    >>> segment_meets_polygon((0.1, 0.5), (0.9, 0.5), square)  # straight through
    True
    >>> segment_meets_polygon((0.1, 0.1), (0.9, 0.1), square)  # passes above
    False
    """
    if point_in_polygon(a, polygon) or point_in_polygon(b, polygon):
        return True
    corners = list(polygon)
    return any(
        segments_intersect(a, b, corners[i], corners[(i + 1) % len(corners)])
        for i in range(len(corners))
    )


def heading_deg(delta: Point) -> float:
    """Angle of a motion vector in the image: 0 = right, 90 = down.

    >>> heading_deg((0, 1)), heading_deg((-1, 0))
    (90.0, 180.0)
    """
    return math.degrees(math.atan2(delta[1], delta[0])) % 360


def angle_between_deg(a: float, b: float) -> float:
    """Smallest angle between two headings, 0..180.

    >>> angle_between_deg(350, 10), angle_between_deg(0, 180)
    (20.0, 180.0)
    """
    difference = abs(a - b) % 360
    return float(min(difference, 360 - difference))


def box_iou(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    """Intersection over union of two ``xyxy`` boxes.

    >>> import numpy as np
    >>> box_iou(np.array([0, 0, 2, 2], np.float32), np.array([1, 0, 3, 2], np.float32))
    0.3333333333333333
    """
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = float(width * height)
    area_a = float((a[2] - a[0]) * (a[3] - a[1]))
    area_b = float((b[2] - b[0]) * (b[3] - b[1]))
    return inter / (area_a + area_b - inter)
