"""Output decoders: each layout on a small ONNX graph built here, so that a box drawn into a
frame must come out at the frame's coordinates after letterbox, inference, decoding and NMS;
layout mismatches; the NMS and selection tables.

The graph (:func:`square_finder`) finds the white rectangle in the letterboxed input with
plain ONNX operators and writes it as one detection row in the layout under test, beside a
lower-scoring near-duplicate that NMS must remove and constant rows at known input positions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from feedtag.errors import DetectorError
from feedtag.vision import decoders
from feedtag.vision.decoders import (
    DECODERS,
    DecodeOptions,
    InputFormat,
    YoloXRaw,
    decoder_for,
    non_max_suppression,
    select_detections,
)
from feedtag.vision.onnx_backend import OnnxDetector

CLASSES = ("person", "car", "bicycle")
SIZE = 128  # model input side: small and divisible by YOLOX's largest stride
FRAME_W, FRAME_H = 256, 144  # letterboxed at scale 0.5 with 28 grey rows above and below
SQUARE = (64.0, 40.0, 160.0, 100.0)  # the white rectangle, frame pixels
SQUARE_CLASS = 1

# Constant rows: (cx, cy, w, h) in input pixels, objectness, class, class probability.
CONSTANT_BOX = (32.0, 48.0, 32.0, 24.0)  # input (16, 36, 48, 60) -> frame (32, 16, 96, 64)
CONSTANT_FRAME_XYXY = (32.0, 16.0, 96.0, 64.0)
MARGIN_BOX = (20.0, 11.0, 20.0, 18.0)  # input y 2..20: all in the grey margin above the frame
CONSTANT_ROWS = (
    (CONSTANT_BOX, 0.75, 0, 0.8),  # score 0.6: kept
    (CONSTANT_BOX, 0.5, 2, 0.2),  # score 0.1: under the threshold
    (MARGIN_BOX, 0.9, 2, 0.9),  # score 0.81, but it lies in the margin: dropped
)
# YOLOX raw puts each constant row in a grid cell: (stride, gx, gy) per row above
YOLOX_CELLS = ((16, 3, 2), (32, 1, 3), (8, 15, 15))


def yolox_row_index(stride: int, gx: int, gy: int, size: int = SIZE) -> int:
    """Row of a YOLOX cell, written out independently of the decoder: strides 8, 16, 32 in
    turn, each grid row by row."""
    offset = 0
    for level in (8, 16, 32):
        side = size // level
        if level == stride:
            return offset + gy * side + gx
        offset += side * side
    raise ValueError(stride)


def yolox_row_count(size: int = SIZE) -> int:
    return sum((size // stride) ** 2 for stride in (8, 16, 32))


def frame_with_square(xyxy: Sequence[float] = SQUARE, width: int = FRAME_W, height: int = FRAME_H):
    image = np.zeros((height, width, 3), np.uint8)
    x1, y1, x2, y2 = (int(v) for v in xyxy)
    image[y1:y2, x1:x2] = 255
    return image


class _Graph:
    """A few helpers over onnx.helper: each op returns the name of its output."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self._count = 0

    def const(self, value: object, dtype: type = np.float32) -> str:
        name = self._name("const")
        tensor = numpy_helper.from_array(np.asarray(value, dtype), name)
        self.nodes.append(helper.make_node("Constant", [], [name], value=tensor))
        return name

    def op(self, kind: str, *inputs: str, **attributes: object) -> str:
        name = self._name(kind.lower())
        self.nodes.append(helper.make_node(kind, list(inputs), [name], **attributes))
        return name

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"


