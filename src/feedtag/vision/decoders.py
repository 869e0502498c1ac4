"""Output decoders: turn what a detection model returns into boxes, scores and classes.

Every model family lays its output tensor out differently. A decoder knows one layout; they
all sit behind one protocol, :class:`OutputDecoder`, and are registered by layout name in
:data:`DECODERS`, so a backend is told ``layout="yolov8"`` and never looks at a shape itself:

============== ================ ==============================================================
layout         output           rows
============== ================ ==============================================================
yolo-decoded   ``[B, N, 5+C]``  cx, cy, w, h (input pixels), objectness, C class probabilities:
                                feedtag's default model (YOLOv3-tiny), YOLOv5, YOLOv7, and
                                YOLOX exported with its default ``decode_in_inference=True``
yolox-decoded  ``[B, N, 5+C]``  the same rows, but YOLOX's input convention (BGR, 0..255)
yolox          ``[B, N, 5+C]``  raw YOLOX (``decode_in_inference=False``): x, y offsets within
                                the grid cell and log sizes, in stride units, strides 8/16/32
yolov8         ``[B, 4+C, N]``  cx, cy, w, h, then C class scores, no objectness (YOLOv8, v9,
                                v11); ``[B, N, 4+C]`` is accepted too, told apart by ``C``
============== ================ ==============================================================

Decoding is followed by the same steps for every layout (:func:`select_detections`): each box
takes its best class, boxes under the confidence threshold or outside the class filter go,
then per-class non-maximum suppression (:func:`non_max_suppression`) and the
``max_detections`` cap. Boxes stay in model-input pixels; mapping them back to the frame is
the backend's business (:func:`feedtag.vision.letterbox.unletterbox_boxes`).

>>> import numpy as np
>>> rows = np.array([[[50, 40, 20, 10, 0.9, 0.1, 0.8]]], np.float32)  # one box, two classes
>>> (found,) = decoder_for("yolo-decoded").decode([rows], DecodeOptions(2, input_size=64))
>>> found.xyxy.tolist(), [round(float(c), 3) for c in found.confidence], found.class_id.tolist()
([[40.0, 35.0, 60.0, 45.0]], [0.72], [1])
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from feedtag.errors import DetectorError

FloatArray = npt.NDArray[np.float32]

#: at most this many boxes enter NMS per image, the highest scoring first. Ultralytics uses
#: the same bound: a badly calibrated model can put tens of thousands of boxes over the
#: threshold, and NMS time grows with their number.
MAX_NMS_CANDIDATES: Final = 30_000

#: NMS takes the candidates this many at a time, best first (see ``_greedy``): an IoU block
#: of at most 256 x N, which also bounds its memory
NMS_BLOCK: Final = 256

#: YOLOX's three output levels, finest first, as its head concatenates them
YOLOX_STRIDES: Final = (8, 16, 32)


@dataclass(frozen=True, slots=True)
class InputFormat:
    """What a model family expects in its input tensor, beyond the letterbox geometry.

    feedtag letterboxes to RGB on the 0..1 scale (Darknet, YOLOv5, v7, v8); YOLOX is trained on
    BGR 0..255. Fed the wrong one, a model still runs and finds little: the convention travels
    with the layout so that nobody has to remember it.
    """

    channels: Literal["rgb", "bgr"] = "rgb"
    pixel_scale: float = 1.0  # the value of a white pixel

    def __post_init__(self) -> None:
        if self.channels not in ("rgb", "bgr"):
            raise ValueError(f"expected channels 'rgb' or 'bgr', got {self.channels!r}")
        if not self.pixel_scale > 0:
            raise ValueError(f"expected pixel_scale > 0, got {self.pixel_scale!r}")


RGB_0_1: Final = InputFormat("rgb", 1.0)
BGR_0_255: Final = InputFormat("bgr", 255.0)


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """The model's class count and input side, and the selection applied after decoding.

    ``classes``, when given, keeps only those class ids (before NMS, so that a suppressed
    class cannot hide a wanted one). A box is kept when its score is at least
    ``confidence_threshold``; of two boxes of one class overlapping by an IoU *above*
    ``iou_threshold``, the lower scoring one goes.
    """

    num_classes: int
    input_size: int
    confidence_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 300
    classes: frozenset[int] | None = field(default=None)

    def __post_init__(self) -> None:
        checks = (
            (self.num_classes >= 1, "num_classes >= 1", self.num_classes),
            (self.input_size >= 1, "input_size >= 1", self.input_size),
            (
                0 <= self.confidence_threshold <= 1,
                "0 <= confidence_threshold <= 1",
                self.confidence_threshold,
            ),
            (0 <= self.iou_threshold <= 1, "0 <= iou_threshold <= 1", self.iou_threshold),
            (self.max_detections >= 1, "max_detections >= 1", self.max_detections),
        )
        for ok, what, got in checks:
            if not ok:
                raise ValueError(f"expected {what}, got {got!r}")


class ModelDetections(NamedTuple):
    """One image's detections in model-input pixels, highest confidence first."""

    xyxy: FloatArray  # float32 (N, 4)
    confidence: FloatArray  # float32 (N,)
    class_id: npt.NDArray[np.int32]  # int32 (N,)


