"""Which of ONNX Runtime's GPU execution providers work on this machine.

The ``onnxruntime-gpu`` build (``pip install feedtag[gpu]``; docs/vision.md, "On a GPU")
lists the TensorRT and CUDA providers whether or not a GPU, the CUDA and cuDNN libraries or
TensorRT are there; a session asked for a provider that cannot start falls back to the CPU
and prints pages of errors. So a provider counts as working only when a session on a
one-node model actually starts on it, tried once per process with ONNX Runtime's logging
off. The CPU build lists no GPU provider and nothing is tried.

Both distributions, ``onnxruntime`` and ``onnxruntime-gpu``, install the same ``onnxruntime``
package; with both installed, the one installed last provides its files, and uninstalling
either breaks the other. :func:`runtime_clash` says so, for the log.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import onnxruntime  # type: ignore[import-untyped,unused-ignore]

from feedtag.vision.letterbox import input_shape

log = logging.getLogger(__name__)

ort: Any = onnxruntime

#: the execution providers that run on a GPU, best first
GPU_PROVIDERS: Final = ("TensorrtExecutionProvider", "CUDAExecutionProvider")

#: ONNX Runtime's logger severities: 2 warning (its default), 4 fatal
_ORT_DEFAULT_SEVERITY: Final = 2
_ORT_FATAL_ONLY: Final = 4


@functools.cache
def working_gpu_providers() -> tuple[str, ...]:
    """The GPU execution providers a session starts on here, best first; empty on the CPU
    build of ONNX Runtime, on a machine without a GPU, or where the libraries a provider
    needs are missing."""
    built = [name for name in GPU_PROVIDERS if name in ort.get_available_providers()]
    if not built:
        return ()
    _preload_cuda_libraries()
    working = tuple(name for name in built if _starts_on(name))
    if working:
        log.info("GPU execution providers that work here: %s", ", ".join(working))
    else:
        log.warning(
            "ONNX Runtime has %s, but no session starts on them (no GPU, or the CUDA, cuDNN "
            "or TensorRT libraries are missing; pip install 'onnxruntime-gpu[cuda,cudnn]'): "
            "the detector runs on the CPU",
            ", ".join(built),
        )
    return working


def on_gpu(providers: Sequence[str]) -> bool:
    """Whether a session with these providers runs on a GPU.

    >>> on_gpu(["CUDAExecutionProvider", "CPUExecutionProvider"]), on_gpu(["CPUExecutionProvider"])
    (True, False)
    """
    return any(name in GPU_PROVIDERS for name in providers)


def tensorrt_options(
    cache: Path, input_name: str | None, long_side: int | None, stride: int | None, batch: int
) -> dict[str, str | bool]:
    """ONNX Runtime's TensorRT provider options: the engines it builds (tens of seconds each)
    kept in ``cache``, so that a restart does not build them again; and, for the default
    model (its input ``input_name`` run at ``long_side``), one optimization profile for every
    batch up to ``batch``: in stride-aligned rectangles up to the square when ``stride`` is
    given (tuned for a full batch of 16:9 frames), else in the square. Without a profile
    TensorRT builds an engine for each new input shape it meets, and the batcher forms
    batches of any size.

    >>> options = tensorrt_options(Path("/m/trt"), "images", 416, 32, 32)
    >>> options["trt_profile_opt_shapes"], options["trt_profile_max_shapes"]
    ('images:32x3x256x416', 'images:32x3x416x416')
    >>> tensorrt_options(Path("/m/trt"), "images", 416, None, 8)["trt_profile_min_shapes"]
    'images:1x3x416x416'
    >>> sorted(tensorrt_options(Path("/m/trt"), None, None, None, 8))
    ['trt_engine_cache_enable', 'trt_engine_cache_path']
    """
    options: dict[str, str | bool] = {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
    }
    if not (input_name and long_side):
        return options
    square = f"{long_side}x{long_side}"
    smallest, width, height = square, long_side, long_side
    if stride:
        smallest = f"{stride}x{stride}"
        width, height = input_shape(16, 9, long_side, stride)
    options |= {
        "trt_profile_min_shapes": f"{input_name}:1x3x{smallest}",
        "trt_profile_opt_shapes": f"{input_name}:{batch}x3x{height}x{width}",
        "trt_profile_max_shapes": f"{input_name}:{batch}x3x{square}",
    }
    return options


def runtime_clash() -> str | None:
    """A warning when both ONNX Runtime distributions are installed, else None."""
    installed = []
    for name in ("onnxruntime", "onnxruntime-gpu"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            installed.append(f"{name} {importlib.metadata.version(name)}")
    if len(installed) < 2:
        return None
    return (
        f"both {' and '.join(installed)} are installed; they share one package, so the one "
        "installed last is in use. On a GPU machine run scripts/setup.sh --gpu, or: pip "
        "uninstall -y onnxruntime onnxruntime-gpu && pip install 'onnxruntime-gpu[cuda,cudnn]'"
    )


def _preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from NVIDIA's pip packages (``onnxruntime-gpu[cuda,cudnn]``)
    when they are installed; system libraries are found without this."""
    if importlib.util.find_spec("nvidia") is None or not hasattr(ort, "preload_dlls"):
        return
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
            ort.preload_dlls()
    except Exception as error:  # noqa: BLE001 - a failed preload leaves the CPU, logged
        log.debug("preloading the CUDA libraries failed: %r", error)
    if said.getvalue().strip():
        log.debug("preloading the CUDA libraries: %s", said.getvalue().strip())


def _starts_on(provider: str) -> bool:
    """Whether a session asked for ``provider`` first gets it (instead of falling back)."""
    said = io.StringIO()
    ort.set_default_logger_severity(_ORT_FATAL_ONLY)
    try:
        options = ort.SessionOptions()
        options.log_severity_level = _ORT_FATAL_ONLY
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
            session = ort.InferenceSession(
                _identity_model(), options, providers=[provider, "CPUExecutionProvider"]
            )
        return provider in session.get_providers()
    except Exception as error:  # noqa: BLE001 - any failure means this provider does not work
        log.debug("%s does not start: %r", provider, error)
        return False
    finally:
        ort.set_default_logger_severity(_ORT_DEFAULT_SEVERITY)


def _identity_model() -> bytes:
    """A one-node ONNX model, enough to start a session on a provider."""
    # onnx only where a GPU provider is listed: importing it costs 0.4 s and 17 MB of RSS
    # that a CPU-only process never needs
    import onnx  # noqa: PLC0415

    tensor = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [tensor("x", onnx.TensorProto.FLOAT, [1])],
        [tensor("y", onnx.TensorProto.FLOAT, [1])],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    serialized: bytes = model.SerializeToString()
    return serialized
