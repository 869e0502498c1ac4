# ruff: noqa: T201 - a command-line benchmark
"""What factorizing the default detector's two costliest convolutions to a lower rank would
save and lose: measured, and not built into the default model (docs/performance.md, "A
cheaper network without retraining, measured").

    PYTHONPATH=src python bench/factorize.py [--ranks "12:384,21:192;21:160;12:640"]

YOLOv3-tiny spends half of its multiply-adds in two layers: layer 12 (3x3, 512 -> 1024
channels on the 1/32 grid, 29%) and layer 21 (3x3, 384 -> 256 on the 1/16 grid, 21%). Their
outputs use far fewer directions than channels (384 of layer 12's 1024 hold 99% of its
output variance on the calibration footage). Each listed layer is replaced by a convolution
into ``rank`` channels and a 1x1 convolution back, no activation between, so the layer after
is untouched:

    y = W x + b  ~  U (U^T W x + U^T (b - m)) + m

where ``m`` is the mean output and ``U`` the top ``rank`` principal directions of the
centred outputs before the activation, measured on the build's calibration frames (the
data-driven factorization of Zhang et al., "Accelerating Very Deep Convolutional Networks
for Classification and Detection", 2015, without fine-tuning and without its asymmetric
refinement). No maintained library factorizes an ONNX convolution from activations, hence
the algebra here.

For each rank set it prints the variance kept per layer; the factorized FP32 network against
the converted one on the frames the model tests use and calibration never saw (40 of
vtest.avi, 92 of bikes.mp4; same class, IoU >= 0.5; recall / precision), in the square and
the 16:9 rectangle; and the INT8 model built from it (the build's quantization recipe) against
the INT8 model built without it: CPU ms per 416x256 frame on OpenVINO, one thread, rounds
interleaved. It prints numbers; it is not a test.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper, numpy_helper
from onnxruntime.capi.onnxruntime_inference_collection import InferenceSession

from feedtag.errors import ModelError
from feedtag.samples import bikes_path, vtest_path
from feedtag.vision.modelbuild import calibration, darknet, default_model, quantize
from feedtag.vision.modelbuild.calibration import Image
from feedtag.vision.modelbuild.quantize import ShapedFrame
from feedtag.vision.openvino_backend import OpenVinoRuntime
from feedtag.vision.registry import INPUT_NAME, Progress

#: Darknet layer index -> rank kept, as measured by default (``--ranks``)
DEFAULT_RANKS: Final = "12:384,21:192;21:128;21:160;12:512;12:640"

Float64Array = npt.NDArray[np.float64]


def conv_name(layer: int) -> str:
    """The converter's name for a Darknet layer's convolution node (and its weights' prefix)."""
    return f"layer{layer}_conv"


class _Moments:
    """Running sum and outer product of one convolution's output vectors (one per position)."""

    def __init__(self, channels: int) -> None:
        self.count = 0
        self.total = np.zeros(channels)
        self.outer = np.zeros((channels, channels))

    def add(self, output: npt.NDArray[np.float32]) -> None:
        vectors = np.asarray(output, np.float64).transpose(1, 0, 2, 3).reshape(output.shape[1], -1)
        self.count += vectors.shape[1]
        self.total += vectors.sum(axis=1)
        self.outer += vectors @ vectors.T

    def mean_and_covariance(self) -> tuple[Float64Array, Float64Array]:
        mean = self.total / self.count
        return mean, self.outer / self.count - np.outer(mean, mean)


def factorize(
    model: onnx.ModelProto,
    inputs: Sequence[ShapedFrame],
    ranks: Mapping[int, int],
    report: Progress | None = None,
) -> dict[str, Any]:
    """Replace each listed layer's convolution in ``model`` (in place) by its rank-``rank``
    factorization measured on ``inputs``; return the manifest's record of it: per layer the
    rank, the channels and the share of output variance kept."""
    nodes = {node.name: node for node in model.graph.node}
    weights = {tensor.name: tensor for tensor in model.graph.initializer}
    targets: list[tuple[int, onnx.NodeProto, npt.NDArray[np.float32], npt.NDArray[np.float32]]]
    targets = []
    for layer, rank in ranks.items():
        node = nodes.get(conv_name(layer))
        if node is None or node.op_type != "Conv" or len(node.input) != 3:
            raise ModelError(f"layer {layer} is not a convolution with a bias in this model")
        kernel = numpy_helper.to_array(weights[node.input[1]])
        bias = numpy_helper.to_array(weights[node.input[2]])
        if not 0 < rank < kernel.shape[0]:
            raise ModelError(
                f"layer {layer}: rank {rank} must be between 1 and its {kernel.shape[0] - 1}"
                " output channels less one"
            )
        targets.append((layer, node, kernel, bias))
    moments = _output_moments(model, [node.output[0] for _, node, _, _ in targets], inputs, report)
    record: dict[str, Any] = {"method": "PCA of the pre-activation outputs", "layers": {}}
    for layer, node, kernel, bias in targets:
        mean, covariance = moments[node.output[0]].mean_and_covariance()
        values, vectors = np.linalg.eigh(covariance)  # ascending
        order = np.argsort(values)[::-1]
        values, vectors = np.clip(values[order], 0.0, None), vectors[:, order]
        rank = ranks[layer]
        kept = float(values[:rank].sum() / values.sum()) if values.sum() > 0 else 1.0
        _split(model, node, kernel=kernel, bias=bias, basis=vectors[:, :rank], mean=mean)
        record["layers"][str(layer)] = {
            "rank": rank,
            "channels": int(kernel.shape[0]),
            "variance_kept": round(kept, 4),
        }
    return record


def _output_moments(
    model: onnx.ModelProto,
    outputs: Sequence[str],
    inputs: Sequence[ShapedFrame],
    report: Progress | None,
) -> dict[str, _Moments]:
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in outputs:
        probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    moments: dict[str, _Moments] = {}
    for done, shaped in enumerate(inputs, start=1):
        values = session.run(list(outputs), {INPUT_NAME: shaped.tensor()})
        for name, value in zip(outputs, values, strict=True):
            array = np.asarray(value, np.float32)
            moments.setdefault(name, _Moments(array.shape[1])).add(array)
        if report is not None:
            report("factorize", done, len(inputs))
    if not moments:
        raise ModelError("factorizing needs at least one calibration input")
    return moments


def _split(
    model: onnx.ModelProto,
    node: onnx.NodeProto,
    *,
    kernel: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32],
    basis: Float64Array,
    mean: Float64Array,
) -> None:
    """``node`` becomes the convolution into ``basis``'s directions, and a new 1x1
    convolution after it maps them back (plus the mean) to the original output."""
    channels = kernel.shape[0]
    reduced = (basis.T @ kernel.reshape(channels, -1)).reshape(-1, *kernel.shape[1:])
    reduced_bias = basis.T @ (bias - mean)
    expand = basis.reshape(channels, -1, 1, 1)
    name = node.name
    weights = {tensor.name: tensor for tensor in model.graph.initializer}
    weights[node.input[1]].CopyFrom(
        numpy_helper.from_array(reduced.astype(np.float32), node.input[1])
    )
    weights[node.input[2]].CopyFrom(
        numpy_helper.from_array(reduced_bias.astype(np.float32), node.input[2])
    )
    model.graph.initializer.extend([
        numpy_helper.from_array(expand.astype(np.float32), f"{name}_expand.weight"),
        numpy_helper.from_array(mean.astype(np.float32), f"{name}_expand.bias"),
    ])  # fmt: skip
    output = node.output[0]
    node.output[0] = f"{name}_reduced_out"
    expand_node = helper.make_node(
        "Conv",
        [node.output[0], f"{name}_expand.weight", f"{name}_expand.bias"],
        [output],
        name=f"{name}_expand",
        kernel_shape=[1, 1],
    )
    position = list(model.graph.node).index(node)
    model.graph.node.insert(position + 1, expand_node)


