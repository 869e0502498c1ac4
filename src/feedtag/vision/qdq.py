"""An INT8 QDQ model made lean for OpenVINO: pre-activation quantization pairs removed.

The INT8 model (:mod:`feedtag.vision.modelbuild.quantize`) quantizes each convolution's
output before its LeakyRelu as well as after it, because ONNX Runtime's CPU kernels run the
convolution and the activation as two quantized operators (``QLinearConv``,
``QLinearLeakyRelu``) and the first one needs an output range. OpenVINO fuses a convolution,
its activation and the quantization after it into one INT8 kernel; a quantize/dequantize pair
between the convolution and the activation stops that fusion and costs an extra
u8-to-float conversion and zero-point subtraction per element. On the default model at
416x256 those came to 0.45 ms of a 6.3 ms inference on a 2-vCPU AMD EPYC
(docs/performance.md, "Quantization pairs OpenVINO does not need").

:func:`without_preactivation_pairs` removes exactly those pairs: a ``QuantizeLinear`` whose
input is a ``Conv`` output and whose only reader is a ``DequantizeLinear`` with the same
scale and zero point, read in turn only by ``LeakyRelu`` or ``Relu`` nodes. The activation
then reads the convolution's float output; what it writes is still quantized as before, so
the model computes the same thing with one rounding step fewer. Nothing else changes. The
ONNX graph is edited with ``onnx``'s own protobuf API; no library offers this rewrite.
"""

from __future__ import annotations

from typing import Final

import onnx

#: activations OpenVINO fuses into the convolution before them
FUSED_ACTIVATIONS: Final = frozenset({"LeakyRelu", "Relu"})


def without_preactivation_pairs(model: onnx.ModelProto) -> int:
    """Remove, in place, every quantize/dequantize pair between a ``Conv`` and the activation
    that reads it (see the module docstring); how many pairs were removed."""
    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    graph_outputs = {output.name for output in graph.output}
    pairs = []
    for quantize in graph.node:
        if quantize.op_type != "QuantizeLinear":
            continue
        source = producers.get(quantize.input[0])
        after = readers.get(quantize.output[0], [])
        if source is None or source.op_type != "Conv" or len(after) != 1:
            continue
        dequantize = after[0]
        if (
            dequantize.op_type != "DequantizeLinear"
            or list(dequantize.input[1:]) != list(quantize.input[1:])
            or quantize.output[0] in graph_outputs
            or dequantize.output[0] in graph_outputs
        ):
            continue
        activations = readers.get(dequantize.output[0], [])
        if activations and all(node.op_type in FUSED_ACTIVATIONS for node in activations):
            pairs.append((quantize, dequantize, activations))
    for quantize, dequantize, activations in pairs:
        for activation in activations:
            for index, name in enumerate(activation.input):
                if name == dequantize.output[0]:
                    activation.input[index] = quantize.input[0]
        graph.node.remove(quantize)
        graph.node.remove(dequantize)
    return len(pairs)