def square_finder(
    path: Path,
    layout: str,
    *,
    num_classes: int = len(CLASSES),
    square_class: int = SQUARE_CLASS,
    batch: int | str = "N",
    size: int | str = SIZE,
    pixel_scale: float = 1.0,
    input_dtype: int = TensorProto.FLOAT,
    reshape_output: Sequence[int] | None = None,
    constant_rows: Sequence[tuple[tuple[float, ...], float, int, float]] = CONSTANT_ROWS,
) -> Path:
    """An ONNX model that finds the white rectangle in its input and reports it in ``layout``.

    The rectangle's box comes from the pixels (channel 0 above 0.75 of white): x1 is the
    first white column, x2 one past the last. It is written with objectness 1 for
    ``square_class``, followed by a copy shifted 1 pixel right with objectness 0.8, and by
    ``constant_rows``. ``layout`` is one of the registered names. ``reshape_output`` reshapes
    the output at the end: a fixed shape there breaks on any other batch, a run-time fault.
    """
    g = _Graph()
    pixels = "images"
    if input_dtype != TensorProto.FLOAT:
        pixels = g.op("Cast", "images", to=TensorProto.FLOAT)
    channel = g.op(
        "Slice", pixels, g.const([0], np.int64), g.const([1], np.int64), g.const([1], np.int64)
    )
    mask = g.op("Cast", g.op("Greater", channel, g.const(0.75 * pixel_scale)), to=TensorProto.FLOAT)
    side = SIZE if isinstance(size, str) else size
    steps = np.arange(side, dtype=np.float32)

    def extent(axis: int) -> tuple[str, str]:
        shape = [1, 1, 1, side] if axis == 3 else [1, 1, side, 1]
        past = g.const((steps + 1).reshape(shape))
        before_end = g.const((side - steps).reshape(shape))
        high = g.op("ReduceMax", g.op("Mul", mask, past), axes=[1, 2, 3], keepdims=0)
        low = g.op(
            "Sub",
            g.const(float(side)),
            g.op("ReduceMax", g.op("Mul", mask, before_end), axes=[1, 2, 3], keepdims=0),
        )
        return low, high

    def column(name: str) -> str:  # [B] -> [B, 1]
        return g.op("Unsqueeze", name, g.const([1], np.int64))

    (x1, x2), (y1, y2) = extent(3), extent(2)
    half = g.const(0.5)
    cx = g.op("Mul", g.op("Add", x1, x2), half)
    cy = g.op("Mul", g.op("Add", y1, y2), half)
    w = g.op("Max", g.op("Sub", x2, x1), g.const(1.0))
    h = g.op("Max", g.op("Sub", y2, y1), g.const(1.0))
    obj = column(g.op("ReduceMax", mask, axes=[1, 2, 3], keepdims=0))
    zeros = g.op("Mul", obj, g.const(0.0))  # [B, 1]: broadcasts constants to the batch
    one_hot = np.eye(num_classes, dtype=np.float32)[square_class][None]
    classes = g.op("Add", g.const(one_hot), zeros)  # [B, C]

    def dynamic_row(shift: float, objectness: str, cell: tuple[int, int, int] | None) -> str:
        x = g.op("Add", cx, g.const(shift))
        box = [column(x), column(cy), column(w), column(h)]
        if layout == "yolox":  # the inverse of YOLOX's grid decoding, cell by cell
            stride, gx, gy = cell or (8, 0, 0)
            s = g.const(float(stride))
            box = [
                g.op("Sub", g.op("Div", box[0], s), g.const(float(gx))),
                g.op("Sub", g.op("Div", box[1], s), g.const(float(gy))),
                g.op("Log", g.op("Div", box[2], s)),
                g.op("Log", g.op("Div", box[3], s)),
            ]
        if layout == "yolov8":
            parts = [*box, g.op("Mul", classes, objectness)]
        else:
            parts = [*box, objectness, classes]
        return g.op("Unsqueeze", g.op("Concat", *parts, axis=1), g.const([1], np.int64))

    first = dynamic_row(0.0, obj, (8, 0, 0))
    second = dynamic_row(1.0, g.op("Mul", obj, g.const(0.8)), (8, 1, 0))
    constants = _constant_block(layout, num_classes, constant_rows)
    rows = g.op(
        "Concat",
        first,
        second,
        g.op("Add", g.const(constants), g.op("Unsqueeze", zeros, g.const([2], np.int64))),
        axis=1,
    )
    if layout == "yolov8":
        rows = g.op("Transpose", rows, perm=[0, 2, 1])
    if reshape_output is not None:
        rows = g.op("Reshape", rows, g.const(reshape_output, np.int64))
    g.nodes.append(helper.make_node("Identity", [rows], ["output0"]))

    image_input = helper.make_tensor_value_info("images", input_dtype, [batch, 3, size, size])
    output = helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["d0", "d1", "d2"])
    graph = helper.make_graph(g.nodes, "square_finder", [image_input], [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _constant_block(
    layout: str, num_classes: int, rows: Sequence[tuple[tuple[float, ...], float, int, float]]
) -> np.ndarray:
    """``[1, M, K]`` constant rows in ``layout``; for raw YOLOX the whole rest of the grid."""
    encoded = []
    for (cx, cy, w, h), objectness, class_id, probability in rows:
        scores = np.zeros(num_classes, np.float32)
        scores[class_id] = probability
        if layout == "yolov8":
            encoded.append([cx, cy, w, h, *(scores * objectness)])
        else:
            encoded.append([cx, cy, w, h, objectness, *scores])
    if layout != "yolox":
        return np.array(encoded, np.float32).reshape(1, len(encoded), -1)
    block = np.zeros((yolox_row_count() - 2, 5 + num_classes), np.float32)
    for row, (stride, gx, gy) in zip(encoded, YOLOX_CELLS, strict=False):
        cx, cy, w, h, *rest = row
        raw = [cx / stride - gx, cy / stride - gy, math.log(w / stride), math.log(h / stride)]
        block[yolox_row_index(stride, gx, gy) - 2] = [*raw, *rest]  # the 2 dynamic rows lead
    return block[None]


LAYOUT_FORMATS = {
    "yolo-decoded": 1.0,
    "yolox-decoded": 255.0,  # BGR 0..255: the white threshold scales with it
    "yolox": 255.0,
    "yolov8": 1.0,
}


def graph_layout(layout: str) -> str:
    """The row encoding a registered layout's graph uses."""
    return {"yolox-decoded": "yolo-decoded"}.get(layout, layout)


def finder(tmp_path: Path, layout: str, **kwargs: object) -> Path:
    return square_finder(
        tmp_path / f"{layout}.onnx",
        graph_layout(layout),
        pixel_scale=LAYOUT_FORMATS[layout],
        **kwargs,
    )


# -- each layout end to end -----------------------------------------------------------------


@pytest.mark.parametrize("layout", list(LAYOUT_FORMATS))
def test_known_box_comes_out_at_known_frame_coordinates(tmp_path: Path, layout: str) -> None:
    detector = OnnxDetector(finder(tmp_path, layout), CLASSES, layout=layout)
    (found,) = detector.detect([frame_with_square()])
    # the rectangle (score 1), the constant box of class 0 (0.6); not the shifted duplicate
    # (NMS), the 0.1 box (threshold) nor the box in the letterbox margin (clipped away)
    assert found.class_id.tolist() == [SQUARE_CLASS, 0]
    assert found.confidence == pytest.approx([1.0, 0.6], abs=1e-5)
    assert found.xyxy[0] == pytest.approx(SQUARE, abs=1.0)
    assert found.xyxy[1] == pytest.approx(CONSTANT_FRAME_XYXY, abs=1e-3)


@pytest.mark.parametrize("layout", list(LAYOUT_FORMATS))
def test_box_follows_the_square_in_frames_of_other_shapes(tmp_path: Path, layout: str) -> None:
    detector = OnnxDetector(
        finder(tmp_path, layout), CLASSES, layout=layout, classes={SQUARE_CLASS}
    )
    cases = [
        (frame_with_square((10, 10, 50, 90), 200, 300), (10, 10, 50, 90)),  # portrait: side bars
        (frame_with_square((300, 200, 500, 260), 640, 360), (300, 200, 500, 260)),  # shrunk 5x
        (frame_with_square((8, 8, 40, 24), 64, 48), (8, 8, 40, 24)),  # enlarged 2x
    ]
    found = detector.detect([image for image, _ in cases])
    for detections, (image, expected) in zip(found, cases, strict=True):
        assert detections.class_id.tolist() == [SQUARE_CLASS]
        height, width = image.shape[:2]
        tolerance = max(1.0, 1.5 / min(SIZE / width, SIZE / height))  # a resized pixel, and some
        assert detections.xyxy[0] == pytest.approx(expected, abs=tolerance)


@pytest.mark.parametrize(
    ("built_as", "loaded_as", "num_classes", "message"),
    [
        (
            "yolov8",
            "yolo-decoded",
            3,
            r"'yolo-decoded': expected output shape \[B, N, 5\+C\] with C=3 classes \(8 values per box\), got \(1, 7, 5\)",
        ),
        (
            "yolo-decoded",
            "yolov8",
            3,
            r"'yolov8': expected output shape \[B, 4\+C, N\] or \[B, N, 4\+C\] with C=3 classes \(7 values per box\), got \(1, 5, 8\)",
        ),
        (
            "yolo-decoded",
            "yolox",
            3,
            r"'yolox': expected 336 rows for a 128-pixel input at strides \(8, 16, 32\), got output shape \(1, 5, 8\)",
        ),
        ("yolov8", "yolov8", 80, r"with C=80 classes \(84 values per box\), got \(1, 7, 5\)"),
    ],
)
def test_layout_mismatch_fails_at_load_with_both_shapes(
    tmp_path: Path, built_as: str, loaded_as: str, num_classes: int, message: str
) -> None:
    model = square_finder(tmp_path / "m.onnx", built_as)
    names = [f"class{i}" for i in range(num_classes)]
    with pytest.raises(DetectorError, match=message):
        OnnxDetector(model, names, layout=loaded_as)


# -- decoders on crafted arrays ---------------------------------------------------------------


def _options(**kwargs: object) -> DecodeOptions:
    return DecodeOptions(**{"num_classes": 2, "input_size": 64, **kwargs})


@pytest.mark.parametrize(
    ("layout", "output", "expected"),
    [
        pytest.param(
            "yolo-decoded",
            [[[20, 20, 10, 10, 0.5, 0.2, 0.9], [50, 50, 8, 4, 0.9, 0.9, 0.1]]],
            [((46, 48, 54, 52), 0.81, 0), ((15, 15, 25, 25), 0.45, 1)],
            id="yolo-decoded-obj-times-class",
        ),
        pytest.param(
            "yolov8",  # [B, 4+C, N] with N=3 columns
            np.array(
                [[[20, 20, 10, 10, 0.3, 0.9], [50, 50, 8, 4, 0.1, 0.3], [5, 5, 2, 2, 0.1, 0.1]]]
            ).transpose(0, 2, 1),
            [((15, 15, 25, 25), 0.9, 1), ((46, 48, 54, 52), 0.3, 1)],
            id="yolov8-transposed",
        ),
        pytest.param(
            "yolov8",  # [B, N, 4+C]: a graph transposed on export, N=5 != 4+C
            [[[20, 20, 10, 10, 0.3, 0.9]] * 1 + [[0, 0, 1, 1, 0, 0]] * 4],
            [((15, 15, 25, 25), 0.9, 1)],
            id="yolov8-rows",
        ),
        pytest.param(
            "yolov8",  # N == 4+C: ambiguous, the documented [B, 4+C, N] order wins
            np.array([[[20, 20, 10, 10, 0.3, 0.9]] + [[0, 0, 1, 1, 0, 0]] * 5]).transpose(0, 2, 1),
            [((15, 15, 25, 25), 0.9, 1)],
            id="yolov8-square",
        ),
    ],
)
def test_decoder_table(
    layout: str, output: object, expected: list[tuple[tuple[float, ...], float, int]]
) -> None:
    (found,) = decoder_for(layout).decode([np.asarray(output, np.float32)], _options())
    boxes = np.array([box for box, _, _ in expected], np.float32).reshape(-1, 4)
    assert found.xyxy == pytest.approx(boxes)
    assert found.confidence.tolist() == pytest.approx([score for _, score, _ in expected])
    assert found.class_id.tolist() == [class_id for _, _, class_id in expected]
    assert found.xyxy.dtype == np.float32 and found.confidence.dtype == np.float32
    assert found.class_id.dtype == np.int32


@pytest.mark.parametrize(
    ("stride", "gx", "gy", "raw", "expected_xyxy"),
    [
        (8, 0, 0, (0.5, 0.5, 0.0, 0.0), (0, 0, 8, 8)),
        (8, 3, 1, (0.5, 0.5, math.log(2), 0.0), (20, 8, 36, 16)),
        (16, 2, 3, (0.0, 1.0, 0.0, math.log(0.5)), (24, 60, 40, 68)),
        (32, 1, 0, (0.25, 0.5, 0.0, 0.0), (24, 0, 56, 32)),  # last level, second cell
    ],
)
def test_yolox_grid_and_stride_decoding(
    stride: int, gx: int, gy: int, raw: tuple[float, ...], expected_xyxy: tuple[float, ...]
) -> None:
    rows = np.zeros((1, yolox_row_count(64), 7), np.float32)
    rows[0, yolox_row_index(stride, gx, gy, 64)] = [*raw, 0.9, 0.0, 1.0]
    (found,) = YoloXRaw().decode([rows], _options())
    assert found.xyxy.tolist() == [pytest.approx(expected_xyxy, abs=1e-4)]
    assert found.class_id.tolist() == [1]


def test_non_finite_boxes_are_dropped_without_warnings() -> None:
    rows = np.zeros((1, yolox_row_count(64), 7), np.float32)
    rows[0, 0] = [0.5, 0.5, 1000.0, 0.0, 0.9, 1.0, 0.0]  # exp(1000): inf wide
    rows[0, 1] = [0.5, 0.5, 0.0, 0.0, 0.9, 1.0, 0.0]  # a normal 8x8 box in cell (1, 0)
    (found,) = YoloXRaw().decode([rows], _options())
    assert found.xyxy.tolist() == [[8.0, 0.0, 16.0, 8.0]]
    nan_row = np.array([[[np.nan, 5, 5, 5, 0.9, 1.0, 0.0], [5, 5, 4, 4, 0.9, 1.0, 0.0]]])
    (found,) = decoder_for("yolo-decoded").decode([nan_row], _options())
    assert found.xyxy.tolist() == [[3.0, 3.0, 7.0, 7.0]]


def test_float16_outputs_are_decoded_in_float32() -> None:
    rows = np.array([[[600.25, 40, 20, 10, 1.0, 1.0, 0.0]]], np.float16)  # 600.25 rounds to 600
    (found,) = decoder_for("yolo-decoded").decode([rows], _options(input_size=640))
    assert found.xyxy.dtype == np.float32 and found.confidence.dtype == np.float32
    assert found.xyxy.tolist() == [[590.0, 35.0, 610.0, 45.0]]


@pytest.mark.parametrize(
    ("layout", "outputs", "message"),
    [
        (
            "yolo-decoded",
            [np.zeros((1, 10, 6))],
            r"5\+C\] with C=2 classes \(7 values per box\), got \(1, 10, 6\)",
        ),
        ("yolo-decoded", [np.zeros((10, 7))], r"got \(10, 7\)"),  # no batch dimension
        ("yolov8", [np.zeros((1, 7, 10))], r"\(6 values per box\), got \(1, 7, 10\)"),
        ("yolox", [np.zeros((1, 80, 7))], r"expected 84 rows for a 64-pixel input"),
        ("yolox", [], r"returned no output"),
    ],
)
def test_decoder_rejects_shapes_it_cannot_read(
    layout: str, outputs: list[np.ndarray], message: str
) -> None:
    with pytest.raises(DetectorError, match=message):
        decoder_for(layout).decode(outputs, _options())


def test_registry_names_and_input_conventions() -> None:
    assert list(DECODERS) == ["yolo-decoded", "yolox-decoded", "yolox", "yolov8"]
    formats = {
        name: (d.input_format.channels, d.input_format.pixel_scale) for name, d in DECODERS.items()
    }
    assert formats == {
        "yolo-decoded": ("rgb", 1.0),
        "yolox-decoded": ("bgr", 255.0),
        "yolox": ("bgr", 255.0),
        "yolov8": ("rgb", 1.0),
    }
    with pytest.raises(DetectorError, match="unknown output layout 'ssd'; known: yolo-decoded"):
        decoder_for("ssd")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 0}, "num_classes >= 1, got 0"),
        ({"input_size": 0}, "input_size >= 1, got 0"),
        ({"confidence_threshold": 1.5}, "0 <= confidence_threshold <= 1, got 1.5"),
        ({"iou_threshold": -0.1}, "0 <= iou_threshold <= 1, got -0.1"),
        ({"max_detections": 0}, "max_detections >= 1, got 0"),
    ],
)
def test_decode_options_are_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _options(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": "rgba"}, "'rgb' or 'bgr', got 'rgba'"),
        ({"pixel_scale": 0.0}, "pixel_scale > 0, got 0.0"),
    ],
)
def test_input_format_is_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InputFormat(**kwargs)


