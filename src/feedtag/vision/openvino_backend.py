"""The OpenVINO detector backend, for Intel CPUs, iGPUs and NPUs: optional, installed with
``pip install 'feedtag[openvino]'``.

It reads the same ``.onnx`` files as :class:`~feedtag.vision.onnx_backend.OnnxDetector` and
shares its letterbox, batching and decoding (:class:`~feedtag.vision.onnx_backend.
LetterboxDetector`); only inference differs. ``openvino`` is imported when a detector is made,
so feedtag imports and runs without it.

::

    detector = OpenVinoDetector("yolov8n.onnx", coco_names, layout="yolov8", device="CPU")
"""

from __future__ import annotations

import importlib
import logging
import os
import queue
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Unpack

import numpy as np
import numpy.typing as npt

from feedtag.errors import DetectorError
from feedtag.vision.onnx_backend import (
    DEFAULT_INTRA_OP_THREADS,
    DetectorOptions,
    InputSpec,
    LetterboxDetector,
    image_input,
)

log = logging.getLogger(__name__)

INSTALL_HINT: Final = "pip install 'feedtag[openvino]'"

# OpenVINO element types by name, as ONNX type strings (what image_input reads)
_ELEMENT_TYPES: Final = {"f32": "tensor(float)", "f16": "tensor(float16)"}


