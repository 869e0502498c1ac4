"""feedtag's own Darknet-to-ONNX converter, for the YOLOv3 family (YOLOv3-tiny is the default
detector; see :mod:`feedtag.vision.modelbuild.default_model`). Build tooling: the runtime
detector loads the ONNX file it writes and never imports this module.

It reads a Darknet ``.cfg`` and ``.weights`` pair, folds batch normalization into the
convolutions, and writes an ONNX graph with the YOLO decoding inside it, so that what comes
out is ready to use:

- input ``images``: ``float32 [B, 3, H, W]``, RGB, 0..1, letterboxed on grey 0.5 as Darknet
  does (:func:`feedtag.vision.letterbox.letterbox`); ``B`` is dynamic, ``H`` and ``W`` are
  fixed per exported file, or dynamic (any multiple of 32) with ``dynamic_size``;
- output ``detections``: ``float32 [B, N, 5 + C]``, one row per anchor and grid cell:
  ``cx, cy, w, h`` in input pixels, objectness, then ``C`` class probabilities.

Supported sections: ``net``, ``convolutional`` (batch_normalize, filters, size, stride, pad,
activation leaky/linear/logistic/relu), ``maxpool`` (size, stride, padding), ``route``,
``upsample`` and ``yolo``. Anything else is refused with the line it is on, rather than
converted into a model that silently computes something else.

Decoding follows Darknet's YOLOv3 ``forward_yolo_layer`` and ``get_yolo_box``:
``cx = (col + sigmoid(tx)) * stride``, ``w = exp(tw) * anchor_w``, and sigmoid on
objectness and classes (YOLOv3 uses independent logistic classes, not softmax).

The decode nodes are all named with :data:`DECODE_NODE_PREFIX`, so that the quantizer can
leave them in float: they turn logits into pixels, and an 8-bit ``exp`` would round anchors
away.

>>> cfg = parse_cfg("[net]\\nwidth=32\\nheight=32\\n# comment\\n[maxpool]\\nsize=2\\nstride=2")
>>> [(section.kind, dict(section.options)) for section in cfg]
[('net', {'width': '32', 'height': '32'}), ('maxpool', {'size': '2', 'stride': '2'})]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from feedtag.errors import ModelError

# kept in the registry, which compares it without importing this module; raise it whenever
# the graph this module emits changes, so cached models are rebuilt
from feedtag.vision.registry import CONVERTER_VERSION, INPUT_NAME

#: opset 17 and IR version 8 load in every ONNX Runtime since 1.14, OpenVINO and TensorRT 8.6
OPSET: Final = 17
IR_VERSION: Final = 8
OUTPUT_NAME: Final = "detections"
DECODE_NODE_PREFIX: Final = "yolo_decode"

# Darknet's normalize_cpu divides by sqrt(variance) + 1e-6 (pjreddie's darknet, where these
# weights come from; AlexeyAB's fork uses sqrt(variance + 1e-5), a negligible difference).
_BN_EPSILON: Final = 1e-6
_LEAKY_SLOPE: Final = 0.1

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class CfgSection:
    """One ``[kind]`` section of a Darknet cfg; ``line`` is where its header is (1-based)."""

    kind: str
    options: Mapping[str, str]
    line: int

    def text(self, key: str, default: str | None = None) -> str:
        value = self.options.get(key, default)
        if value is None:
            raise ModelError(f"cfg line {self.line}: [{self.kind}] needs {key}=")
        return value

    def integer(self, key: str, default: int | None = None) -> int:
        raw = self.text(key, None if default is None else str(default))
        try:
            return int(raw)
        except ValueError:
            raise ModelError(
                f"cfg line {self.line}: [{self.kind}] {key}={raw!r} is not an integer"
            ) from None

    def integers(self, key: str, default: Sequence[int] | None = None) -> list[int]:
        if key not in self.options and default is not None:
            return list(default)
        raw = self.text(key)
        try:
            return [int(float(part)) for part in raw.split(",") if part.strip()]
        except ValueError:
            raise ModelError(
                f"cfg line {self.line}: [{self.kind}] {key}={raw!r} is not a list of numbers"
            ) from None


def parse_cfg(text: str) -> list[CfgSection]:
    """Parse Darknet cfg text into sections, in order. ``#`` and ``;`` start comments.

    >>> [s.kind for s in parse_cfg("[net]\\n[convolutional]\\nfilters = 8\\n")]
    ['net', 'convolutional']
    """
    sections: list[CfgSection] = []
    options: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        # Darknet strips every blank from a line before reading it ("mask = 0, 1" works)
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise ModelError(f"cfg line {number}: malformed section header {raw.strip()!r}")
            options = {}
            sections.append(CfgSection(line[1:-1].lower(), options, number))
        elif "=" in line and sections:
            key, _, value = line.partition("=")
            options[key] = value
        else:
            raise ModelError(f"cfg line {number}: expected [section] or key=value, got {raw!r}")
    if not sections or sections[0].kind not in ("net", "network"):
        raise ModelError("cfg must start with a [net] section")
    return sections


@dataclass(frozen=True, slots=True)
class DarknetWeights:
    """A Darknet ``.weights`` file: version header, images seen in training, and the
    parameters as one flat ``float32`` array in layer order."""

    major: int
    minor: int
    revision: int
    seen: int
    values: FloatArray


def read_weights(path: Path) -> DarknetWeights:
    """Read a ``.weights`` file. The header is three ``int32`` (major, minor, revision) then
    ``seen``: ``int64`` from version 0.2 on, ``int32`` before (Darknet's ``load_weights``)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read Darknet weights {path}: {exc.strerror}") from None
    return parse_weights(data, str(path))


def parse_weights(data: bytes, origin: str = "weights") -> DarknetWeights:
    """Parse the bytes of a ``.weights`` file (see :func:`read_weights`).

    >>> import numpy as np
    >>> header = np.array([0, 2, 0], "<i4").tobytes() + np.array([7], "<i8").tobytes()
    >>> w = parse_weights(header + np.ones(3, "<f4").tobytes())
    >>> (w.major, w.minor, w.seen, w.values.tolist())
    (0, 2, 7, [1.0, 1.0, 1.0])
    """
    if len(data) < 16:
        raise ModelError(f"{origin}: {len(data)} bytes is too short for a Darknet header")
    major, minor, revision = (int(v) for v in np.frombuffer(data, "<i4", count=3))
    wide_seen = major * 10 + minor >= 2
    seen_end = 20 if wide_seen else 16
    seen = int(np.frombuffer(data, "<i8" if wide_seen else "<i4", count=1, offset=12)[0])
    body = len(data) - seen_end
    if body % 4:
        raise ModelError(f"{origin}: {body} bytes after the header is not whole float32 values")
    values = np.frombuffer(data, "<f4", offset=seen_end).astype(np.float32)
    return DarknetWeights(major, minor, revision, seen, values)


def convert_darknet(
    cfg_path: Path,
    weights_path: Path,
    *,
    input_size: int | tuple[int, int] | None = None,
    mask_overrides: Mapping[int, Sequence[int]] | None = None,
    dynamic_size: bool = False,
) -> onnx.ModelProto:
    """Convert a Darknet model to an ONNX model with the YOLO decoding built in.

    ``input_size`` is the square side or ``(width, height)`` of the exported input (default:
    the cfg's ``[net]`` width and height); a YOLOv3 cfg works at any multiple of 32.
    ``mask_overrides`` replaces the anchor mask of YOLO layers by their order among the YOLO
    layers (``{1: (1, 2, 3)}`` is the second one), for weights trained with another mask than
    their cfg says. With ``dynamic_size`` the exported height and width are dynamic
    (``[batch, 3, height, width]``): the model then runs at any multiple of 32, and
    ``input_size`` is only the size the graph is checked at.
    """
    try:
        text = cfg_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read Darknet cfg {cfg_path}: {exc}") from None
    return build_onnx(
        parse_cfg(text),
        read_weights(weights_path),
        input_size=input_size,
        mask_overrides=mask_overrides,
        dynamic_size=dynamic_size,
        name=cfg_path.stem,
    )


def build_onnx(
    sections: Sequence[CfgSection],
    weights: DarknetWeights,
    *,
    input_size: int | tuple[int, int] | None = None,
    mask_overrides: Mapping[int, Sequence[int]] | None = None,
    dynamic_size: bool = False,
    name: str = "darknet",
) -> onnx.ModelProto:
    """Build the ONNX model from parsed sections and weights (see :func:`convert_darknet`)."""
    net = sections[0]
    if isinstance(input_size, int):
        width, height = input_size, input_size
    elif input_size is not None:
        width, height = input_size
    else:
        width, height = net.integer("width"), net.integer("height")
    if width < 1 or height < 1:
        raise ModelError(f"input size must be positive, got {width}x{height}")
    if net.integer("channels", 3) != 3:
        raise ModelError("only 3-channel (RGB) Darknet models are supported")
    builder = _GraphBuilder(weights.values, width, height, dict(mask_overrides or {}), dynamic_size)
    builder.run(sections[1:])
    return builder.finish(name)


@dataclass(frozen=True, slots=True)
class _Tensor:
    """A layer's output in the graph: its name and ``C x H x W`` shape (batch is dynamic)."""

    name: str
    channels: int
    height: int
    width: int
    routable: bool = True


@dataclass
class _GraphBuilder:
    values: FloatArray
    net_width: int
    net_height: int
    mask_overrides: dict[int, Sequence[int]]
    dynamic_size: bool = False
    cursor: int = 0
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    layers: list[_Tensor] = field(default_factory=list)
    decoded: list[str] = field(default_factory=list)
    decoded_rows: int = 0
    columns: int = 0
    yolo_count: int = 0

    def run(self, sections: Sequence[CfgSection]) -> None:
        handlers: dict[str, Callable[[int, CfgSection, _Tensor], _Tensor]] = {
            "convolutional": self._convolutional,
            "conv": self._convolutional,
            "maxpool": self._maxpool,
            "max": self._maxpool,
            "route": self._route,
            "upsample": self._upsample,
            "yolo": self._yolo,
        }
        current = _Tensor(INPUT_NAME, 3, self.net_height, self.net_width)
        for index, section in enumerate(sections):
            handler = handlers.get(section.kind)
            if handler is None:
                raise ModelError(
                    f"cfg line {section.line}: [{section.kind}] is not supported "
                    f"(supported: {', '.join(sorted(set(handlers)))})"
                )
            current = handler(index, section, current)
            self.layers.append(current)
        left = self.values.size - self.cursor
        if left:
            raise ModelError(
                f"the weights file has {left} values more than the cfg uses: "
                "cfg and weights do not belong together"
            )
        if not self.decoded:
            raise ModelError("the cfg has no [yolo] layer: nothing to decode")
        unused = sorted(set(self.mask_overrides) - set(range(self.yolo_count)))
        if unused:
            raise ModelError(f"mask override for YOLO layer(s) {unused}, which the cfg lacks")

    def finish(self, name: str) -> onnx.ModelProto:
        spatial: list[int | str] = [self.net_height, self.net_width]
        rows: int | str = self.decoded_rows
        if self.dynamic_size:
            spatial, rows = ["height", "width"], "boxes"
        if len(self.decoded) == 1:
            self._node("Identity", self.decoded, [OUTPUT_NAME], f"{DECODE_NODE_PREFIX}_out")
        else:
            self._node("Concat", self.decoded, [OUTPUT_NAME], f"{DECODE_NODE_PREFIX}_out", axis=1)
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, *spatial])],
            [
                helper.make_tensor_value_info(
                    OUTPUT_NAME, TensorProto.FLOAT, ["batch", rows, self.columns]
                )
            ],
            self.initializers,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=IR_VERSION,
            producer_name="feedtag.vision.modelbuild.darknet",
            producer_version=CONVERTER_VERSION,
        )
        try:
            onnx.checker.check_model(model, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise ModelError(f"the converted graph is not valid ONNX: {exc}") from None
        return model

    # -- sections --------------------------------------------------------------------------

    def _convolutional(self, index: int, section: CfgSection, x: _Tensor) -> _Tensor:
        filters = section.integer("filters", 1)
        size = section.integer("size", 1)
        stride = section.integer("stride", 1)
        pad = size // 2 if section.integer("pad", 0) else section.integer("padding", 0)
        if section.integer("groups", 1) != 1 or section.integer("dilation", 1) != 1:
            raise ModelError(f"cfg line {section.line}: grouped or dilated convolution")
        if filters < 1 or size < 1 or stride < 1:
            raise ModelError(f"cfg line {section.line}: filters, size and stride must be >= 1")
        activation = section.text("activation", "logistic")  # Darknet's default
        batch_norm = section.integer("batch_normalize", 0) != 0
        biases = self._take(filters, section, "biases").astype(np.float64)
        weights_shape = (filters, x.channels, size, size)
        if batch_norm:
            scales = self._take(filters, section, "scales").astype(np.float64)
            mean = self._take(filters, section, "rolling_mean").astype(np.float64)
            variance = self._take(filters, section, "rolling_variance").astype(np.float64)
            factor = scales / (np.sqrt(variance) + _BN_EPSILON)
            kernel = self._take(int(np.prod(weights_shape)), section, "weights")
            folded = kernel.reshape(weights_shape).astype(np.float64) * factor[:, None, None, None]
            bias = biases - mean * factor
        else:
            kernel = self._take(int(np.prod(weights_shape)), section, "weights")
            folded, bias = kernel.reshape(weights_shape).astype(np.float64), biases
        prefix = f"layer{index}_conv"
        w_name = self._constant(f"{prefix}.weight", folded.astype(np.float32))
        b_name = self._constant(f"{prefix}.bias", bias.astype(np.float32))
        out = f"{prefix}_out"
        self._node(
            "Conv",
            [x.name, w_name, b_name],
            [out],
            prefix,
            kernel_shape=[size, size],
            strides=[stride, stride],
            pads=[pad, pad, pad, pad],
        )
        out = self._activation(index, section, activation, out)
        height = (x.height + 2 * pad - size) // stride + 1
        width = (x.width + 2 * pad - size) // stride + 1
        return _Tensor(out, filters, height, width)

    def _activation(self, index: int, section: CfgSection, activation: str, x: str) -> str:
        out = f"layer{index}_{activation}_out"
        if activation == "linear":
            return x
        if activation == "leaky":
            self._node("LeakyRelu", [x], [out], f"layer{index}_leaky", alpha=_LEAKY_SLOPE)
        elif activation == "logistic":
            self._node("Sigmoid", [x], [out], f"layer{index}_logistic")
        elif activation == "relu":
            self._node("Relu", [x], [out], f"layer{index}_relu")
        else:
            raise ModelError(f"cfg line {section.line}: activation {activation!r} is not supported")
        return out

    def _maxpool(self, index: int, section: CfgSection, x: _Tensor) -> _Tensor:
        stride = section.integer("stride", 1)
        size = section.integer("size", stride)
        # Darknet pads size-1 in total, the smaller half (padding/2, rounded down) before, and
        # takes the max over the pixels that exist. So yolov3-tiny's size=2 stride=1 maxpool
        # keeps 13x13 by padding one column and one row on the right and bottom only, which a
        # symmetric pad (or none) would get wrong by a row and a column.
        padding = section.integer("padding", size - 1)
        if size < 1 or stride < 1 or padding < 0:
            raise ModelError(f"cfg line {section.line}: maxpool size and stride must be >= 1")
        before = padding // 2
        height = (x.height + padding - size) // stride + 1
        width = (x.width + padding - size) // stride + 1
        if height < 1 or width < 1:
            raise ModelError(f"cfg line {section.line}: maxpool leaves nothing of {x.height}")
        after_h = max(0, (height - 1) * stride + size - x.height - before)
        after_w = max(0, (width - 1) * stride + size - x.width - before)
        out = f"layer{index}_maxpool_out"
        self._node(
            "MaxPool",
            [x.name],
            [out],
            f"layer{index}_maxpool",
            kernel_shape=[size, size],
            strides=[stride, stride],
            pads=[before, before, after_h, after_w],
        )
        return _Tensor(out, x.channels, height, width)

    def _route(self, index: int, section: CfgSection, x: _Tensor) -> _Tensor:
        if section.integer("groups", 1) != 1:
            raise ModelError(f"cfg line {section.line}: route groups are not supported")
        sources: list[_Tensor] = []
        for ref in section.integers("layers"):
            target = index + ref if ref < 0 else ref
            if not 0 <= target < index:
                raise ModelError(f"cfg line {section.line}: route to layer {ref} from {index}")
            source = self.layers[target]
            if not source.routable:
                raise ModelError(f"cfg line {section.line}: route to a [yolo] layer")
            sources.append(source)
        if not sources:
            raise ModelError(f"cfg line {section.line}: route needs layers=")
        shapes = {(s.height, s.width) for s in sources}
        if len(shapes) != 1:
            raise ModelError(
                f"cfg line {section.line}: route joins different sizes {sorted(shapes)}; "
                "is the input size a multiple of 32?"
            )
        channels = sum(s.channels for s in sources)
        if len(sources) == 1:
            return sources[0]
        out = f"layer{index}_route_out"
        self._node("Concat", [s.name for s in sources], [out], f"layer{index}_route", axis=1)
        return _Tensor(out, channels, sources[0].height, sources[0].width)

    def _upsample(self, index: int, section: CfgSection, x: _Tensor) -> _Tensor:
        stride = section.integer("stride", 2)
        if stride < 1 or float(section.text("scale", "1")) != 1.0:
            raise ModelError(f"cfg line {section.line}: only upsample stride>=1, scale=1")
        scales = self._constant(
            f"layer{index}_upsample.scales", np.array([1, 1, stride, stride], np.float32)
        )
        out = f"layer{index}_upsample_out"
        # Darknet's upsample copies in[y // stride][x // stride]: nearest, floor, asymmetric
        self._node(
            "Resize",
            [x.name, "", scales],
            [out],
            f"layer{index}_upsample",
            mode="nearest",
            nearest_mode="floor",
            coordinate_transformation_mode="asymmetric",
        )
        return _Tensor(out, x.channels, x.height * stride, x.width * stride)

    def _yolo(self, index: int, section: CfgSection, x: _Tensor) -> _Tensor:
        classes = section.integer("classes", 20)
        flat = section.integers("anchors")
        if len(flat) % 2 or not flat:
            raise ModelError(f"cfg line {section.line}: anchors must be width,height pairs")
        anchors = np.array(flat, np.float32).reshape(-1, 2)
        mask = list(self.mask_overrides.get(self.yolo_count, ()))
        mask = mask or section.integers("mask", range(len(anchors)))
        if not mask or any(not 0 <= m < len(anchors) for m in mask):
            raise ModelError(f"cfg line {section.line}: mask {mask} outside {len(anchors)} anchors")
        if float(section.text("scale_x_y", "1")) != 1.0:
            raise ModelError(f"cfg line {section.line}: scale_x_y is not supported")
        count, columns = len(mask), 5 + classes
        if x.channels != count * columns:
            raise ModelError(
                f"cfg line {section.line}: [yolo] with {count} anchors and {classes} classes "
                f"needs {count * columns} input channels, got {x.channels}"
            )
        if self.columns and self.columns != columns:
            raise ModelError(f"cfg line {section.line}: YOLO layers differ in class count")
        self.columns = columns
        self.decoded.append(self._decode(x, anchors[mask], columns))
        self.decoded_rows += count * x.height * x.width
        self.yolo_count += 1
        return _Tensor(x.name, x.channels, x.height, x.width, routable=False)

    # -- the decode -----------------------------------------------------------------------

    def _decode(self, x: _Tensor, anchors: FloatArray, columns: int) -> str:
        """``[B, A*(5+C), h, w]`` logits to ``[B, A*h*w, 5+C]`` boxes in input pixels.

        The grid is built in the graph from the layer's actual ``h`` and ``w`` (``Shape``,
        ``Range``), so that one file runs at any input size that is a multiple of 32: the
        layer's stride (32 or 16 in YOLOv3-tiny) is a constant, its number of cells is not.
        """
        p = f"{DECODE_NODE_PREFIX}{len(self.decoded)}"
        count = len(anchors)
        shape_a = self._constant(f"{p}.shape_a", np.array([0, count, columns, -1], np.int64))
        shape_b = self._constant(f"{p}.shape_b", np.array([0, -1, columns], np.int64))
        self._node("Reshape", [x.name, shape_a], [f"{p}_split_anchors"], f"{p}_reshape_a")
        self._node("Transpose", [f"{p}_split_anchors"], [f"{p}_rows"], f"{p}_t", perm=[0, 1, 3, 2])
        split = self._constant(f"{p}.split", np.array([2, 2, columns - 4], np.int64))
        self._node(
            "Split",
            [f"{p}_rows", split],
            [f"{p}_txy", f"{p}_twh", f"{p}_tscores"],
            f"{p}_split",
            axis=-1,
        )
        stride = np.array(
            [self.net_width / x.width, self.net_height / x.height], np.float32
        ).reshape(1, 1, 1, 2)
        stride_name = self._constant(f"{p}.stride", stride)
        offsets = self._grid(p, x.name)
        anchors_name = self._constant(
            f"{p}.anchors", anchors.astype(np.float32).reshape(1, count, 1, 2)
        )
        self._node("Sigmoid", [f"{p}_txy"], [f"{p}_sxy"], f"{p}_sigmoid_xy")
        self._node("Add", [f"{p}_sxy", offsets], [f"{p}_cxy"], f"{p}_add_xy")
        self._node("Mul", [f"{p}_cxy", stride_name], [f"{p}_xy"], f"{p}_mul_xy")
        self._node("Exp", [f"{p}_twh"], [f"{p}_ewh"], f"{p}_exp_wh")
        self._node("Mul", [f"{p}_ewh", anchors_name], [f"{p}_wh"], f"{p}_mul_wh")
        self._node("Sigmoid", [f"{p}_tscores"], [f"{p}_scores"], f"{p}_sigmoid_scores")
        joined = f"{p}_joined"
        self._node(
            "Concat", [f"{p}_xy", f"{p}_wh", f"{p}_scores"], [joined], f"{p}_concat", axis=-1
        )
        # rows run anchor-major, then grid row, then grid column, as in Darknet's output
        out = f"{p}_out"
        self._node("Reshape", [joined, shape_b], [out], f"{p}_reshape_b")
        return out

    def _grid(self, p: str, x: str) -> str:
        """``[1, 1, h*w, 2]`` float cell offsets (column, row) of the feature map ``x``,
        row-major, computed from its shape at run time."""
        zero = self._constant(f"{p}.zero", np.array(0, np.int64))
        one = self._constant(f"{p}.one", np.array(1, np.int64))
        axis0 = self._constant(f"{p}.axis0", np.array([0], np.int64))
        axis1 = self._constant(f"{p}.axis1", np.array([1], np.int64))
        axis_last = self._constant(f"{p}.axis_last", np.array([-1], np.int64))
        flat = self._constant(f"{p}.grid_shape", np.array([1, 1, -1, 2], np.int64))
        self._node("Shape", [x], [f"{p}_hw"], f"{p}_shape", start=2, end=4)
        for axis, side in ((0, "h"), (1, "w")):
            index = self._constant(f"{p}.index_{side}", np.array(axis, np.int64))
            self._node("Gather", [f"{p}_hw", index], [f"{p}_{side}"], f"{p}_gather_{side}")
            self._node(
                "Range", [zero, f"{p}_{side}", one], [f"{p}_range_{side}"], f"{p}_range_{side}"
            )
        # columns vary along the width, rows along the height: [1, w] and [h, 1], expanded
        self._node("Unsqueeze", [f"{p}_range_w", axis0], [f"{p}_cols"], f"{p}_cols")
        self._node("Unsqueeze", [f"{p}_range_h", axis1], [f"{p}_rows_idx"], f"{p}_rows_idx")
        for name in ("cols", "rows_idx"):
            self._node("Expand", [f"{p}_{name}", f"{p}_hw"], [f"{p}_{name}_hw"], f"{p}_x_{name}")
            self._node(
                "Unsqueeze", [f"{p}_{name}_hw", axis_last], [f"{p}_{name}_1"], f"{p}_u_{name}"
            )
        self._node(
            "Concat", [f"{p}_cols_1", f"{p}_rows_idx_1"], [f"{p}_cells"], f"{p}_cells", axis=-1
        )
        self._node("Reshape", [f"{p}_cells", flat], [f"{p}_cells_flat"], f"{p}_cells_flat")
        out = f"{p}_grid"
        self._node("Cast", [f"{p}_cells_flat"], [out], f"{p}_grid", to=TensorProto.FLOAT)
        return out

    # -- helpers --------------------------------------------------------------------------

    def _take(self, count: int, section: CfgSection, what: str) -> FloatArray:
        end = self.cursor + count
        if end > self.values.size:
            raise ModelError(
                f"cfg line {section.line}: the weights file ends while reading {what} "
                f"({self.values.size} values in all): cfg and weights do not belong together"
            )
        chunk = self.values[self.cursor : end]
        self.cursor = end
        return chunk

    def _constant(self, name: str, array: npt.NDArray[np.generic]) -> str:
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def _node(
        self, op: str, inputs: list[str], outputs: list[str], name: str, **attributes: Any
    ) -> None:
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attributes))
