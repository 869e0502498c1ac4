"""OpenVINO runs an INT8 model's quantization pairs between a convolution and its activation
as clips (``clip_preactivation_pairs``): only those pairs, and the model computes the same
thing but for that rounding step."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from feedtag.vision.openvino_backend import clip_preactivation_pairs, import_openvino

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="openvino is not installed"
)


def pair(name: str, source: str, scale: str, zero: str) -> list[onnx.NodeProto]:
    return [
        helper.make_node("QuantizeLinear", [source, scale, zero], [f"{name}_q"], name=f"{name}_Q"),
        helper.make_node(
            "DequantizeLinear", [f"{name}_q", scale, zero], [f"{name}_dq"], name=f"{name}_DQ"
        ),
    ]


def model(after_conv: str = "LeakyRelu", own_scale: bool = False) -> onnx.ModelProto:
    """x -> Conv -> QDQ -> ``after_conv`` -> QDQ -> MaxPool -> QDQ -> y."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w")
    inits = [
        weight,
        numpy_helper.from_array(np.array(0.05, np.float32), "pre_scale"),
        numpy_helper.from_array(np.array(128, np.uint8), "pre_zero"),
        numpy_helper.from_array(np.array(0.02, np.float32), "post_scale"),
        numpy_helper.from_array(np.array(20, np.uint8), "post_zero"),
        numpy_helper.from_array(np.array(0.04, np.float32), "other_scale"),
    ]
    activation = (
        helper.make_node("LeakyRelu", ["pre_dq"], ["act"], alpha=0.1, name="act")
        if after_conv == "LeakyRelu"
        else helper.make_node(after_conv, ["pre_dq", "pre_dq"], ["act"], name="act")
    )
    dequantize_scale = "other_scale" if own_scale else "pre_scale"
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("QuantizeLinear", ["conv", "pre_scale", "pre_zero"], ["pre_q"]),
        helper.make_node("DequantizeLinear", ["pre_q", dequantize_scale, "pre_zero"], ["pre_dq"]),
        activation,
        *pair("post", "act", "post_scale", "post_zero"),
        helper.make_node("MaxPool", ["post_dq"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
        *pair("pool", "pool", "post_scale", "post_zero"),
        helper.make_node("Identity", ["pool_dq"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        inits,
    )
    built = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(built)
    return built


def read(built: onnx.ModelProto) -> Any:
    return import_openvino().Core().read_model(built.SerializeToString())


def run(model: Any, x: np.ndarray) -> np.ndarray:
    compiled = (
        import_openvino().Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    )
    return np.asarray(compiled.create_infer_request().infer({0: x})[0])


def kinds(model: Any) -> list[str]:
    return [op.get_type_name() for op in model.get_ordered_ops()]


def conv(x: np.ndarray) -> np.ndarray:
    """The model's convolution in float (3x3, padding 1), by hand."""
    weight = numpy_helper.to_array(model().graph.initializer[0])
    padded = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((4, 8, 8), np.float64)
    for dy in range(3):
        for dx in range(3):
            out += np.einsum(
                "oc,chw->ohw", weight[:, :, dy, dx], padded[:, dy : dy + 8, dx : dx + 8]
            )
    return out


def test_the_pair_between_a_convolution_and_its_activation_becomes_a_clip() -> None:
    before, after = read(model()), read(model())
    assert clip_preactivation_pairs(after, import_openvino()) == 1
    assert "Clamp" not in kinds(before)
    assert kinds(after).count("FakeQuantize") == kinds(before).count("FakeQuantize") - 1 == 2
    clamp = next(op for op in after.get_ordered_ops() if op.get_type_name() == "Clamp")
    # the pair's range: (0 - 128) * 0.05 .. (255 - 128) * 0.05
    attributes = clamp.get_attributes()
    assert attributes["min"] == pytest.approx(-6.4) and attributes["max"] == pytest.approx(6.35)
    readers = [target.get_node().get_type_name() for target in clamp.output(0).get_target_inputs()]
    assert readers == ["PRelu"]
    x = np.random.default_rng(1).normal(0, 3, (1, 3, 8, 8)).astype(np.float32)
    assert (conv(x) < -6.4).any() and (conv(x) > 6.35).any()  # both bounds are reached
    # one rounding of the pre-activation (to 0.05) fewer, the output still in steps of 0.02
    np.testing.assert_allclose(run(after, x), run(before, x), atol=0.05)
    kept = np.clip(conv(x), -6.4, 6.35)
    exact = np.maximum(0.1 * kept, kept).reshape(4, 4, 2, 4, 2).max(axis=(2, 4))
    assert np.abs(run(after, x)[0] - exact).mean() < np.abs(run(before, x)[0] - exact).mean()
    assert clip_preactivation_pairs(after, import_openvino()) == 0  # nothing left to replace


def test_pairs_elsewhere_stay() -> None:
    """A pair read by something other than an activation, or whose dequantization does not
    undo its quantization (another scale), is not this pattern and stays."""
    for built in (model(after_conv="Add"), model(own_scale=True)):
        graph = read(built)
        count = len(graph.get_ordered_ops())
        assert clip_preactivation_pairs(graph, import_openvino()) == 0
        assert len(graph.get_ordered_ops()) == count and "Clamp" not in kinds(graph)