class OpenVinoDetector(LetterboxDetector):
    """A detector running an ``.onnx`` (or OpenVINO IR ``.xml``) file with OpenVINO.

    ``device`` is an OpenVINO device name (``CPU``, ``GPU``, ``NPU``, ``AUTO``);
    ``num_threads`` bounds the CPU threads of one inference, 1 by default for the same reason
    as ONNX Runtime's ``intra_op_num_threads``; ``streams`` is how many inferences run at
    once, one per thread that calls :meth:`detect` (the batch scheduler's workers). The other
    arguments are :class:`~feedtag.vision.onnx_backend.OnnxDetector`'s.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        class_names: Sequence[str],
        *,
        input_size: int | None = None,
        device: str = "CPU",
        num_threads: int = DEFAULT_INTRA_OP_THREADS,
        streams: int = 1,
        warm_up: bool = True,
        **options: Unpack[DetectorOptions],
    ) -> None:
        if num_threads < 1:
            raise ValueError(f"expected num_threads >= 1, got {num_threads!r}")
        if streams < 1:
            raise ValueError(f"expected streams >= 1, got {streams!r}")
        self.model_path = Path(model_path)
        runtime = OpenVinoRuntime(self.model_path, device, num_threads, input_size, streams)
        super().__init__(
            runtime, runtime.model_input, class_names, description=str(self.model_path), **options
        )
        self.device = device
        self.streams = runtime.streams
        #: the precision OpenVINO computes in (``bf16`` for an FP32 model on a CPU with AMX)
        self.inference_precision = runtime.inference_precision
        if warm_up:
            self.warm_up()  # the runtime runs each of its requests on the new shape

    @property
    def regions_pay(self) -> bool:
        """False. With AMX an active region costs well over its share of the whole frame
        (a 128x192 crop, 23% of 416x256's area, took about 60% of its time), each new crop
        shape is prepared once (about 10 ms), crops never share a batch with whole frames,
        and W1 cost 1.5-14% more with regions on. Without AMX a crop's time follows its area,
        but two W1 pairs showed no whole-path saving either (docs/performance.md)."""
        return False


class OpenVinoRuntime:
    """A compiled OpenVINO model with one image input; errors come out as DetectorError.

    An infer request serves one call at a time, so the runtime holds one request per stream,
    all made at load, and a call takes a free one and gives it back: memory is taken at start,
    not whenever a new thread first calls, and no more calls run at once than there are
    streams. On a CPU the model is compiled with ``streams`` streams of ``num_threads`` threads
    each: with one stream, requests from two threads would queue for the same core.

    Each request prepares itself for an input shape it has not run before (about 10 ms on a
    CPU). The first call with a new shape runs every request on it, one after another, while
    no other call runs; only then do concurrent callers get them. Calls with a new shape come
    together in practice (every camera's first frame, a detector's first batches of 2, 3, ...,
    an active region's new crop), and a process whose threads met fresh requests on a new
    shape all at once was seen to stall; this keeps preparation off the concurrent path.
    """

    def __init__(
        self,
        path: Path,
        device: str = "CPU",
        num_threads: int = DEFAULT_INTRA_OP_THREADS,
        input_size: int | None = None,
        streams: int = 1,
    ) -> None:
        ov = import_openvino()
        self._tensor = ov.Tensor
        self._path = path
        if not path.is_file():
            raise DetectorError(f"load {path} failed: model file not found")
        try:
            core = ov.Core()
            model = core.read_model(str(path))
            clipped = clip_preactivation_pairs(model, ov)
            if clipped:
                log.debug("%s: %d pre-activation quantization pairs run as clips", path, clipped)
            specs = [_spec(port) for port in model.inputs]
        except Exception as exc:
            raise DetectorError(f"load {path} failed: {_detail(exc)}") from exc
        self.model_input = image_input(specs, input_size, str(path))
        config: dict[str, Any]
        if device == "CPU":
            config = {"NUM_STREAMS": streams, "INFERENCE_NUM_THREADS": streams * num_threads}
        else:
            config = {"PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT"}
        try:
            self._compiled = core.compile_model(model, device, config)
            first = self._compiled.create_infer_request()  # fails here, at load, if it cannot
        except Exception as exc:
            raise DetectorError(f"compile {path} for {device} failed: {_detail(exc)}") from exc
        try:
            hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")
            self.inference_precision = _precision_name(hint)
        except RuntimeError:  # a device (AUTO, say) that does not tell
            self.inference_precision = "unknown"
        self._outputs = len(self._compiled.outputs)
        #: inferences that run at once (a device other than the CPU decides for itself)
        self.streams = (
            streams if device != "CPU" else int(self._compiled.get_property("NUM_STREAMS"))
        )
        # first in, first out: calls one after another go round every request, so the
        # detector's warm-up (one call per stream) runs each once
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._free.put(first)
        for _ in range(self.streams - 1):
            self._free.put(self._compiled.create_infer_request())
        self._shapes: set[tuple[int, ...]] = set()  # every request has run on these
        self._preparing = threading.Lock()

    def run(self, batch: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
        if batch.shape not in self._shapes:
            self._prepare(batch)
        request = self._free.get()  # waits while every stream is busy
        try:
            return self._infer(request, batch)
        finally:
            self._free.put(request)

    def _prepare(self, batch: npt.NDArray[Any]) -> None:
        """Run every request once on ``batch``'s shape, alone: it takes them all (waiting for
        the calls in flight), so no other call runs meanwhile. One shape at a time."""
        with self._preparing:
            if batch.shape in self._shapes:
                return  # another thread prepared it while this one waited
            requests = [self._free.get() for _ in range(self.streams)]
            try:
                for request in requests:
                    self._infer(request, batch)
            finally:
                for request in requests:
                    self._free.put(request)
            self._shapes.add(batch.shape)

    def _infer(self, request: Any, batch: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
        try:
            # The batch as the request's input without a copy (the caller's buffer is not
            # touched until this call returns): 0.19 ms less per call at 416x256 than
            # infer({0: batch}), which copies it (docs/performance.md).
            request.set_input_tensor(self._tensor(np.ascontiguousarray(batch), shared_memory=True))
            request.infer()
            # copies: the request reuses its output buffers on the next call
            return [
                np.array(request.get_output_tensor(index).data) for index in range(self._outputs)
            ]
        except Exception as exc:
            raise DetectorError(
                f"inference with {self._path} on input {list(batch.shape)} failed:"
                f" {_detail(exc)} (model input {self.model_input.describe()})"
            ) from exc


#: activations OpenVINO fuses into the convolution before them (ONNX's LeakyRelu is a PRelu
#: with a constant slope once read)
FUSED_ACTIVATIONS: Final = frozenset({"PRelu", "Relu"})


def clip_preactivation_pairs(model: Any, ov: Any) -> int:
    """Run each INT8 quantization pair between a convolution and its activation as a clip to
    the pair's range, in place; how many pairs were replaced.

    The INT8 model (:mod:`feedtag.vision.modelbuild.quantize`) quantizes each convolution's
    output before its LeakyRelu as well as after it, because ONNX Runtime's CPU kernels run
    the convolution and the activation as two INT8 operators (``QLinearConv``,
    ``QLinearLeakyRelu``) and the first needs an output range. OpenVINO fuses a convolution,
    its activation and the quantization after them into one INT8 kernel; the pair in
    between stopped that fusion and made it convert every element from u8 back to float and
    subtract its zero point (0.59 ms of a 6.3 ms inference at 416x256 on a 2-vCPU AMD EPYC,
    docs/performance.md, "Quantization pairs OpenVINO does not need").

    OpenVINO reads an ONNX pair as ``FakeQuantize -> Convert -> Convert -> [Subtract] ->
    Multiply``. Where that chain starts at a convolution's output (its bias ``Add`` or the
    ``Convolution`` itself), has no other reader, and only activations read its end, it is
    replaced by a ``Clamp`` to the ``FakeQuantize``'s input range, which OpenVINO fuses into
    the convolution too: the range's bounds still apply (the recipe chose them, clipping the
    far negative tail), only the rounding to its steps goes. The file on disk is unchanged;
    ONNX Runtime reads it as built. OpenVINO's own transformations have no pass for this.
    """
    replaced = 0
    for quantize in model.get_ordered_ops():
        if quantize.get_type_name() != "FakeQuantize" or not _after_convolution(quantize):
            continue
        end = _dequantized_end(quantize)
        bounds = None if end is None else _pair_range(quantize, end)
        if end is None or bounds is None:
            continue
        readers = [target.get_node() for target in end.output(0).get_target_inputs()]
        if not readers or any(r.get_type_name() not in FUSED_ACTIVATIONS for r in readers):
            continue
        clamp = ov.opset13.clamp(quantize.input_value(0), *bounds)
        end.output(0).replace(clamp.output(0))
        replaced += 1
    return replaced


def _after_convolution(node: Any) -> bool:
    """Whether ``node`` reads a convolution's output (directly or through its bias add)."""
    source = node.input_value(0).get_node()
    if source.get_type_name() == "Add":
        return any(
            source.input_value(i).get_node().get_type_name() == "Convolution" for i in (0, 1)
        )
    return bool(source.get_type_name() == "Convolution")