class OutputDecoder(Protocol):
    """Decodes one layout: the model's outputs for a batch to one result per image."""

    @property
    def name(self) -> str: ...

    @property
    def input_format(self) -> InputFormat: ...

    def decode(
        self, outputs: Sequence[npt.NDArray[Any]], options: DecodeOptions
    ) -> list[ModelDetections]: ...


# -- the layouts ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class YoloDecoded:
    """``[B, N, 5+C]``: cx, cy, w, h in input pixels, objectness, C class probabilities.

    The score of a box for a class is objectness times class probability, as in Darknet;
    class probabilities are taken to be at most 1 (sigmoid or softmax outputs).
    Only the first output is read: YOLOv5's older exports add the raw grids as extra outputs.
    """

    name: str = "yolo-decoded"
    input_format: InputFormat = RGB_0_1

    def decode(
        self, outputs: Sequence[npt.NDArray[Any]], options: DecodeOptions
    ) -> list[ModelDetections]:
        rows = _first_output(outputs, self.name)
        _expect_rows(rows, 5 + options.num_classes, self.name, options, "B, N, 5+C")
        results = []
        for image_rows in rows:
            # class probabilities are at most 1, so a box whose objectness is under the
            # threshold cannot score over it: most rows go here, before the (N, C) product
            candidates = image_rows[image_rows[:, 4] >= options.confidence_threshold]
            scores = candidates[:, 5:] * candidates[:, 4:5]
            results.append(select_detections(candidates[:, :4], scores, options))
        return results


@dataclass(frozen=True, slots=True)
class YoloV8:
    """``[B, 4+C, N]``: cx, cy, w, h, then C class scores; no objectness.

    Ultralytics exports put the box attributes first and the N boxes last. A graph that was
    transposed on export gives ``[B, N, 4+C]``; the two are told apart by which dimension is
    ``4 + C``, and the documented order wins when both are.
    """

    name: str = "yolov8"
    input_format: InputFormat = RGB_0_1

    def decode(
        self, outputs: Sequence[npt.NDArray[Any]], options: DecodeOptions
    ) -> list[ModelDetections]:
        output = _first_output(outputs, self.name)
        width = 4 + options.num_classes
        if output.ndim == 3 and output.shape[1] == width:
            rows = output.transpose(0, 2, 1)  # a view: no copy of the 8400 x 84 floats
        else:
            _expect_rows(output, width, self.name, options, "B, 4+C, N] or [B, N, 4+C")
            rows = output
        return [
            select_detections(rows[i, :, :4], rows[i, :, 4:], options) for i in range(len(rows))
        ]


@dataclass(frozen=True, slots=True)
class YoloXRaw:
    """``[B, N, 5+C]`` before YOLOX's grid decoding (``decode_in_inference=False``).

    The N rows are the cells of the stride-8, 16 and 32 grids, row by row, finest first;
    ``xy = (raw_xy + cell) * stride`` and ``wh = exp(raw_wh) * stride``. Objectness and class
    scores are already sigmoid outputs, so the score is their product.
    """

    name: str = "yolox"
    input_format: InputFormat = BGR_0_255
    strides: tuple[int, ...] = YOLOX_STRIDES

    def decode(
        self, outputs: Sequence[npt.NDArray[Any]], options: DecodeOptions
    ) -> list[ModelDetections]:
        rows = _first_output(outputs, self.name)
        _expect_rows(rows, 5 + options.num_classes, self.name, options, "B, N, 5+C")
        grid, stride = _yolox_grid(self.strides, options.input_size)
        if rows.shape[1] != len(grid):
            raise DetectorError(
                f"layout {self.name!r}: expected {len(grid)} rows for a {options.input_size}-pixel"
                f" input at strides {self.strides}, got output shape {rows.shape}"
            )
        xy = (rows[:, :, 0:2] + grid) * stride
        with np.errstate(over="ignore"):  # an absurd raw size becomes inf, dropped later
            wh = np.exp(rows[:, :, 2:4]) * stride
        boxes = np.concatenate([xy, wh], axis=2)
        scores = rows[:, :, 5:] * rows[:, :, 4:5]
        return [select_detections(boxes[i], scores[i], options) for i in range(len(rows))]


