"""The INT8 quantization of the default detector, and the check of it against FP32.

Quantization. ONNX Runtime's static QDQ quantizer, INT8 weights per output channel, UINT8
activations, calibrated on 48 frames of vtest.avi and bikes.mp4 letterboxed exactly as at
inference, each in the square and in the 16:9 rectangle (:func:`input_shapes`; the model's
height and width are dynamic). The build's check against FP32 covers those and each clip's
own rectangle, each shape on its own. What was measured in the table below (before the
inputs became rectangular, on the square only; INT8 against FP32 on frames away from the
calibration frames, 40 of vtest.avi and 100 of bikes.mp4, or 40 where marked *; a box
counts when score = objectness x class >= 0.25 and an INT8 box of the same class overlaps
it at IoU >= 0.5; recall / precision; CPU time per 416 image on the 2-core dev machine, one
thread, or two where marked +):

================================================ ============= ============== =========
recipe                                           vtest         bikes          time
================================================ ============= ============== =========
FP32                                             1 / 1         1 / 1          51 ms
MinMax, all in INT8 but decode and output convs  0.987 / 0.997 0.82 / 0.94    21 ms
  + moving-average MinMax                        0.99 / 0.983  0.85 / 0.89
  percentile 99.999 calibration                  1.0 / 0.98    0.98 / 0.86 *
  entropy calibration                            same as MinMax *
  reduce_range; INT8 symmetric activations       0.98 / 0.997  0.80 / 0.91 *
                                                 0.98 / 0.95   0.88 / 0.79 *
  per-tensor weights; any one layer in float     no better than 0.86 / 0.97 *
  16-bit activations everywhere                  0.997 / 0.993 0.98 / 0.96 *  159 ms +
  16-bit only for the convolution outputs        0.997 / 0.993 0.96 / 0.96 *   74 ms +
chosen: first two layers float, clipped ranges   0.99 / 1.0    0.976 / 0.976  24 ms
================================================ ============= ============== =========

The chosen row is what ``tests/vision/test_models.py`` measures on frames calibration never
saw (92 of bikes.mp4); at input size 320 it measures 0.993 / 0.993 and 0.963 / 0.936.

The 16-bit rows (ONNX Runtime has no 16-bit kernels on CPU, hence their time) located the
loss: the convolution outputs *before* LeakyRelu. Each is quantized on its own, and its
MinMax range is set by large negative values (layer 2: -115 .. 39) that LeakyRelu then
shrinks ten-fold, so the positive values, which carry the signal, get a quarter of the 256
steps. Hence the chosen recipe:

- each pre-activation range keeps its calibrated maximum, and its minimum is the one that
  minimises the squared error *after* LeakyRelu on the calibration values (clipping -115 to
  about -48: the clipped values come out as -4.8 instead of at most -11.5);
- the first two convolutions and their activations stay in float: measured alone, each
  accounted for about half of the score error; they are 10% of the multiply-adds;
- the YOLO decode (sigmoid, exp, anchors;
  :data:`~feedtag.vision.modelbuild.darknet.DECODE_NODE_PREFIX`) and the two 1x1 output
  convolutions that feed it stay in float: an 8-bit ``exp`` rounds box sizes coarsely, and
  one 8-bit range shared by the 255 logit channels moves objectness near the threshold by
  whole steps; together they are 2% of the compute.

CPUs without VNNI may lose a little more accuracy with UINT8 x INT8 kernels (ONNX Runtime
suggests ``reduce_range`` there); the manifest records the recipe so that a model built on
one machine can be checked on another.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt
import onnx
from onnxruntime.capi.onnxruntime_inference_collection import InferenceSession
from onnxruntime.quantization.calibrate import CalibrationDataReader, CalibrationMethod
from onnxruntime.quantization.quant_utils import QuantFormat, QuantType
from onnxruntime.quantization.quantize import quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from feedtag.errors import ModelError
from feedtag.files import temporary_beside
from feedtag.vision.decoders import DecodeOptions, ModelDetections, decoder_for, pairwise_iou
from feedtag.vision.letterbox import input_shape, letterbox
from feedtag.vision.modelbuild import darknet
from feedtag.vision.modelbuild.calibration import Image
from feedtag.vision.registry import (
    DEFAULT_INPUT_SIZE,
    INPUT_NAME,
    INPUT_STRIDE,
    LAYOUT_YOLO_DECODED,
    Progress,
)

log = logging.getLogger(__name__)

#: the leading convolutions (with their activations) kept in float; see the module docstring
FLOAT_LEADING_CONVOLUTIONS: Final = 2

QUANTIZATION_RECIPE: Final = {
    "tool": "onnxruntime.quantization.quantize_static",
    "format": "QDQ",
    "weights": "int8, per output channel",
    "activations": "uint8, per tensor",
    "calibration": "minmax; LeakyRelu inputs: lower bound minimising the error after LeakyRelu",
    "float": "first 2 convolutions and their activations, output convolutions, YOLO decode",
}

#: below this recall or precision against FP32 on the check frames, the build fails: INT8
#: kernels that misbehave on this CPU, not a rounding difference (the tests hold 416 to 0.95)
MIN_AGREEMENT: Final = 0.85

#: calibration values per frame and pre-activation tensor on which lower bounds are chosen
_RANGE_SAMPLES_PER_FRAME: Final = 4096

_RANGE_CANDIDATES: Final = 40

FloatArray = npt.NDArray[np.float32]


def input_shapes(frame: Image, size: int, *, own: bool = True) -> list[tuple[int, int]]:
    """The ``(width, height)`` inputs a frame is checked at: the square ``size``, the 16:9
    rectangle (most cameras), and with ``own`` the frame's own rectangle
    (:func:`~feedtag.vision.letterbox.input_shape`), each once. Calibration uses the first
    two: adding the clips' own rectangles (416x320, 416x192) measured worse INT8 agreement
    on bikes.mp4 in the square (precision 0.939 against 0.962; docs/performance.md).

    >>> import numpy as np
    >>> input_shapes(np.zeros((576, 768, 3), np.uint8), 416)
    [(416, 416), (416, 256), (416, 320)]
    """
    height, width = frame.shape[:2]
    shapes = [(size, size), input_shape(16, 9, size, INPUT_STRIDE)]
    if own:
        shapes.append(input_shape(int(width), int(height), size, INPUT_STRIDE))
    return list(dict.fromkeys(shapes))


class ShapedFrame(NamedTuple):
    """A frame and the ``(width, height)`` input it is letterboxed into."""

    frame: Image
    shape: tuple[int, int]

    def tensor(self) -> FloatArray:
        """The ``(1, 3, H, W)`` model input (made when needed: 150 of them are 250 MB)."""
        return letterbox(self.frame, self.shape).tensor[None]


def letterboxed_inputs(
    frames: Sequence[Image], size: int, *, own: bool = True
) -> list[ShapedFrame]:
    """Every frame at each of its :func:`input_shapes`."""
    return [
        ShapedFrame(frame, shape)
        for frame in frames
        for shape in input_shapes(frame, size, own=own)
    ]


class _LetterboxedFrames(CalibrationDataReader):
    """Feeds the quantizer letterboxed inputs, one per batch, reporting progress."""

    def __init__(self, inputs: Sequence[ShapedFrame], progress: Progress) -> None:
        self._inputs = inputs
        self._progress = progress
        self._next = 0

    # The base class annotates ``-> dict`` but documents None as the end of the data.
    def get_next(self) -> dict[str, FloatArray] | None:  # type: ignore[override]
        if self._next >= len(self._inputs):
            return None
        tensor = self._inputs[self._next].tensor()
        self._next += 1
        self._progress("calibrate", self._next, len(self._inputs))
        return {INPUT_NAME: tensor}


def quantize(
    fp32_path: Path, target: Path, frames: Sequence[Image], size: int, report: Progress
) -> None:
    """The recipe of the module docstring, into ``target`` (atomically)."""
    partial = temporary_beside(target)
    try:
        with tempfile.TemporaryDirectory(prefix="feedtag-quantize-") as scratch:
            # shape inference, as ONNX Runtime asks for; its graph optimizations are skipped
            # because they rename nodes, and the recipe names nodes
            prepared = Path(scratch) / "prepared.onnx"
            quant_pre_process(fp32_path, prepared, skip_optimization=True, skip_symbolic_shape=True)
            model = onnx.load(str(prepared))
            in_float = _float_nodes(model)
            inputs = letterboxed_inputs(frames, size, own=False)
            ranges = _preactivation_ranges(model, in_float, inputs, report)
            quantize_static(
                prepared,
                partial,
                _LetterboxedFrames(inputs, report),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=sorted(in_float),
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"TensorQuantOverrides": ranges},
            )
        report("quantize", 1, 1)
        partial.replace(target)
    except ModelError:
        raise
    except Exception as exc:  # the quantizer raises anything; one error type leaves here
        raise ModelError(f"quantizing {target.name} failed: {exc!r}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def _float_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes the recipe keeps in float: the decode, the convolutions feeding
    it, and the first :data:`FLOAT_LEADING_CONVOLUTIONS` convolutions with their
    activations."""
    nodes = list(model.graph.node)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    keep = {node.name for node in nodes if node.name.startswith(darknet.DECODE_NODE_PREFIX)}
    convolutions = [node for node in nodes if node.op_type == "Conv"]
    for conv in convolutions:
        if any(c.name in keep for c in consumers.get(conv.output[0], [])):
            keep.add(conv.name)
    for conv in convolutions[:FLOAT_LEADING_CONVOLUTIONS]:
        keep.add(conv.name)
        keep.update(c.name for c in consumers.get(conv.output[0], []) if c.op_type != "Conv")
    return keep