# -- selection --------------------------------------------------------------------------------

BOXES = np.array([[10, 10, 4, 4], [40, 40, 4, 4], [60, 10, 4, 4]], np.float32)
SCORES = np.array([[0.25, 0.0], [0.0, 0.7], [0.2499, 0.0]], np.float32)


@pytest.mark.parametrize(
    ("kwargs", "expected_classes", "expected_scores"),
    [
        ({}, [1, 0], [0.7, 0.25]),  # a score equal to the threshold is kept; just under is not
        ({"confidence_threshold": 0.5}, [1], [0.7]),
        ({"classes": frozenset({0})}, [0], [0.25]),
        ({"classes": frozenset()}, [], []),
        ({"max_detections": 1}, [1], [0.7]),
        ({"confidence_threshold": 0.0}, [1, 0, 0], [0.7, 0.25, 0.2499]),
    ],
)
def test_selection_table(
    kwargs: dict[str, object], expected_classes: list[int], expected_scores: list[float]
) -> None:
    found = select_detections(BOXES, SCORES, _options(**kwargs))
    assert found.class_id.tolist() == expected_classes
    assert found.confidence.tolist() == pytest.approx(expected_scores)


# -- NMS --------------------------------------------------------------------------------------

A = [0, 0, 10, 10]
DISJOINT = [
    ([i * 20, 0, i * 20 + 10, 10], score, 0) for i, score in enumerate([0.1, 0.5, 0.3, 0.9, 0.2])
]