# -- the measurement -------------------------------------------------------------------------

#: unseen frames per clip, as tests/vision/test_models.py takes them
UNSEEN = {"vtest": 40, "bikes": 100}
#: calibration frames the build takes from each of its two clips
CALIBRATION_SHARE = default_model.DEFAULT_CALIBRATION_FRAMES // 2
SHAPES = ((416, 416), (416, 256))
TIMING_ROUNDS = 4
TIMING_CALLS = 60


def converted() -> onnx.ModelProto:
    """The Darknet network as the build converts it (before quantization)."""
    source = default_model.locate_darknet_source()
    return darknet.convert_darknet(
        source.cfg, source.weights, input_size=416, mask_overrides=default_model.MASK_OVERRIDES,
        dynamic_size=True,
    )  # fmt: skip


def agreement(
    reference: InferenceSession, candidate: InferenceSession, frames: Sequence[Image],
    shape: tuple[int, int],
) -> tuple[float, float]:  # fmt: skip
    """(recall, precision) of ``candidate``'s boxes against ``reference``'s (score >= 0.25)."""
    matched = wanted = found = 0
    for frame in frames:
        feed = {INPUT_NAME: ShapedFrame(frame, shape).tensor()}
        ref, got = (
            quantize.decode_yolo(np.asarray(s.run(None, feed)[0], np.float32))[0]
            for s in (reference, candidate)
        )
        matched += quantize.count_matches(ref, got)
        wanted += len(ref.xyxy)
        found += len(got.xyxy)
    return matched / max(wanted, 1), matched / max(found, 1)