def _dequantized_end(quantize: Any) -> Any:
    """The ``Multiply`` that ends the ``Convert, Convert, [Subtract,] Multiply`` chain after
    ``quantize``, each step with no other reader; None where the chain differs."""
    node = quantize
    for expected in ("Convert", "Convert", "Subtract", "Multiply"):
        readers = [target.get_node() for target in node.output(0).get_target_inputs()]
        if len(readers) != 1:
            return None
        reader = readers[0]
        if reader.get_type_name() != expected:
            if expected == "Subtract" and reader.get_type_name() == "Multiply":
                return reader  # a zero point of 0 needs no subtraction
            return None
        node = reader
    return node


def _pair_range(quantize: Any, end: Any) -> tuple[float, float] | None:
    """``quantize``'s input range, where the dequantization ending in ``end`` maps its
    integer range back onto it (what an ONNX pair with one scale and zero point does), so
    that a clamp to it stands for the pair but for the rounding; None otherwise."""
    before = end.input_value(0).get_node()
    zero: float | None = 0.0  # no Subtract: a zero point of 0
    if before.get_type_name() == "Subtract":
        point = before.input_value(1).get_node()
        if point.get_type_name() == "Convert":
            point = point.input_value(0).get_node()
        zero = _scalar(point)
    values = [_scalar(quantize.input_value(index).get_node()) for index in (1, 2, 3, 4)]
    values += [_scalar(end.input_value(1).get_node()), zero]
    if any(value is None for value in values):
        return None
    low, high, out_low, out_high, scale, zero_point = (float(v) for v in values if v is not None)
    tolerance = 1e-3 * max(abs(low), abs(high), 1.0)
    inverts = (
        abs((out_low - zero_point) * scale - low) <= tolerance
        and abs((out_high - zero_point) * scale - high) <= tolerance
    )
    return (low, high) if inverts else None


def _scalar(node: Any) -> float | None:
    """The value of a one-element ``Constant``; None for anything else."""
    if node.get_type_name() != "Constant":
        return None
    data = np.asarray(node.get_data())
    return float(data.reshape(-1)[0]) if data.size == 1 else None


def default_cpu_precision() -> str | None:
    """The precision OpenVINO computes an FP32 model in on this machine's CPU (``bf16`` where
    the CPU has AMX, ``f32`` otherwise), or None when OpenVINO is not installed or has no CPU
    device. Where it is ``bf16``, OpenVINO runs the FP32 model faster than ONNX Runtime runs
    the INT8 one (docs/performance.md), which is what ``detector.backend: auto`` goes by."""
    try:
        ov = importlib.import_module("openvino")
        return _precision_name(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))
    except (ImportError, RuntimeError) as error:  # not installed, or no CPU plugin
        log.debug("OpenVINO does not serve this CPU: %s", error)
        return None


def cpu_has_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU has AMX tile units (``amx_bf16`` among the flags Linux lists; False
    where the list cannot be read). Both AMX and AVX-512 BF16 CPUs make OpenVINO compute FP32
    in bf16, but only AMX makes bf16 the faster precision: on AVX-512 BF16 alone (AMD Zen 4
    and later, Intel Cooper Lake) OpenVINO runs the INT8 model cheaper (docs/performance.md)."""
    try:
        with cpuinfo.open(encoding="ascii", errors="replace") as lines:
            for line in lines:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split(":", 1)[-1].split()
    except OSError as error:
        log.debug("the CPU's flags cannot be read from %s: %s", cpuinfo, error)
    return False


def _precision_name(element_type: Any) -> str:
    """``bf16``, ``f32``, ... from an OpenVINO element type."""
    name = getattr(element_type, "get_type_name", None)
    return str(name() if callable(name) else element_type)


def import_openvino() -> Any:
    """The ``openvino`` module, or a :class:`DetectorError` that says how to install it."""
    try:
        return importlib.import_module("openvino")
    except ImportError as exc:
        raise DetectorError(
            f"the OpenVINO backend needs the openvino package: {INSTALL_HINT}"
        ) from exc


def _spec(port: Any) -> InputSpec:
    shape = [dim.get_length() if dim.is_static else None for dim in port.get_partial_shape()]
    element = port.get_element_type().get_type_name()
    return InputSpec(port.get_any_name(), shape, _ELEMENT_TYPES.get(element, element))


def _detail(exc: BaseException) -> str:
    """OpenVINO's messages start with lines of C++ source locations; keep what follows."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.startswith("Exception from ")]
    return (meaningful or lines or [type(exc).__name__])[0][:400]