@pytest.mark.parametrize(
    ("detections", "iou", "max_detections", "expected"),
    [
        pytest.param([], 0.5, 10, [], id="empty"),
        pytest.param([(A, 0.8, 0), (A, 0.9, 0)], 0.5, 10, [1], id="same-box-same-class"),
        pytest.param([(A, 0.8, 0), (A, 0.9, 1)], 0.5, 10, [1, 0], id="same-box-other-class"),
        pytest.param(
            [(A, 0.9, 0), ([0, 0, 10, 5], 0.8, 0)], 0.5, 10, [0, 1], id="iou-at-threshold-kept"
        ),
        pytest.param(
            [(A, 0.9, 0), ([0, 0, 10, 6], 0.8, 0)], 0.5, 10, [0], id="iou-above-threshold"
        ),
        pytest.param(
            [(A, 0.9, 0), ([5, 0, 15, 10], 0.8, 0), ([10, 0, 20, 10], 0.7, 0)],
            0.3,
            10,
            [0, 2],
            id="suppressed-box-suppresses-nothing",
        ),
        pytest.param([(A, 0.9, 0), (A, 0.9, 0)], 0.5, 10, [0], id="tie-keeps-first"),
        pytest.param(DISJOINT, 0.5, 2, [3, 1], id="max-detections-best-first"),
        pytest.param(
            [([5, 5, 5, 5], 0.9, 0), ([5, 5, 5, 5], 0.8, 0)], 0.5, 10, [0, 1], id="zero-area"
        ),
        pytest.param(
            [([-20, -20, -10, -10], 0.9, 3), ([-20, -20, -10, -11], 0.8, 3)],
            0.5,
            10,
            [0],
            id="negative-coordinates",
        ),
        pytest.param([(A, 0.9, 0), (A, 0.8, 0)], 1.0, 10, [0, 1], id="iou-threshold-1-keeps-all"),
    ],
)
def test_nms_table(
    detections: list[tuple[list[float], float, int]],
    iou: float,
    max_detections: int,
    expected: list[int],
) -> None:
    """``detections`` are (xyxy, confidence, class_id); ``expected`` the kept indices in order."""
    boxes = np.array([box for box, _, _ in detections], np.float32).reshape(-1, 4)
    scores = np.array([score for _, score, _ in detections], np.float32)
    classes = np.array([class_id for _, _, class_id in detections], np.int32)
    assert non_max_suppression(boxes, scores, classes, iou, max_detections).tolist() == expected


def _reference_nms(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, threshold: float
) -> list[int]:
    """The textbook loop, one pair at a time."""

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    kept: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda i: (-scores[i], i)):
        if all(classes[k] != classes[i] or iou(boxes[k], boxes[i]) <= threshold for k in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize(("seed", "block"), [(0, 256), (1, 256), (2, 7), (3, 1), (4, 64)])
def test_nms_matches_the_pairwise_reference(
    monkeypatch: pytest.MonkeyPatch, seed: int, block: int
) -> None:
    """300 boxes in 4 classes against the textbook loop, in blocks of several sizes."""
    monkeypatch.setattr(decoders, "NMS_BLOCK", block)
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 300, (300, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 80, (300, 2))], axis=1).astype(
        np.float64
    )
    scores = rng.uniform(0, 1, 300)
    classes = rng.integers(0, 4, 300)
    kept = non_max_suppression(boxes.astype(np.float32), scores, classes, 0.45, 10_000)
    assert non_max_suppression(boxes, scores, classes, 0.45, 17).tolist() == kept.tolist()[:17]
    assert kept.tolist() == _reference_nms(
        boxes.astype(np.float32).astype(np.float64), scores, classes, 0.45
    )
