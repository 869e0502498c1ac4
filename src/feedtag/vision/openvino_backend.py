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
import os
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

INSTALL_HINT: Final = "pip install 'feedtag[openvino]'"

# OpenVINO element types by name, as ONNX type strings (what image_input reads)
_ELEMENT_TYPES: Final = {"f32": "tensor(float)", "f16": "tensor(float16)"}


class OpenVinoDetector(LetterboxDetector):
    """A detector running an ``.onnx`` (or OpenVINO IR ``.xml``) file with OpenVINO.

    ``device`` is an OpenVINO device name (``CPU``, ``GPU``, ``NPU``, ``AUTO``);
    ``num_threads`` bounds the CPU threads of one inference, 1 by default for the same reason
    as ONNX Runtime's ``intra_op_num_threads``. The other arguments are
    :class:`~feedtag.vision.onnx_backend.OnnxDetector`'s.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        class_names: Sequence[str],
        *,
        input_size: int | None = None,
        device: str = "CPU",
        num_threads: int = DEFAULT_INTRA_OP_THREADS,
        warm_up: bool = True,
        **options: Unpack[DetectorOptions],
    ) -> None:
        if num_threads < 1:
            raise ValueError(f"expected num_threads >= 1, got {num_threads!r}")
        self.model_path = Path(model_path)
        runtime = OpenVinoRuntime(self.model_path, device, num_threads, input_size)
        super().__init__(
            runtime, runtime.model_input, class_names, description=str(self.model_path), **options
        )
        self.device = device
        if warm_up:
            self.warm_up()


class OpenVinoRuntime:
    """A compiled OpenVINO model with one image input; errors come out as DetectorError.

    One infer request serves every call, under a lock: OpenVINO's requests are not safe to
    share between threads, and with ``num_threads=1`` a second request would only queue for
    the same core anyway.
    """

    def __init__(
        self,
        path: Path,
        device: str = "CPU",
        num_threads: int = DEFAULT_INTRA_OP_THREADS,
        input_size: int | None = None,
    ) -> None:
        ov = import_openvino()
        self._path = path
        if not path.is_file():
            raise DetectorError(f"load {path} failed: model file not found")
        try:
            core = ov.Core()
            model = core.read_model(str(path))
            specs = [_spec(port) for port in model.inputs]
        except Exception as exc:
            raise DetectorError(f"load {path} failed: {_detail(exc)}") from exc
        self.model_input = image_input(specs, input_size, str(path))
        config = {"INFERENCE_NUM_THREADS": num_threads, "PERFORMANCE_HINT": "LATENCY"}
        try:
            compiled = core.compile_model(model, device, config)
            self._request = compiled.create_infer_request()
        except Exception as exc:
            raise DetectorError(f"compile {path} for {device} failed: {_detail(exc)}") from exc
        self._outputs = len(compiled.outputs)
        self._lock = threading.Lock()

    def run(self, batch: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
        with self._lock:
            try:
                self._request.infer({0: batch})
                # copies: the request reuses its output buffers on the next call
                return [
                    np.array(self._request.get_output_tensor(index).data)
                    for index in range(self._outputs)
                ]
            except Exception as exc:
                raise DetectorError(
                    f"inference with {self._path} on input {list(batch.shape)} failed:"
                    f" {_detail(exc)} (model input {self.model_input.describe()})"
                ) from exc


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
