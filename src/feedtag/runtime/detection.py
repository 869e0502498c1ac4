"""Building the configured detector: the default model (built offline on first use) or a
user's ONNX file."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from feedtag.config.models import DetectorConfig
from feedtag.errors import ModelError
from feedtag.runtime.cores import detector_batch, detector_workers
from feedtag.vision import registry
from feedtag.vision.anonymize import FINDER_CONFIDENCE, PERSON_LABELS, Anonymizer, PersonFinder
from feedtag.vision.gpu import runtime_clash, tensorrt_options, working_gpu_providers
from feedtag.vision.onnx_backend import (
    DEFAULT_MAX_BATCH,
    DetectorOptions,
    LetterboxDetector,
    OnnxDetector,
    ProviderOptions,
)
from feedtag.vision.openvino_backend import (
    OpenVinoDetector,
    cpu_has_amx,
    default_cpu_precision,
)

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
#: the person finder runs the default model at this input size: tiles of 416 at native
#: scale find people the 320 model misses
FINDER_INPUT_SIZE: Final = 416
#: TensorRT's engine cache, in the models folder
TENSORRT_CACHE: Final = "tensorrt-engines"


@dataclass(frozen=True, slots=True)
class Runtime:
    """The inference runtime and the default model's precision that ``detector`` settings
    resolve to on this machine (``backend`` and ``precision`` may be ``auto``)."""

    backend: str  # "onnxruntime" or "openvino"
    precision: str  # "int8" or "fp32"
    #: ONNX Runtime on a GPU (a CUDA or TensorRT provider works here)
    gpu: bool = False

    def describe(self, device: str = "CPU") -> str:
        where = f" on {device}" if self.backend == "openvino" else " on a GPU" if self.gpu else ""
        name = "OpenVINO" if self.backend == "openvino" else "ONNX Runtime"
        return f"{name}{where}, {self.precision.upper()} default model"


def resolve_runtime(
    settings: DetectorConfig,
    cpu_precision: str | None = None,
    amx: bool | None = None,
    gpu: bool | None = None,
) -> Runtime:
    """What ``backend: auto`` and ``precision: auto`` mean here.

    Where ONNX Runtime has a GPU provider that works (``gpu``, probed by
    :func:`~feedtag.vision.gpu.working_gpu_providers` when not given: the ``onnxruntime-gpu``
    build on a machine with a GPU), ``auto`` is ONNX Runtime on that GPU with the FP32 model
    (the INT8 file's quantize/dequantize pairs are for CPU kernels). Otherwise OpenVINO is
    chosen when it is installed and computes FP32 models in bf16 on this CPU
    (``cpu_precision``, asked of OpenVINO when not given), i.e. on CPUs with AMX or AVX-512
    BF16: there it runs the default model 1.7-2.4x cheaper than ONNX Runtime runs the INT8
    one (docs/performance.md). Elsewhere the two cost about the same and ONNX Runtime with
    INT8 serves. ``precision: auto`` under OpenVINO on the CPU is FP32, computed in bf16,
    where the CPU has AMX (``amx``, read from the CPU's flags when not given; INT8 is no
    faster there, and less exact), and INT8 otherwise (with AVX-512 BF16 alone, INT8 costs
    0.7x bf16).

    >>> resolve_runtime(DetectorConfig(), cpu_precision="bf16", amx=True, gpu=False)
    Runtime(backend='openvino', precision='fp32', gpu=False)
    >>> resolve_runtime(DetectorConfig(), cpu_precision="bf16", amx=False, gpu=False)
    Runtime(backend='openvino', precision='int8', gpu=False)
    >>> resolve_runtime(DetectorConfig(), cpu_precision="f32", amx=False, gpu=False)
    Runtime(backend='onnxruntime', precision='int8', gpu=False)
    >>> resolve_runtime(DetectorConfig(backend="openvino"), cpu_precision="f32", amx=False)
    Runtime(backend='openvino', precision='int8', gpu=False)
    >>> resolve_runtime(DetectorConfig(precision="int8"), cpu_precision="bf16", amx=True,
    ...                 gpu=False)
    Runtime(backend='openvino', precision='int8', gpu=False)
    >>> resolve_runtime(DetectorConfig(), cpu_precision="bf16", amx=True, gpu=True)
    Runtime(backend='onnxruntime', precision='fp32', gpu=True)
    """
    backend = settings.backend
    if gpu is None:
        gpu = backend in ("auto", "onnxruntime") and bool(working_gpu_providers())
    if backend == "auto" and gpu:
        backend = "onnxruntime"
    gpu = gpu and backend == "onnxruntime"
    needs_cpu_answer = backend == "auto" or (
        backend == "openvino" and settings.device == "CPU" and settings.precision == "auto"
    )
    if cpu_precision is None and needs_cpu_answer:
        cpu_precision = default_cpu_precision()
    bf16 = cpu_precision == "bf16"
    if backend == "auto":
        backend = "openvino" if bf16 else "onnxruntime"
    precision = settings.precision
    if precision == "auto":
        if gpu or (backend == "openvino" and settings.device != "CPU"):
            precision = "fp32"  # GPUs and NPUs take the FP32 file in their own precision
        elif backend == "openvino" and bf16 and (cpu_has_amx() if amx is None else amx):
            precision = "fp32"
        else:
            precision = "int8"
    return Runtime(backend, precision, gpu)


def default_model_info(
    settings: DetectorConfig, progress: Progress | None = None
) -> registry.ModelInfo:
    """The default model at the configured size and precision (``auto`` resolved as
    :func:`resolve_runtime` resolves it), built if missing or stale."""
    folder = settings.models_dir or registry.default_models_dir()
    registry.ensure_default_model(folder, progress)
    precision = resolve_runtime(settings).precision
    manifest = folder / f"{registry.model_name(settings.input_size, precision)}.json"
    if not manifest.is_file():
        registry.build_default(folder, progress)
    info = registry.load_model_info(manifest)
    if not registry.verify_model(info):
        raise ModelError(f"{info.path} does not match the sha256 in its manifest")
    return info


def build_detector(settings: DetectorConfig, progress: Progress | None = None) -> LetterboxDetector:
    """The detector ``settings`` describe, loaded and warmed up, on the runtime
    :func:`resolve_runtime` picks (logged)."""
    clash = runtime_clash()
    if clash:
        log.warning("%s", clash)
    runtime = resolve_runtime(settings)
    log.info("detector: %s", runtime.describe(settings.device))
    size: int | None = None
    stride: int | None = None
    if settings.model == "default":
        info = default_model_info(settings, progress)
        path, names, layout = info.path, list(info.class_names), info.layout
        # dynamic height and width: each camera's frames run in their own rectangle
        size, stride = info.input_size, info.input_stride
    else:
        path = Path(settings.model)
        if settings.class_names is None:
            raise ModelError("detector.class_names is required for a user model")
        names, layout = list(settings.class_names), settings.layout
    options: DetectorOptions = {
        "input_stride": stride,
        "layout": layout,
        "confidence_threshold": settings.confidence,
        "iou_threshold": settings.iou,
        "max_batch": detector_batch(settings, gpu=runtime.gpu),
    }
    # one OpenVINO stream per worker thread, so that they run side by side
    return _on_runtime(
        runtime,
        settings,
        path,
        names,
        size=size,
        options=options,
        streams=detector_workers(settings, gpu=runtime.gpu),
    )


def build_anonymizer(settings: DetectorConfig) -> Anonymizer:
    """The anonymizer for every image written: a person finder on its own session of the
    detector's model (the default model at 416, whatever size analysis runs at, on the
    runtime :func:`resolve_runtime` picks), at the finder's low threshold. A model without a
    person class gets no finder, so every image is blurred whole (fail closed), and that is
    logged."""
    runtime = resolve_runtime(settings)
    size: int | None = None
    stride: int | None = None
    if settings.model == "default":
        info = default_model_info(settings.model_copy(update={"input_size": FINDER_INPUT_SIZE}))
        path, names, layout = info.path, list(info.class_names), info.layout
        # each image and tile in its own stride-aligned rectangle at the same scale as in
        # the square: a 640x360 image's whole-frame look runs at 416x256, not 416x416
        size, stride = info.input_size, info.input_stride
    else:
        path, names, layout = (
            Path(settings.model),
            list(settings.class_names or []),
            settings.layout,
        )
    if not set(names) & PERSON_LABELS:
        log.warning(
            "the detector has no person class: every image written is blurred whole,"
            " since people cannot be found to cover them"
        )
        return Anonymizer(None)
    options: DetectorOptions = {
        "input_stride": stride,
        "layout": layout,
        "confidence_threshold": FINDER_CONFIDENCE,
        "iou_threshold": settings.iou,
        "max_batch": detector_batch(settings, gpu=runtime.gpu),
        "classes": [index for index, name in enumerate(names) if name in PERSON_LABELS],
    }
    finder = _on_runtime(runtime, settings, path, names, size=size, options=options)
    return Anonymizer(PersonFinder(finder, tile=finder.model_input.size))


def tensorrt_provider_options(
    settings: DetectorConfig, size: int | None, stride: int | None, batch: int
) -> ProviderOptions:
    """TensorRT's options (:func:`~feedtag.vision.gpu.tensorrt_options`) for a model run with
    ``settings``: its engines under the models folder; ``size`` is the default model's input
    side (None for a user's model, whose input name and shapes are its own, so no profile),
    ``stride`` its rectangles' stride (None for square tiles), ``batch`` the largest batch."""
    engines = (settings.models_dir or registry.default_models_dir()) / TENSORRT_CACHE
    input_name = registry.INPUT_NAME if size else None
    options = tensorrt_options(engines, input_name, size, stride, batch)
    return {"TensorrtExecutionProvider": options}


def _on_runtime(
    runtime: Runtime,
    settings: DetectorConfig,
    path: Path,
    names: list[str],
    *,
    size: int | None,
    options: DetectorOptions,
    streams: int = 1,
) -> LetterboxDetector:
    """The detector of ``path`` on ``runtime``'s backend, with ``settings``' threads (and
    OpenVINO device); ``streams`` OpenVINO calls may run at once. On a GPU, TensorRT (when
    ONNX Runtime runs on it) keeps its engines beside the models
    (:func:`~feedtag.vision.gpu.tensorrt_options`)."""
    if runtime.backend == "openvino":
        return OpenVinoDetector(
            path, names, input_size=size, device=settings.device, num_threads=settings.threads,
            streams=streams, **options,
        )  # fmt: skip
    batch = options.get("max_batch") or DEFAULT_MAX_BATCH
    tensorrt = tensorrt_provider_options(settings, size, options.get("input_stride"), batch)
    return OnnxDetector(
        path, names, input_size=size, intra_op_num_threads=settings.threads,
        provider_options=tensorrt if runtime.gpu else None, **options,
    )  # fmt: skip