@functools.lru_cache(maxsize=8)
def _yolox_grid(strides: tuple[int, ...], input_size: int) -> tuple[FloatArray, FloatArray]:
    """Cell offsets ``(N, 2)`` (x, y) and the stride of each row ``(N, 1)``: the same for
    every batch of a model, so built once (read-only, shared by every caller)."""
    cells, row_strides = [], []
    for stride in strides:
        side = input_size // stride
        ys, xs = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        row_strides.append(np.full((side * side, 1), stride))
    grid = np.concatenate(cells).astype(np.float32)
    stride_column = np.concatenate(row_strides).astype(np.float32)
    grid.flags.writeable = False
    stride_column.flags.writeable = False
    return grid, stride_column


#: every layout feedtag decodes, by name
DECODERS: Final[Mapping[str, OutputDecoder]] = {
    decoder.name: decoder
    for decoder in (
        YoloDecoded(),
        YoloDecoded(name="yolox-decoded", input_format=BGR_0_255),
        YoloXRaw(),
        YoloV8(),
    )
}


def decoder_for(layout: str | OutputDecoder) -> OutputDecoder:
    """The decoder registered under ``layout``; a decoder object is passed through.

    >>> decoder_for("yolov8").name
    'yolov8'
    >>> decoder_for("yolov4")
    Traceback (most recent call last):
    ...
    feedtag.errors.DetectorError: unknown output layout 'yolov4'; known: yolo-decoded, \
yolox-decoded, yolox, yolov8
    """
    if not isinstance(layout, str):
        return layout
    decoder = DECODERS.get(layout)
    if decoder is None:
        known = ", ".join(DECODERS)
        raise DetectorError(f"unknown output layout {layout!r}; known: {known}")
    return decoder


# -- the steps every layout shares ------------------------------------------------------------


def select_detections(
    cxcywh: npt.NDArray[Any], class_scores: npt.NDArray[Any], options: DecodeOptions
) -> ModelDetections:
    """One image: ``(N, 4)`` centre boxes and ``(N, C)`` class scores to kept detections.

    Each box takes its best class (one label per box, as YOLOv5 and Ultralytics do by
    default); the threshold, the class filter, NMS and the cap follow.

    >>> import numpy as np
    >>> boxes = np.array([[10, 10, 4, 4], [11, 10, 4, 4], [30, 30, 4, 4]], np.float32)
    >>> scores = np.array([[0.9, 0.0], [0.8, 0.0], [0.1, 0.2]], np.float32)
    >>> found = select_detections(boxes, scores, DecodeOptions(2, 64))
    >>> found.xyxy.tolist(), found.class_id.tolist()
    ([[8.0, 8.0, 12.0, 12.0]], [0])
    """
    class_id = np.argmax(class_scores, axis=1)
    confidence = np.take_along_axis(class_scores, class_id[:, None], axis=1)[:, 0]
    # a box with an inf or NaN coordinate (an overflowed exp) cannot be drawn or compared
    keep = (confidence >= options.confidence_threshold) & np.isfinite(cxcywh).all(axis=1)
    if options.classes is not None:
        keep &= np.isin(class_id, np.fromiter(options.classes, np.int64))
    index = np.flatnonzero(keep)
    if len(index) > MAX_NMS_CANDIDATES:
        index = index[np.argsort(-confidence[index], kind="stable")[:MAX_NMS_CANDIDATES]]
    centre, size = cxcywh[index, 0:2], cxcywh[index, 2:4]
    xyxy = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
    scores = confidence[index].astype(np.float32)
    classes = class_id[index].astype(np.int32)
    kept = non_max_suppression(xyxy, scores, classes, options.iou_threshold, options.max_detections)
    return ModelDetections(xyxy[kept], scores[kept], classes[kept])