def ms_per_frame(runtimes: Sequence[OpenVinoRuntime]) -> list[float]:
    """Median of interleaved rounds: CPU ms per 416x256 frame, batch 1, for each runtime."""
    batch = np.random.default_rng(0).random((1, 3, 256, 416), np.float32)
    rounds: list[list[float]] = [[] for _ in runtimes]
    for runtime in runtimes:
        for _ in range(5):
            runtime.run(batch)
    for _ in range(TIMING_ROUNDS):
        for times, runtime in zip(rounds, runtimes, strict=True):
            start = time.process_time()
            for _ in range(TIMING_CALLS):
                runtime.run(batch)
            times.append(1000 * (time.process_time() - start) / TIMING_CALLS)
    return [float(np.median(times)) for times in rounds]


def session_of(model: onnx.ModelProto) -> InferenceSession:
    return InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", default=DEFAULT_RANKS, help="rank sets, ';' between sets")
    args = parser.parse_args()
    specs = [
        {int(layer): int(rank) for layer, rank in (pair.split(":") for pair in spec.split(","))}
        for spec in args.ranks.split(";")
    ]
    frames, _ = calibration.footage(
        calibration.default_clips(), default_model.DEFAULT_CALIBRATION_FRAMES, lambda *_: None
    )
    inputs = quantize.letterboxed_inputs(frames, 416, own=False)
    unseen = {
        name: calibration.unseen_frames(path, UNSEEN[name], CALIBRATION_SHARE)
        for name, path in (("vtest", vtest_path()), ("bikes", bikes_path()))
    }
    reference = session_of(converted())
    with tempfile.TemporaryDirectory(prefix="feedtag-factorize-") as scratch:
        folder = Path(scratch)

        def int8_of(model: onnx.ModelProto, name: str) -> OpenVinoRuntime:
            fp32, int8 = folder / f"{name}-fp32.onnx", folder / f"{name}-int8.onnx"
            onnx.save(model, str(fp32))
            quantize.quantize(fp32, int8, frames, 416, lambda *_: None)
            return OpenVinoRuntime(int8, input_size=416)

        plain = int8_of(converted(), "plain")
        print(f"{'ranks':<16}{'kept':<18}" + "".join(
            f"{clip} {w}x{h}".ljust(20) for w, h in SHAPES for clip in unseen
        ) + "ms int8  ms plain")  # fmt: skip
        for number, ranks in enumerate(specs):
            model = converted()
            record = factorize(model, inputs, ranks)
            kept = ",".join(f"{k}:{v['variance_kept']:.3f}" for k, v in record["layers"].items())
            candidate = session_of(model)
            cells = []
            for shape in SHAPES:
                for clip_frames in unseen.values():
                    recall, precision = agreement(reference, candidate, clip_frames, shape)
                    cells.append(f"{recall:.3f} / {precision:.3f}".ljust(20))
            factorized_ms, plain_ms = ms_per_frame([int8_of(model, f"set{number}"), plain])
            spec = ",".join(f"{k}:{v}" for k, v in ranks.items())
            print(f"{spec:<16}{kept:<18}" + "".join(cells) + f"{factorized_ms:<9.2f}{plain_ms:.2f}",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