def _preactivation_ranges(
    model: onnx.ModelProto,
    in_float: set[str],
    inputs: Sequence[ShapedFrame],
    report: Progress,
) -> dict[str, list[dict[str, Any]]]:
    """Quantization ranges for quantized convolution outputs that feed a LeakyRelu: the
    calibrated maximum, and the minimum that minimises the squared error after LeakyRelu."""
    slopes: dict[str, float] = {}
    for node in model.graph.node:
        if node.op_type == "LeakyRelu" and node.name not in in_float:
            alpha = next((a.f for a in node.attribute if a.name == "alpha"), 0.01)
            slopes[node.input[0]] = float(alpha)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in slopes:
        probe.graph.output.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        )
    session = InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = list(slopes)
    rng = np.random.default_rng(0)  # a fixed sample: the same footage builds the same model
    samples: dict[str, list[FloatArray]] = {name: [] for name in names}
    low = dict.fromkeys(names, np.inf)
    high = dict.fromkeys(names, -np.inf)
    for done, shaped in enumerate(inputs, start=1):
        feed = {INPUT_NAME: shaped.tensor()}
        for name, value in zip(names, session.run(names, feed), strict=True):
            flat = np.asarray(value, np.float32).ravel()
            low[name] = min(low[name], float(flat.min()))
            high[name] = max(high[name], float(flat.max()))
            samples[name].append(rng.choice(flat, _RANGE_SAMPLES_PER_FRAME))
        report("ranges", done, len(inputs))
    return {
        name: [
            {
                "rmin": np.float32(
                    leaky_lower_bound(
                        np.concatenate(samples[name]), low[name], high[name], slopes[name]
                    )
                ),
                "rmax": np.float32(high[name]),
            }
        ]
        for name in names
    }


