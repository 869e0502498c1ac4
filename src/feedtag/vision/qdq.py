"""An INT8 QDQ model made lean for OpenVINO: pre-activation quantization pairs become clips.

The INT8 model (:mod:`feedtag.vision.modelbuild.quantize`) quantizes each convolution's
output before its LeakyRelu as well as after it, because ONNX Runtime's CPU kernels run the
convolution and the activation as two quantized operators (``QLinearConv``,
``QLinearLeakyRelu``) and the first one needs an output range. OpenVINO fuses a convolution,
its activation and the quantization after it into one INT8 kernel; a quantize/dequantize pair
between the convolution and the activation stops that fusion and costs an extra
u8-to-float conversion and zero-point subtraction per element. On the default model at
416x256 that came to about 0.4 ms of a 6.7 ms inference on a 2-vCPU AMD EPYC
(docs/performance.md, "Quantization pairs OpenVINO does not need").

:func:`without_preactivation_pairs` replaces exactly those pairs: a ``QuantizeLinear`` whose
input is a ``Conv`` output and whose only reader is a ``DequantizeLinear`` with the same
scale and zero point, read in turn only by ``LeakyRelu`` or ``Relu`` nodes. In its place
goes a ``Clip`` to the pair's range, which OpenVINO fuses into the convolution too: the
range's bounds still apply (the recipe chose them, clipping the far negative tail), only
the rounding to its 256 steps goes. Nothing else changes. The ONNX graph is edited with
``onnx``'s own protobuf API; no library offers this rewrite.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import onnx
from onnx import helper, numpy_helper

#: activations OpenVINO fuses into the convolution before them
FUSED_ACTIVATIONS: Final = frozenset({"LeakyRelu", "Relu"})


def without_preactivation_pairs(model: onnx.ModelProto) -> int:
    """Replace, in place, every quantize/dequantize pair between a ``Conv`` and the
    activation that reads it by a clip to the pair's range (see the module docstring); how
    many pairs were replaced."""
    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    constants = {init.name: init for init in graph.initializer}
    graph_outputs = {output.name for output in graph.output}
    pairs = []
    for quantize in graph.node:
        if quantize.op_type != "QuantizeLinear" or len(quantize.input) != 3:
            continue
        source = producers.get(quantize.input[0])
        after = readers.get(quantize.output[0], [])
        if source is None or source.op_type != "Conv" or len(after) != 1:
            continue
        dequantize = after[0]
        if (
            dequantize.op_type != "DequantizeLinear"
            or list(dequantize.input[1:]) != list(quantize.input[1:])
            or not all(_scalar(constants.get(name)) for name in quantize.input[1:])
            or quantize.output[0] in graph_outputs
            or dequantize.output[0] in graph_outputs
        ):
            continue
        activations = readers.get(dequantize.output[0], [])
        if activations and all(node.op_type in FUSED_ACTIVATIONS for node in activations):
            pairs.append((quantize, dequantize, activations))
    for quantize, dequantize, activations in pairs:
        low, high = _range(constants[quantize.input[1]], constants[quantize.input[2]])
        clipped = f"{quantize.input[0]}_clip"
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(low, np.float32), f"{clipped}_min"),
                numpy_helper.from_array(np.array(high, np.float32), f"{clipped}_max"),
            ]
        )
        clip = helper.make_node(
            "Clip", [quantize.input[0], f"{clipped}_min", f"{clipped}_max"], [clipped], clipped
        )
        graph.node.insert(list(graph.node).index(quantize), clip)
        for activation in activations:
            for index, name in enumerate(activation.input):
                if name == dequantize.output[0]:
                    activation.input[index] = clipped
        graph.node.remove(quantize)
        graph.node.remove(dequantize)
    return len(pairs)


def _scalar(constant: onnx.TensorProto | None) -> bool:
    """Whether ``constant`` is a constant of one value (a per-tensor scale or zero point)."""
    return constant is not None and numpy_helper.to_array(constant).size == 1


def _range(scale: onnx.TensorProto, zero_point: onnx.TensorProto) -> tuple[float, float]:
    """The float range a per-tensor quantization covers: its integer type's ends, scaled."""
    step = float(numpy_helper.to_array(scale))
    zero = numpy_helper.to_array(zero_point)
    ends = np.iinfo(zero.dtype)
    return (ends.min - int(zero)) * step, (ends.max - int(zero)) * step