def non_max_suppression(
    xyxy: npt.NDArray[Any],
    confidence: npt.NDArray[Any],
    class_id: npt.NDArray[Any],
    iou_threshold: float,
    max_detections: int,
) -> npt.NDArray[np.intp]:
    """Greedy per-class NMS: the indices kept, highest confidence first, at most
    ``max_detections``. A box goes when a higher scoring box of its class overlaps it by an
    IoU above ``iou_threshold``; ties in confidence keep the earlier box.

    Hand-written on purpose: torchvision's and OpenCV's (``NMSBoxes``) come with a framework,
    and supervision 0.31's ``box_non_max_suppression`` (which no longer needs OpenCV, and
    keeps the same boxes) builds the ``N x N`` IoU matrix at any N and walks every candidate
    in Python: on 1000 detector-like candidates (clustered around objects) it took 20 ms
    against 1.9 ms here, on 3000, 148 against 14 ms (2-vCPU dev machine). Each class is moved
    to its own region of the plane (the offset trick of torchvision's ``batched_nms``), so one
    pass does every class.

    >>> import numpy as np
    >>> boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [1, 0, 11, 10]], np.float32)
    >>> non_max_suppression(boxes, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]), 0.5, 10)
    array([0, 2])
    """
    if len(xyxy) == 0:
        return np.zeros((0,), np.intp)
    # float64: class offsets reach 80 x the image side, where float32 loses sub-pixel steps
    boxes = np.asarray(xyxy, np.float64)
    span = float(boxes.max() - min(boxes.min(), 0.0)) + 1.0
    boxes = boxes + (np.asarray(class_id, np.float64) * span)[:, None]
    order = np.argsort(-np.asarray(confidence, np.float64), kind="stable")
    kept = _greedy(boxes[order], iou_threshold, max_detections)
    return order[np.array(kept, np.intp)]


def _greedy(boxes: npt.NDArray[np.float64], threshold: float, limit: int) -> list[int]:
    """Greedy NMS over boxes sorted best first, a block of candidates at a time.

    Each block's IoU with every box still in play is one vectorised step; the greedy choice
    inside the block is a loop of cheap boolean operations. A detector's candidates cluster
    around objects, so the first block usually suppresses most of the rest and later blocks
    are small; spread-out boxes cost no more than the full IoU matrix, in bounded memory.
    """
    alive = np.ones(len(boxes), np.bool_)
    kept: list[int] = []
    for start in range(0, len(boxes), NMS_BLOCK):
        tail = np.flatnonzero(alive[start:]) + start  # in play, best first
        rows = tail[tail < start + NMS_BLOCK]  # this block's share of them, a prefix of tail
        if len(rows) == 0:
            continue
        overlaps = pairwise_iou(boxes[rows], boxes[tail]) > threshold
        suppressed = np.zeros(len(tail), np.bool_)
        for row in range(len(rows)):
            if suppressed[row]:
                continue
            kept.append(int(rows[row]))
            if len(kept) == limit:
                return kept
            suppressed |= overlaps[row]
        alive[tail[suppressed]] = False
    return kept


def pairwise_iou(first: npt.NDArray[Any], second: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Pairwise IoU ``(M, N)`` of ``(M, 4)`` and ``(N, 4)`` xyxy boxes, in their dtype; a
    box with no area overlaps nothing.

    >>> import numpy as np
    >>> pairwise_iou(np.array([[0, 0, 2, 2]], np.float64),
    ...              np.array([[1, 0, 3, 2], [0, 0, 0, 0]], np.float64)).tolist()
    [[0.3333333333333333, 0.0]]
    """
    x1, y1, x2, y2 = (first[:, i, None] for i in range(4))
    u1, v1, u2, v2 = (second[None, :, i] for i in range(4))
    width = np.minimum(x2, u2) - np.maximum(x1, u1)
    height = np.minimum(y2, v2) - np.maximum(y1, v1)
    inter: npt.NDArray[Any] = np.maximum(width, 0.0) * np.maximum(height, 0.0)
    area_first = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)
    area_second = np.maximum(u2 - u1, 0.0) * np.maximum(v2 - v1, 0.0)
    union = area_first + area_second - inter
    # a zero-area union (two degenerate boxes) is no overlap, not a division by zero
    iou: npt.NDArray[Any] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return iou


def _first_output(outputs: Sequence[npt.NDArray[Any]], layout: str) -> npt.NDArray[Any]:
    if len(outputs) == 0:
        raise DetectorError(f"layout {layout!r}: the model returned no output")
    # float32 for the arithmetic whatever the model's output type (float16 rounds a box edge
    # at x = 600 to half a pixel); no copy when it is float32 already
    return np.asarray(outputs[0], dtype=np.float32)


def _expect_rows(
    output: npt.NDArray[Any], width: int, layout: str, options: DecodeOptions, pattern: str
) -> None:
    if output.ndim != 3 or output.shape[2] != width:
        raise DetectorError(
            f"layout {layout!r}: expected output shape [{pattern}] with C={options.num_classes}"
            f" classes ({width} values per box), got {tuple(output.shape)}"
        )
