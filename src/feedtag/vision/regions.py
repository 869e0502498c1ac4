"""Active regions: run the detector on the part of a frame where something happens.

When what the gate saw change is confined to part of the frame, the detector runs on one
stride-aligned crop around it: the changed cells, the objects found earlier that they touch,
and the tracks that moved (each box stretched by its last step, where it is heading), with a
margin. The crop runs at the scale its whole frame would get (its own, smaller model input:
:class:`~feedtag.vision.detector.RegionDetector`), so objects look as they always do to the
model. What it finds replaces the earlier result inside the crop; what lies outside it (a
parked car, a person standing still) is carried forward, and the tracker keeps following it.
The whole frame is analysed again at least every ``full_every_s``, on the gate's first and
refresh runs, and whenever a crop would not save enough (``max_area`` of the whole frame's
model input).

One crop, not several: the batch scheduler runs frames of equal input shape together, and
every extra shape is one more inference call. The crop geometry is written here by hand; it
is a few lines of box arithmetic that no library offers in this form.

>>> import numpy as np
>>> changed = np.zeros((45, 80), bool); changed[10:14, 20:26] = True  # 48 x 32 pixels moved
>>> planner = RegionPlanner((416, 32), full_every_s=4.0, max_area=0.6, margin=0.04)
>>> before = Detections.empty()
>>> planner.plan(0.0, "first", changed, (640, 360), before=before, moved=before) is None
True
>>> planner.plan(1.0, "changed", changed, (640, 360), before=before, moved=before)
Crop(x0=98, y0=32, x1=295, y1=229, scale=0.65)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from feedtag.core import Detections
from feedtag.vision.detector import Image
from feedtag.vision.gate import GATE_STEP

#: a box carried forward from before lies mostly outside the crop: less than this share of
#: its area inside it (one mostly inside was looked for again, and is gone if not found)
CARRY_MAX_INSIDE: Final = 0.5
#: a box found at the crop's edge that lies at least this much inside a box carried forward
#: is that object cut by the edge
CUT_MIN_INSIDE: Final = 0.5
#: how close to the crop's inner edge (frame pixels) a box is cut by it
EDGE_PX: Final = 2.0
#: the smallest crop input side, in strides (capped by the frame's): a few strides of context
#: around an object, and fewer tiny shapes for the batch scheduler to run apart
MIN_SIDE_STRIDES: Final = 4
#: gate decisions that always analyse the whole frame
WHOLE_FRAME_REASONS: Final = frozenset({"first", "refresh"})

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Crop:
    """The part of a frame the detector runs on, in frame pixels, at ``scale`` model pixels
    per frame pixel."""

    x0: int
    y0: int
    x1: int
    y1: int
    scale: float

    def cut(self, image: Image) -> Image:
        """The crop of ``image`` (a view, not a copy)."""
        return image[self.y0 : self.y1, self.x0 : self.x1]

    def to_frame(self, detections: Detections) -> Detections:
        """``detections`` found in the crop, with their boxes in frame pixels."""
        offset = np.array([self.x0, self.y0, self.x0, self.y0], np.float32)
        return Detections(detections.xyxy + offset, detections.confidence, detections.class_id)

    def inside_share(self, xyxy: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """For each ``(N, 4)`` box, the share of its area inside the crop."""
        rect = np.array([[self.x0, self.y0, self.x1, self.y1]], np.float32)
        return share_inside(xyxy, rect)[:, 0]

    def merge(
        self, found: Detections, before: Detections, frame_size: tuple[int, int]
    ) -> Detections:
        """The frame's result: ``found`` in the crop (frame pixels) and what ``before`` held
        outside it, carried forward without track ids (the tracker matches them again). A
        box found at the crop's inner edge that lies mostly inside a carried box of its class
        is that carried object seen in part (a parked car reaching into the crop): the
        carried box stands for it."""
        kept = before.select(self.inside_share(before.xyxy) < CARRY_MAX_INSIDE)
        if len(kept) and len(found):
            found = found.select(~self._cut_parts(found, kept, frame_size))
        return Detections(
            np.concatenate([found.xyxy, kept.xyxy]),
            np.concatenate([found.confidence, kept.confidence]),
            np.concatenate([found.class_id, kept.class_id]),
        )

    def _cut_parts(
        self, found: Detections, kept: Detections, frame_size: tuple[int, int]
    ) -> npt.NDArray[np.bool_]:
        width, height = frame_size
        xyxy = found.xyxy
        at_edge = (
            ((xyxy[:, 0] <= self.x0 + EDGE_PX) & (self.x0 > 0))
            | ((xyxy[:, 1] <= self.y0 + EDGE_PX) & (self.y0 > 0))
            | ((xyxy[:, 2] >= self.x1 - EDGE_PX) & (self.x1 < width))
            | ((xyxy[:, 3] >= self.y1 - EDGE_PX) & (self.y1 < height))
        )
        same_class = found.class_id[:, None] == kept.class_id[None, :]
        inside = (share_inside(xyxy, kept.xyxy) >= CUT_MIN_INSIDE) & same_class
        cut: npt.NDArray[np.bool_] = at_edge & inside.any(axis=1)
        return cut


def share_inside(
    boxes: npt.NDArray[np.float32], regions: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    """``(M, N)``: the share of each of ``boxes``' area (``(M, 4)`` xyxy) inside each of
    ``regions`` (``(N, 4)``); a box with no area counts as outside.

    >>> share_inside(np.array([[0, 0, 4, 2]], np.float32), np.array([[2, 0, 9, 9]], np.float32))
    array([[0.5]])
    """
    width = np.minimum(boxes[:, None, 2], regions[None, :, 2]) - np.maximum(
        boxes[:, None, 0], regions[None, :, 0]
    )
    height = np.minimum(boxes[:, None, 3], regions[None, :, 3]) - np.maximum(
        boxes[:, None, 1], regions[None, :, 1]
    )
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-6)
    share: npt.NDArray[np.float64] = (inter / area[:, None]).astype(np.float64)
    return share


def active_box(
    changed: npt.NDArray[np.bool_] | None,
    before: Detections,
    moved: Detections,
    frame_size: tuple[int, int],
    *,
    margin_px: float,
    cell: int = GATE_STEP,
) -> Box | None:
    """Where something happens: the changed cells (each ``cell`` pixels square), the boxes of
    ``before`` they touch, and the boxes of ``moved`` tracks stretched by their last step
    (``moved`` holds each box shifted by it: see :func:`heading`), grown by ``margin_px`` and
    clipped to the frame. None when nothing changed and nothing moved.

    >>> changed = np.zeros((45, 80), bool); changed[2, 3] = True
    >>> active_box(changed, Detections.empty(), Detections.empty(), (640, 360), margin_px=4)
    (20.0, 12.0, 36.0, 28.0)
    """
    boxes: list[npt.NDArray[np.float32]] = []
    if changed is not None and changed.any():
        rows = np.flatnonzero(changed.any(axis=1))
        cols = np.flatnonzero(changed.any(axis=0))
        area = np.array(
            [cols[0] * cell, rows[0] * cell, (cols[-1] + 1) * cell, (rows[-1] + 1) * cell],
            np.float32,
        )
        boxes.append(area[None])
        cells = np.argwhere(changed).astype(np.float32) * cell
        boxes.append(before.xyxy[_touching(before.xyxy, cells, cell)])
    if len(moved):
        boxes.append(moved.xyxy)
    union = np.concatenate(boxes) if boxes else np.empty((0, 4), np.float32)
    if not len(union):
        return None
    width, height = frame_size
    return (
        max(0.0, float(union[:, 0].min()) - margin_px),
        max(0.0, float(union[:, 1].min()) - margin_px),
        min(float(width), float(union[:, 2].max()) + margin_px),
        min(float(height), float(union[:, 3].max()) + margin_px),
    )


def _touching(
    xyxy: npt.NDArray[np.float32], cells: npt.NDArray[np.float32], cell: int
) -> npt.NDArray[np.bool_]:
    """Which boxes overlap at least one changed cell (``cells``: (row, col) corners in
    pixels)."""
    if not len(xyxy) or not len(cells):
        return np.zeros(len(xyxy), bool)
    y, x = cells[:, 0][None], cells[:, 1][None]
    hit = (
        (x < xyxy[:, 2:3])
        & (x + cell > xyxy[:, 0:1])
        & (y < xyxy[:, 3:4])
        & (y + cell > xyxy[:, 1:2])
    )
    return np.asarray(hit.any(axis=1), bool)


def heading(before: Detections, after: Detections, min_shift_px: float) -> Detections:
    """The tracks of ``after`` that moved more than ``min_shift_px`` since ``before``, each
    box grown to cover where it will be if it keeps going (one more step the same way)."""
    if before.tracker_id is None or after.tracker_id is None or not len(after):
        return Detections.empty()
    previous = dict(zip(before.tracker_id.tolist(), before.xyxy, strict=True))
    grown = []
    for track_id, box in zip(after.tracker_id.tolist(), after.xyxy, strict=True):
        old = previous.get(track_id) if track_id > 0 else None
        if old is None:
            continue
        step = (box[:2] + box[2:]) / 2 - (old[:2] + old[2:]) / 2
        if float(np.hypot(*step)) <= min_shift_px:
            continue
        ahead = box + np.concatenate([step, step])
        grown.append(
            np.concatenate([np.minimum(box[:2], ahead[:2]), np.maximum(box[2:], ahead[2:])])
        )
    if not grown:
        return Detections.empty()
    count = len(grown)
    return Detections(
        np.array(grown, np.float32), np.ones(count, np.float32), np.zeros(count, np.int32)
    )


def fit_crop(
    box: Box, frame_size: tuple[int, int], grid: tuple[int, int], max_area: float
) -> Crop | None:
    """The crop that holds ``box`` in whole cells of the whole frame's grid of strides, at
    the whole frame's scale (``grid``: ``(long_side, stride)``, see
    :class:`~feedtag.vision.detector.RegionDetector`), so that the model sees an object in
    the crop as it sees it in the whole frame; at least :data:`MIN_SIDE_STRIDES` cells a
    side, centred on ``box``, moved inside the frame where it would stick out. None when its
    input would be more than ``max_area`` of the whole frame's.

    >>> fit_crop((300, 100, 340, 200), (640, 360), (416, 32), 0.6)  # 128 x 128 model pixels
    Crop(x0=246, y0=82, x1=443, y1=279, scale=0.65)
    >>> fit_crop((0, 0, 600, 300), (640, 360), (416, 32), 0.6) is None
    True
    """
    long_side, stride = grid
    width, height = frame_size
    scale = long_side / max(width, height)
    x_span = _span(box[0], box[2], width, scale, stride)
    y_span = _span(box[1], box[3], height, scale, stride)
    whole = _cells(width, scale, stride) * _cells(height, scale, stride)
    if x_span[2] * y_span[2] > max_area * whole:
        return None
    return Crop(x_span[0], y_span[0], x_span[1], y_span[1], scale)


def _cells(length: float, scale: float, stride: int) -> int:
    """Strides of model input that ``length`` frame pixels take."""
    return int(-(-round(length * scale) // stride))


def _span(start: float, end: float, limit: int, scale: float, stride: int) -> tuple[int, int, int]:
    """``(low, high, cells)``: the frame pixels of one side of a crop holding ``start`` to
    ``end``, on the whole frame's grid (its letterbox centres the frame: ``pad`` model pixels
    come first)."""
    whole = _cells(limit, scale, stride)
    pad = (whole * stride - min(whole * stride, round(limit * scale))) // 2
    first = int(np.floor((start * scale + pad) / stride))
    last = int(np.ceil((end * scale + pad) / stride))
    cells = min(whole, max(MIN_SIDE_STRIDES, last - first))
    first -= (cells - (last - first)) // 2  # a crop larger than the box: centred on it
    # the longest side that still scales to ``cells`` strides (letterbox rounds to pixels)
    length = min(limit, int((cells * stride + 0.49) / scale))
    low = min(max(0, round((first * stride - pad) / scale)), limit - length)
    return low, low + length, cells


class RegionPlanner:
    """Per camera: the crop each detector run uses, or None for the whole frame (see the
    module docstring). Not thread-safe: its camera's step calls it under its own lock."""

    def __init__(
        self, grid: tuple[int, int], *, full_every_s: float, max_area: float, margin: float
    ) -> None:
        self.grid = grid
        self.full_every_s = full_every_s
        self.max_area = max_area
        self.margin = margin
        self._last_full_s: float | None = None
        self.crops = 0
        self.whole = 0

    def plan(
        self,
        t_s: float,
        reason: str,
        changed: npt.NDArray[np.bool_] | None,
        frame_size: tuple[int, int],
        *,
        before: Detections,
        moved: Detections,
    ) -> Crop | None:
        """The crop for a frame the gate let through for ``reason``, or None."""
        crop = None
        last = self._last_full_s
        due = last is None or t_s < last or t_s - last >= self.full_every_s
        if not due and reason not in WHOLE_FRAME_REASONS:
            box = active_box(
                changed, before, moved, frame_size, margin_px=self.margin * frame_size[0]
            )
            if box is not None:
                crop = fit_crop(box, frame_size, self.grid, self.max_area)
        if crop is None:
            self._last_full_s = t_s
            self.whole += 1
        else:
            self.crops += 1
        return crop
