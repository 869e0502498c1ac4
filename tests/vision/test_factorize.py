"""The low-rank factorization of a convolution that bench/factorize.py measures on the default
detector (docs/performance.md, "A cheaper network without retraining, measured"), on small
graphs whose answer is known: outputs that span few directions come back exactly, a rank below what the
outputs span loses exactly the variance it leaves out, and bad ranks are refused."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from feedtag.errors import ModelError
from feedtag.vision.modelbuild.quantize import ShapedFrame

CHANNELS = 8
REPO = Path(__file__).resolve().parents[2]


def load_factorize() -> ModuleType:
    """bench/factorize.py as a module."""
    spec = importlib.util.spec_from_file_location("factorize", REPO / "bench/factorize.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


bench = load_factorize()
conv_name, factorize = bench.conv_name, bench.factorize


def one_conv_model(
    kernel: npt.NDArray[np.float32], bias: npt.NDArray[np.float32]
) -> onnx.ModelProto:
    """images -> layer0 convolution (3x3, padded) -> LeakyRelu -> out, as the converter names
    them."""
    name = conv_name(0)
    graph = helper.make_graph(
        [
            helper.make_node(
                "Conv", ["images", f"{name}.weight", f"{name}.bias"], [f"{name}_out"],
                name=name, kernel_shape=[3, 3], pads=[1, 1, 1, 1],
            ),
            helper.make_node("LeakyRelu", [f"{name}_out"], ["out"], name="layer0_leaky", alpha=0.1),
        ],
        "one-conv",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, None, None])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, CHANNELS, None, None])],
        [numpy_helper.from_array(kernel, f"{name}.weight"), numpy_helper.from_array(bias, f"{name}.bias")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def run(model: onnx.ModelProto, output: str, inputs: list[ShapedFrame]) -> npt.NDArray[np.float32]:
    """``output`` of ``model`` for each input, channels first, positions flattened."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    values = [session.run(None, {"images": s.tensor()})[0] for s in inputs]
    return np.concatenate([v[0].reshape(v.shape[1], -1) for v in values], axis=1)


@pytest.fixture
def inputs() -> list[ShapedFrame]:
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(4)]
    return [ShapedFrame(frame, (64, 48)) for frame in frames]


def test_outputs_that_span_few_directions_come_back_exactly(inputs: list[ShapedFrame]) -> None:
    rng = np.random.default_rng(0)
    # every output is a mix of two: rank 2 holds all of it
    kernel = (rng.normal(size=(CHANNELS, 2)) @ rng.normal(size=(2, 27))).reshape(CHANNELS, 3, 3, 3)
    bias = rng.normal(size=CHANNELS)
    model = one_conv_model(kernel.astype(np.float32), bias.astype(np.float32))
    before = run(model, "out", inputs)
    record = factorize(model, inputs, {0: 2})
    onnx.checker.check_model(model)
    assert record["layers"] == {"0": {"rank": 2, "channels": CHANNELS, "variance_kept": 1.0}}
    convolutions = [node for node in model.graph.node if node.op_type == "Conv"]
    assert [node.name for node in convolutions] == ["layer0_conv", "layer0_conv_expand"]
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    assert shapes["layer0_conv.weight"] == (2, 3, 3, 3)
    assert shapes["layer0_conv_expand.weight"] == (CHANNELS, 2, 1, 1)
    after = run(model, "out", inputs)
    np.testing.assert_allclose(after, before, atol=2e-4 * float(np.abs(before).max()))


def test_a_lower_rank_loses_exactly_the_variance_it_leaves_out(
    inputs: list[ShapedFrame],
) -> None:
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(CHANNELS, 3, 3, 3)).astype(np.float32)
    bias = rng.normal(size=CHANNELS).astype(np.float32)
    model = one_conv_model(kernel, bias)
    outputs = run(model, f"{conv_name(0)}_out", inputs).astype(np.float64)
    centred = outputs - outputs.mean(axis=1, keepdims=True)
    eigenvalues = np.sort(np.linalg.eigvalsh(centred @ centred.T / outputs.shape[1]))[::-1]
    record = factorize(model, inputs, {0: 3})
    # the output of the pair, before the activation: the best rank-3 fit of the outputs
    approximated = run(model, f"{conv_name(0)}_out", inputs).astype(np.float64)
    error = float(((approximated - outputs) ** 2).sum(axis=0).mean())
    assert error == pytest.approx(eigenvalues[3:].sum(), rel=1e-3)
    kept = record["layers"]["0"]["variance_kept"]
    assert kept == pytest.approx(eigenvalues[:3].sum() / eigenvalues.sum(), abs=1e-4)
    assert 0.3 < kept < 1.0
    # the mean output is kept whatever the rank
    np.testing.assert_allclose(approximated.mean(axis=1), outputs.mean(axis=1), atol=1e-3)


@pytest.mark.parametrize(
    ("ranks", "message"),
    [
        ({0: 0}, "layer 0: rank 0"),
        ({0: CHANNELS}, "layer 0: rank 8"),
        ({5: 2}, "layer 5 is not a convolution"),
    ],
)
def test_bad_ranks_are_refused(
    inputs: list[ShapedFrame], ranks: dict[int, int], message: str
) -> None:
    kernel = np.ones((CHANNELS, 3, 3, 3), np.float32)
    model = one_conv_model(kernel, np.zeros(CHANNELS, np.float32))
    with pytest.raises(ModelError, match=message):
        factorize(model, inputs, ranks)
    assert len(model.graph.node) == 2  # left as it was


def test_no_inputs_is_refused() -> None:
    model = one_conv_model(np.ones((CHANNELS, 3, 3, 3), np.float32), np.zeros(CHANNELS, np.float32))
    with pytest.raises(ModelError, match="at least one calibration input"):
        factorize(model, [], {0: 2})
