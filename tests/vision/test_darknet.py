"""The Darknet converter against an independent numpy re-implementation of Darknet's forward
pass (written from Darknet's C sources, not from the converter), on small synthetic models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest

from feedtag.errors import ModelError
from feedtag.vision.modelbuild import darknet

Array = npt.NDArray[np.float64]

# A small YOLOv3-tiny-shaped model: non-square input (so a swapped axis shows), BN and plain
# convolutions, both maxpool kinds, route back and across, upsample, two YOLO layers with
# different masks. 32 x 64 input, 3 classes, 4 anchors.
SYNTHETIC_CFG = """
[net]
width=64
height=32
channels=3

[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

# Darknet pads this one on the right and bottom only: the size stays 16 x 32
[maxpool]
size=2
stride=1

[convolutional]
size=1
stride=1
pad=1
filters=16
activation=linear

[yolo]
mask = 2,3
anchors = 3,4,  6,5,  9,12,  20,14
classes=3
num=4

[route]
layers = -4

[convolutional]
batch_normalize=1
filters=4
size=1
stride=1
pad=1
activation=leaky

[upsample]
stride=2

[route]
layers = -1, 0

[convolutional]
size=1
stride=1
pad=1
filters=16
activation=linear

[yolo]
mask = 0,1
anchors = 3,4,  6,5,  9,12,  20,14
classes=3
num=4
"""


@dataclass
class ConvParams:
    bias: Array
    weights: Array
    bn: tuple[Array, Array, Array] | None  # scales, rolling mean, rolling variance


def make_weights(
    sections: list[darknet.CfgSection], seed: int = 0
) -> tuple[bytes, list[ConvParams]]:
    """Random parameters for every convolution, and the .weights bytes Darknet would save."""
    rng = np.random.default_rng(seed)
    channels = [3]
    params: list[ConvParams] = []
    chunks: list[Array] = []
    outputs: list[int] = []
    for index, section in enumerate(sections[1:]):
        current = channels[-1]
        if section.kind == "convolutional":
            filters, size = int(section.options["filters"]), int(section.options["size"])
            bias = rng.normal(0, 0.2, filters)
            weights = rng.normal(0, 0.4, (filters, current, size, size))
            if section.options.get("batch_normalize") == "1":
                bn = (
                    rng.uniform(0.5, 1.5, filters),
                    rng.normal(0, 0.2, filters),
                    rng.uniform(0.3, 2.0, filters),
                )
                chunks += [bias, *bn, weights.ravel()]
            else:
                bn = None
                chunks += [bias, weights.ravel()]
            params.append(ConvParams(bias, weights, bn))
            current = filters
        elif section.kind == "route":
            refs = [int(v) for v in section.options["layers"].split(",")]
            current = sum(outputs[index + r if r < 0 else r] for r in refs)
        outputs.append(current)
        channels.append(current)
    header = np.array([0, 2, 5], "<i4").tobytes() + np.array([123456], "<i8").tobytes()
    body = np.concatenate(chunks).astype("<f4").tobytes()
    return header + body, params


# -- the reference: Darknet's forward pass in plain numpy ----------------------------------


def ref_conv(x: Array, p: ConvParams, stride: int, pad: int, activation: str) -> Array:
    size = p.weights.shape[2]
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    height = (x.shape[1] + 2 * pad - size) // stride + 1
    width = (x.shape[2] + 2 * pad - size) // stride + 1
    out = np.zeros((p.weights.shape[0], height, width))
    for y in range(height):
        for x_ in range(width):
            patch = padded[:, y * stride : y * stride + size, x_ * stride : x_ * stride + size]
            out[:, y, x_] = np.tensordot(p.weights, patch, axes=([1, 2, 3], [0, 1, 2]))
    if p.bn is not None:  # normalize_cpu, scale_bias, add_bias
        scales, mean, variance = p.bn
        out = (out - mean[:, None, None]) / (np.sqrt(variance)[:, None, None] + 0.000001)
        out = out * scales[:, None, None]
    out = out + p.bias[:, None, None]
    return np.where(out > 0, out, 0.1 * out) if activation == "leaky" else out


def ref_maxpool(x: Array, size: int, stride: int) -> Array:
    """forward_maxpool_layer: padding = size - 1, offset -padding/2, missing pixels -FLT_MAX."""
    padding = size - 1
    offset = -(padding // 2)
    channels, height, width = x.shape
    out_h = (height + padding - size) // stride + 1
    out_w = (width + padding - size) // stride + 1
    out = np.full((channels, out_h, out_w), -np.finfo(np.float32).max)
    for i in range(out_h):
        for j in range(out_w):
            for n in range(size):
                for m in range(size):
                    row, col = offset + i * stride + n, offset + j * stride + m
                    if 0 <= row < height and 0 <= col < width:
                        out[:, i, j] = np.maximum(out[:, i, j], x[:, row, col])
    return out


def ref_yolo(
    x: Array, mask: list[int], anchors: list[int], classes: int, *, net_w: int, net_h: int
) -> Array:
    """forward_yolo_layer + get_yolo_box: one row per (anchor, row, column)."""
    height, width = x.shape[1:]
    rows = []
    for n, anchor in enumerate(mask):
        block = x[n * (5 + classes) : (n + 1) * (5 + classes)]
        for j in range(height):
            for i in range(width):
                t = block[:, j, i]
                sig = 1 / (1 + np.exp(-t))
                cx = (i + sig[0]) / width * net_w
                cy = (j + sig[1]) / height * net_h
                w = np.exp(t[2]) * anchors[2 * anchor]
                h = np.exp(t[3]) * anchors[2 * anchor + 1]
                rows.append([cx, cy, w, h, *sig[4:]])
    return np.array(rows)


def ref_forward(
    sections: list[darknet.CfgSection],
    params: list[ConvParams],
    image: Array,
    masks: dict[int, list[int]] | None = None,
) -> Array:
    net = sections[0].options
    net_w, net_h = int(net["width"]), int(net["height"])
    outputs: list[Array] = []
    detections: list[Array] = []
    x, conv_index, yolo_index = image, 0, 0
    for index, section in enumerate(sections[1:]):
        o = section.options
        if section.kind == "convolutional":
            size = int(o["size"])
            pad = size // 2 if o.get("pad") == "1" else 0
            x = ref_conv(x, params[conv_index], int(o["stride"]), pad, o["activation"])
            conv_index += 1
        elif section.kind == "maxpool":
            x = ref_maxpool(x, int(o["size"]), int(o["stride"]))
        elif section.kind == "upsample":
            stride = int(o["stride"])
            x = np.repeat(np.repeat(x, stride, axis=1), stride, axis=2)
        elif section.kind == "route":
            refs = [int(v) for v in o["layers"].split(",")]
            x = np.concatenate([outputs[index + r if r < 0 else r] for r in refs], axis=0)
        elif section.kind == "yolo":
            mask = (masks or {}).get(yolo_index) or [int(v) for v in o["mask"].split(",")]
            anchors = [int(v) for v in o["anchors"].split(",")]
            detections.append(
                ref_yolo(x, mask, anchors, int(o["classes"]), net_w=net_w, net_h=net_h)
            )
            yolo_index += 1
        outputs.append(x)
    return np.concatenate(detections, axis=0)


# -- tests --------------------------------------------------------------------------------


def run_onnx(model: onnx.ModelProto, images: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    result: npt.NDArray[np.float32] = session.run([darknet.OUTPUT_NAME], {"images": images})[0]
    return result


@pytest.fixture
def synthetic(tmp_path: Path) -> tuple[Path, Path, list[darknet.CfgSection], list[ConvParams]]:
    sections = darknet.parse_cfg(SYNTHETIC_CFG)
    data, params = make_weights(sections)
    cfg_path, weights_path = tmp_path / "tiny.cfg", tmp_path / "tiny.weights"
    cfg_path.write_text(SYNTHETIC_CFG)
    weights_path.write_bytes(data)
    return cfg_path, weights_path, sections, params


def test_matches_darknet_reference(
    synthetic: tuple[Path, Path, list[darknet.CfgSection], list[ConvParams]],
) -> None:
    cfg_path, weights_path, sections, params = synthetic
    model = darknet.convert_darknet(cfg_path, weights_path)
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 1, (2, 3, 32, 64)).astype(np.float32)
    got = run_onnx(model, images)
    # rows: 2 anchors x 16 x 32 cells, then 2 anchors x 32 x 64 cells; 5 + 3 columns
    assert got.shape == (2, 2 * 16 * 32 + 2 * 32 * 64, 8)
    for image, result in zip(images, got, strict=True):
        expected = ref_forward(sections, params, image.astype(np.float64))
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-3)


def test_batch_is_dynamic_and_images_independent(
    synthetic: tuple[Path, Path, list[darknet.CfgSection], list[ConvParams]],
) -> None:
    cfg_path, weights_path, _, _ = synthetic
    model = darknet.convert_darknet(cfg_path, weights_path)
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch"
    images = np.random.default_rng(2).uniform(0, 1, (3, 3, 32, 64)).astype(np.float32)
    together = run_onnx(model, images)
    alone = np.concatenate([run_onnx(model, images[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)


def test_mask_override_changes_anchors_only(
    synthetic: tuple[Path, Path, list[darknet.CfgSection], list[ConvParams]],
) -> None:
    cfg_path, weights_path, sections, params = synthetic
    model = darknet.convert_darknet(cfg_path, weights_path, mask_overrides={1: (1, 2)})
    image = np.random.default_rng(3).uniform(0, 1, (1, 3, 32, 64)).astype(np.float32)
    got = run_onnx(model, image)[0]
    expected = ref_forward(sections, params, image[0].astype(np.float64), masks={1: [1, 2]})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    plain = run_onnx(darknet.convert_darknet(cfg_path, weights_path), image)[0]
    first = 2 * 16 * 32  # rows of the first YOLO layer: untouched
    np.testing.assert_allclose(got[:first], plain[:first], rtol=1e-6)
    # second layer, anchor slot 0: anchor 1 (6x5) instead of anchor 0 (3x4)
    slot = slice(first, first + 32 * 64)
    np.testing.assert_allclose(got[slot, 2] / plain[slot, 2], 2.0, rtol=1e-5)
    np.testing.assert_allclose(got[slot, 3] / plain[slot, 3], 1.25, rtol=1e-5)


def test_input_size_override(
    synthetic: tuple[Path, Path, list[darknet.CfgSection], list[ConvParams]],
) -> None:
    cfg_path, weights_path, _, _ = synthetic
    model = darknet.convert_darknet(cfg_path, weights_path, input_size=32)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    assert shape == [3, 32, 32]
    out = run_onnx(model, np.full((1, 3, 32, 32), 0.5, np.float32))
    assert out.shape == (1, 2 * 16 * 16 + 2 * 32 * 32, 8)


def test_stride_one_maxpool_pads_right_and_bottom_only(tmp_path: Path) -> None:
    # yolov3-tiny's sixth maxpool: size 2, stride 1 on 13 x 13 stays 13 x 13, the last row
    # and column taking the max of what exists. A symmetric pad would shift it by a pixel.
    cfg = (
        "[net]\nwidth=13\nheight=13\nchannels=3\n[maxpool]\nsize=2\nstride=1\n"
        "[convolutional]\nsize=1\nfilters=6\nactivation=linear\n"
        "[yolo]\nmask=0\nanchors=1,1\nclasses=1\n"
    )
    (tmp_path / "m.cfg").write_text(cfg)
    weights = np.zeros(6 + 6 * 3, np.float32)  # biases, then 6 x 3 x 1 x 1 weights
    header = np.array([0, 2, 0], "<i4").tobytes() + np.array([0], "<i8").tobytes()
    (tmp_path / "m.weights").write_bytes(header + weights.tobytes())
    model = darknet.convert_darknet(tmp_path / "m.cfg", tmp_path / "m.weights")
    pool = next(node for node in model.graph.node if node.op_type == "MaxPool")
    model.graph.output.append(onnx.helper.make_tensor_value_info(pool.output[0], 1, None))
    image = np.random.default_rng(4).uniform(0, 1, (1, 3, 13, 13)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    pooled = session.run([pool.output[0]], {"images": image})[0][0]
    assert pooled.shape == (3, 13, 13)
    np.testing.assert_allclose(pooled, ref_maxpool(image[0].astype(np.float64), 2, 1))
    # the last column is the max of the last column and nothing beyond it
    np.testing.assert_allclose(
        pooled[:, :-1, -1], np.maximum(image[0, :, :-1, -1], image[0, :, 1:, -1])
    )


def test_weights_header_versions() -> None:
    old = np.array([0, 1, 0], "<i4").tobytes() + np.array([77], "<i4").tobytes()
    parsed = darknet.parse_weights(old + np.array([1.5, 2.5], "<f4").tobytes())
    assert (parsed.major, parsed.minor, parsed.seen) == (0, 1, 77)
    assert parsed.values.tolist() == [1.5, 2.5]
    new = np.array([0, 2, 0], "<i4").tobytes() + np.array([2**40], "<i8").tobytes()
    parsed = darknet.parse_weights(new + np.array([3.0], "<f4").tobytes())
    assert (parsed.seen, parsed.values.tolist()) == (2**40, [3.0])


@pytest.mark.parametrize(
    ("cfg_edit", "weights_edit", "message"),
    [
        (("[maxpool]\nsize=2\nstride=2", "[shortcut]\nfrom=-3"), 0, r"\[shortcut\] is not supported"),
        (None, -4, "ends while reading"),
        (None, +3, "3 values more than the cfg uses"),
        (("layers = -1, 0", "layers = -1, 30"), 0, "route to layer 30"),
        (("mask = 2,3", "mask = 2,7"), 0, r"mask \[2, 7\] outside 4 anchors"),
        (("classes=3\nnum=4\n\n[route]", "classes=2\nnum=4\n\n[route]"), 0, "needs 14 input channels"),
        (("activation=linear", "activation=mish"), 0, "activation 'mish'"),
        (("[upsample]", "[net]\n[upsample]"), 0, r"\[net\] is not supported"),
        (("width=64", "width=sixty"), 0, "'sixty' is not an integer"),
    ],
    ids=["unknown-section", "short-weights", "long-weights", "route-ahead", "mask-range",
         "channels", "activation", "second-net", "not-integer"],
)  # fmt: skip
def test_rejects_bad_models(
    tmp_path: Path,
    cfg_edit: tuple[str, str] | None,
    weights_edit: int,
    message: str,
) -> None:
    cfg = SYNTHETIC_CFG
    if cfg_edit is not None:
        assert cfg_edit[0] in cfg
        cfg = cfg.replace(cfg_edit[0], cfg_edit[1], 1)
    data, _ = make_weights(darknet.parse_cfg(SYNTHETIC_CFG))
    if weights_edit < 0:
        data = data[: weights_edit * 4]
    else:
        data += np.zeros(weights_edit, "<f4").tobytes()
    (tmp_path / "m.cfg").write_text(cfg)
    (tmp_path / "m.weights").write_bytes(data)
    with pytest.raises(ModelError, match=message):
        darknet.convert_darknet(tmp_path / "m.cfg", tmp_path / "m.weights")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[convolutional]\nfilters=1", r"must start with a \[net\]"),
        ("", r"must start with a \[net\]"),
        ("[net\nwidth=1", "malformed section header"),
        ("width=1\n[net]", "expected .section. or key=value"),
        ("[net]\njust words", "expected .section. or key=value"),
    ],
)
def test_rejects_bad_cfg_text(text: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        darknet.parse_cfg(text)


def test_rejects_short_header_and_mask_override_for_missing_layer(
    synthetic: tuple[Path, Path, list[darknet.CfgSection], list[ConvParams]],
) -> None:
    cfg_path, weights_path, _, _ = synthetic
    with pytest.raises(ModelError, match="too short for a Darknet header"):
        darknet.parse_weights(b"\0" * 10)
    with pytest.raises(ModelError, match=r"YOLO layer\(s\) \[5\]"):
        darknet.convert_darknet(cfg_path, weights_path, mask_overrides={5: (0, 1)})
    with pytest.raises(ModelError, match="cannot read Darknet weights"):
        darknet.convert_darknet(cfg_path, weights_path.with_name("missing.weights"))


def test_decode_nodes_are_named_for_the_quantizer(
    synthetic: tuple[Path, Path, list[darknet.CfgSection], list[ConvParams]],
) -> None:
    cfg_path, weights_path, _, _ = synthetic
    model = darknet.convert_darknet(cfg_path, weights_path)
    decode_ops = {
        node.op_type
        for node in model.graph.node
        if node.name.startswith(darknet.DECODE_NODE_PREFIX)
    }
    assert {"Sigmoid", "Exp", "Concat", "Reshape"} <= decode_ops
    assert model.opset_import[0].version == darknet.OPSET
    assert model.ir_version == darknet.IR_VERSION
    assert model.producer_version == darknet.CONVERTER_VERSION