def leaky_lower_bound(values: FloatArray, low: float, high: float, slope: float) -> float:
    """The lower end of an 8-bit range ``[bound, high]`` for a LeakyRelu input that
    minimises the mean squared error of ``leaky(quantized(values))``.

    Values below the bound are clipped to it, but after LeakyRelu a clipping error shrinks by
    ``slope``; a tighter range gives the positive values finer steps.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> values = np.concatenate([rng.normal(0, 2, 10000), [-100.0]]).astype(np.float32)
    >>> -100 < leaky_lower_bound(values, -100.0, float(values.max()), 0.1) < -5
    True
    """
    if low >= 0:
        return low
    exact = np.where(values > 0, values, slope * values)
    best_error, best_bound = np.inf, low
    for bound in np.linspace(low, low / 20, _RANGE_CANDIDATES):
        step = (high - bound) / 255
        zero = np.round(-bound / step)
        quantized = (np.clip(np.round(values / step) + zero, 0, 255) - zero) * step
        error = float(np.mean((np.where(quantized > 0, quantized, slope * quantized) - exact) ** 2))
        if error < best_error:
            best_error, best_bound = error, float(bound)
    return best_bound


def check_agreement(
    fp32_path: Path, int8_path: Path, frames: Sequence[Image], size: int
) -> dict[str, Any]:
    """Compare the INT8 model with FP32 on held-out frames at every input shape they are
    run at (:func:`input_shapes`; score >= 0.25, same class, IoU >= 0.5); fail the build
    when the square, the 16:9 rectangle or all shapes together fall below
    :data:`MIN_AGREEMENT`. The overall figures and those of each shape (``by_shape``, keyed
    ``"416x256"``) are returned for the manifest; a clip's own rectangle is recorded but
    does not fail the build on its own: 8 frames of bikes.mp4 at 416x192 hold about ten
    boxes, where one box is 10%."""
    sessions = [
        InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for path in (fp32_path, int8_path)
    ]
    counts: dict[str, list[int]] = {}  # shape -> [frames, matched, reference, candidate]
    for shaped in letterboxed_inputs(frames, size):
        feed = {INPUT_NAME: shaped.tensor()}
        ref, got = (
            decode_yolo(np.asarray(s.run(None, feed)[0], np.float32), input_size=size)[0]
            for s in sessions
        )
        tally = counts.setdefault(f"{shaped.shape[0]}x{shaped.shape[1]}", [0, 0, 0, 0])
        for position, value in enumerate(
            (1, count_matches(ref, got), len(ref.xyxy), len(got.xyxy))
        ):
            tally[position] += value
    by_shape = {shape: _agreement(*tally) for shape, tally in counts.items()}
    total = _agreement(*(sum(column) for column in zip(*counts.values(), strict=True)))
    result = {**total, "by_shape": by_shape}
    log.info("INT8 against FP32 at %d on held-out frames: %s", size, result)
    gating = {f"{w}x{h}" for w, h in input_shapes(frames[0], size, own=False)} if frames else set()
    judged = [("all shapes", total), *((k, v) for k, v in by_shape.items() if k in gating)]
    worst = min(judged, key=lambda item: min(item[1]["recall"], item[1]["precision"]))
    if min(worst[1]["recall"], worst[1]["precision"]) < MIN_AGREEMENT:
        int8_path.unlink(missing_ok=True)
        raise ModelError(
            f"the INT8 model at {size} agrees with FP32 at input {worst[0]} on only recall"
            f" {worst[1]['recall']:.2f}, precision {worst[1]['precision']:.2f} on this"
            " machine; use precision fp32"
        )
    return result


def _agreement(frames: int, matched: int, reference: int, candidate: int) -> dict[str, Any]:
    recall = matched / reference if reference else 1.0
    precision = matched / candidate if candidate else 1.0
    return {"frames": frames, "recall": round(recall, 3), "precision": round(precision, 3)}


def count_matches(reference: ModelDetections, candidate: ModelDetections, iou: float = 0.5) -> int:
    """How many boxes of ``reference`` pair one-to-one with a box of ``candidate`` of the same
    class overlapping it by IoU >= ``iou`` (greedy, largest overlap first).

    >>> import numpy as np
    >>> a = ModelDetections(np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32),
    ...                     np.ones(2, np.float32), np.array([0, 0], np.int32))
    >>> b = ModelDetections(np.array([[1, 0, 11, 10]], np.float32), np.ones(1, np.float32),
    ...                     np.array([0], np.int32))
    >>> count_matches(a, b), count_matches(a, b._replace(class_id=np.array([1], np.int32)))
    (1, 0)
    """
    if len(reference.xyxy) == 0 or len(candidate.xyxy) == 0:
        return 0
    overlap = pairwise_iou(reference.xyxy.astype(np.float64), candidate.xyxy.astype(np.float64))
    overlap[reference.class_id[:, None] != candidate.class_id[None, :]] = 0
    matches = 0
    while overlap.size and overlap.max() >= iou:
        row, column = np.unravel_index(int(overlap.argmax()), overlap.shape)
        overlap[row, :] = 0
        overlap[:, column] = 0
        matches += 1
    return matches


def decode_yolo(
    output: FloatArray,
    conf: float = 0.25,
    iou: float = 0.45,
    *,
    input_size: int = DEFAULT_INPUT_SIZE,
    max_detections: int = 300,
) -> list[ModelDetections]:
    """Boxes in model-input pixels from a ``yolo-decoded`` output ``[B, N, 5 + C]``, one
    result per image: each row keeps its best class, score = objectness x class probability
    ``>= conf``, then per-class NMS at ``iou`` (the backends' decoder,
    :mod:`feedtag.vision.decoders`, so that tests measure what inference does).

    >>> import numpy as np
    >>> rows = np.array([[[50, 50, 20, 40, 0.9, 0.9, 0.1],   # kept
    ...                   [52, 50, 20, 40, 0.8, 0.9, 0.1],   # overlaps the first: suppressed
    ...                   [52, 50, 20, 40, 0.8, 0.1, 0.9],   # same place, other class: kept
    ...                   [10, 10, 5, 5, 0.2, 0.9, 0.1]]],   # below conf
    ...                 np.float32)
    >>> found = decode_yolo(rows)[0]
    >>> found.class_id.tolist(), found.xyxy[0].tolist()
    ([0, 1], [40.0, 30.0, 60.0, 70.0])
    """
    if output.ndim != 3 or output.shape[2] < 6:
        raise ValueError(f"expected output shape (B, N, 5 + C), got {output.shape}")
    options = DecodeOptions(
        num_classes=int(output.shape[2]) - 5,
        input_size=input_size,
        confidence_threshold=conf,
        iou_threshold=iou,
        max_detections=max_detections,
    )
    return decoder_for(LAYOUT_YOLO_DECODED).decode([output], options)
