"""The ONNX Runtime detector backend, and the letterbox-infer-decode path every backend shares.

:class:`LetterboxDetector` does what any model file needs around inference: each frame is
letterboxed (:mod:`feedtag.vision.letterbox`) into the model's square input, or, for a model
with dynamic height and width run with ``input_stride`` (the default model), into the
smallest stride-aligned rectangle that holds it; frames of one input shape are letterboxed
straight into a batch buffer the model accepts, the outputs go through the decoder of the
model's layout (:mod:`feedtag.vision.decoders`), and boxes are mapped back to each frame.
A backend supplies only an :class:`InferenceRuntime`: :class:`OnnxDetector` here,
:class:`~feedtag.vision.openvino_backend.OpenVinoDetector` beside it.

The first execution provider that works here among TensorRT, CUDA and CPU is chosen (a GPU
provider only when a session starts on it: :mod:`feedtag.vision.gpu`).
``intra_op_num_threads`` defaults to 1: feedtag scales with cameras, and one thread per
detector keeps a core's worth of work per detector thread instead of several pools fighting
over the cores the ingest threads need. Its errors are translated into
:class:`~feedtag.errors.DetectorError` naming the model file and the input it expects.

::

    detector = OnnxDetector("yolov8n.onnx", coco_names, layout="yolov8", classes={0, 2})
    people_and_cars = detector.detect([frame_a, frame_b])  # one Detections per frame
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple, Protocol, TypedDict, Unpack

import numpy as np
import numpy.typing as npt
import onnxruntime  # type: ignore[import-untyped,unused-ignore]

from feedtag.core import Detections
from feedtag.errors import DetectorError
from feedtag.vision.decoders import DecodeOptions, InputFormat, OutputDecoder, decoder_for
from feedtag.vision.detector import Image
from feedtag.vision.gpu import GPU_PROVIDERS, working_gpu_providers
from feedtag.vision.letterbox import (
    PAD_VALUE,
    Placement,
    input_shape,
    letterbox_into,
    picture_size,
    scaled_shape,
    unletterbox_boxes,
)

log = logging.getLogger(__name__)

# ONNX Runtime's Python API is a thin layer over a C++ extension with no type information and
# names re-exported implicitly; it is Any at this boundary, where its errors are translated.
ort: Any = onnxruntime

#: execution providers in the order feedtag prefers them, when ONNX Runtime has them
PREFERRED_PROVIDERS: Final = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)
DEFAULT_INTRA_OP_THREADS: Final = 1
#: frames per inference call when the model's batch dimension is dynamic
DEFAULT_MAX_BATCH: Final = 16
DEFAULT_CONFIDENCE_THRESHOLD: Final = 0.25
DEFAULT_IOU_THRESHOLD: Final = 0.45
DEFAULT_MAX_DETECTIONS: Final = 300

#: options per execution provider name, passed to ONNX Runtime as they are
ProviderOptions = Mapping[str, Mapping[str, str | int | float | bool]]

_INPUT_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
}

# ONNX Runtime raises one class per status code, named after it. Table: class name -> what
# it means for the person reading the error.
_ORT_ERROR_TABLE: Final[dict[str, str]] = {
    "NoSuchFile": "model file not found",
    "InvalidProtobuf": "not a valid ONNX model file",
    "InvalidGraph": "the ONNX graph is invalid",
    "NoModel": "no model in the file",
    "ModelLoaded": "the model was loaded twice",
    "InvalidArgument": "the input was rejected",
    "NotImplemented": "an operator is not implemented by the execution provider",
    "NotFound": "a tensor or operator was not found",
    "EPFail": "the execution provider failed",
    "EngineError": "the inference engine failed",
    "RuntimeException": "inference failed",
    "DeviceReset": "the accelerator was reset",
    "Fail": "ONNX Runtime failed",
}


@dataclass(frozen=True, slots=True)
class ModelInput:
    """The image input of a model: ``[batch, 3, size, size]``; ``batch`` None when dynamic.

    ``dynamic_size``: the model's height and width are dynamic; ``size`` is then the side it
    is run at (the long side, when the detector chooses rectangles; see ``input_stride`` of
    :class:`LetterboxDetector`).
    """

    name: str
    batch: int | None
    size: int
    dtype: np.dtype[Any]
    dynamic_size: bool = False

    def describe(self) -> str:
        batch = "N" if self.batch is None else str(self.batch)
        side = "H, W" if self.dynamic_size else f"{self.size}, {self.size}"
        at = f" at {self.size}" if self.dynamic_size else ""
        return f"{self.name}[{batch}, 3, {side}] {self.dtype}{at}"


class InferenceRuntime(Protocol):
    """One loaded model: run a ``[B, 3, size, size]`` batch, get the outputs in order."""

    def run(self, batch: npt.NDArray[Any]) -> list[npt.NDArray[Any]]: ...


class DetectorOptions(TypedDict, total=False):
    """What every backend passes on to :class:`LetterboxDetector` unchanged."""

    layout: str | OutputDecoder
    input_format: InputFormat | None
    confidence_threshold: float
    iou_threshold: float
    max_detections: int
    classes: Iterable[int] | None
    max_batch: int
    input_stride: int | None


class LetterboxDetector:
    """A :class:`~feedtag.vision.detector.Detector` over any :class:`InferenceRuntime`.

    ``classes`` is the default class filter (a set of class ids to keep; None keeps all);
    :meth:`detect` can override it per call. With a dynamic batch dimension up to
    ``max_batch`` frames go into one inference call; with a fixed batch ``b``, frames go ``b``
    at a time and a short last batch is padded with grey frames.

    ``input_stride``: when the model's height and width are dynamic, each frame goes into the
    smallest rectangle of multiples of ``input_stride`` that holds it with its long side at
    the model's size (:func:`~feedtag.vision.letterbox.input_shape`: 640 x 360 at 416 runs at
    416 x 256), and frames of different shapes go into different inference calls. A model
    with a fixed input is letterboxed into its square whatever ``input_stride`` says.

    Frames are letterboxed straight into a batch buffer allocated once per shape (and per
    thread: a worker abandoned by the watchdog keeps its own), so nothing of a frame is
    copied twice on its way into the model.
    """

    def __init__(
        self,
        runtime: InferenceRuntime,
        model_input: ModelInput,
        class_names: Sequence[str],
        *,
        layout: str | OutputDecoder = "yolo-decoded",
        input_format: InputFormat | None = None,
        confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
        iou_threshold: float = DEFAULT_IOU_THRESHOLD,
        max_detections: int = DEFAULT_MAX_DETECTIONS,
        classes: Iterable[int] | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        input_stride: int | None = None,
        description: str = "model",
    ) -> None:
        if not class_names:
            raise ValueError("expected at least one class name, got none")
        if max_batch < 1:
            raise ValueError(f"expected max_batch >= 1, got {max_batch!r}")
        if input_stride is not None and (input_stride < 1 or model_input.size % input_stride):
            raise ValueError(
                f"expected input_stride >= 1 dividing the input size {model_input.size},"
                f" got {input_stride!r}"
            )
        self._runtime = runtime
        self._input = model_input
        self._class_names = tuple(class_names)
        self._decoder = decoder_for(layout)
        self._input_format = input_format or self._decoder.input_format
        self._options = DecodeOptions(
            num_classes=len(self._class_names),
            input_size=model_input.size,
            confidence_threshold=confidence_threshold,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
            classes=self._class_filter(classes),
        )
        self._chunk = model_input.batch or max_batch
        self._description = description
        self._stride = input_stride if model_input.dynamic_size else None
        if self._stride is not None and self._decoder.name == "yolox":
            raise ValueError("layout 'yolox' decodes a square grid: leave input_stride unset")
        self._buffers = threading.local()

    @property
    def class_names(self) -> Sequence[str]:
        return self._class_names

    @property
    def model_input(self) -> ModelInput:
        return self._input

    @property
    def layout(self) -> str:
        return self._decoder.name

    @property
    def runtime(self) -> InferenceRuntime:
        """The loaded model itself: ``feedtag bench detect`` times it alone, to tell the
        cost of inference from that of everything around it."""
        return self._runtime

    def input_shape(self, image: Image, scale: float | None = None) -> tuple[int, int]:
        """The ``(width, height)`` of the model input ``image`` goes into; with ``scale``
        (model pixels per image pixel), the input that holds it at that scale."""
        size = self._input.size
        if self._stride is None:
            return size, size
        height, width = image.shape[:2]
        if scale is not None:
            return scaled_shape(int(width), int(height), scale, size, self._stride)
        return input_shape(int(width), int(height), size, self._stride)

    def picture_size(self, width: int, height: int) -> tuple[int, int]:
        """The ``(width, height)`` a whole ``width`` x ``height`` frame is scaled to inside
        its input (see :class:`~feedtag.vision.detector.ScaledInputDetector`)."""
        size = self._input.size
        if self._stride is None:
            return picture_size(width, height, size, size)
        return picture_size(width, height, *input_shape(width, height, size, self._stride))

    @property
    def regions_pay(self) -> bool:
        """Whether an active region costs about its share of the whole frame's input here
        (``gate.regions.enabled: auto`` follows it): true for ONNX Runtime on CPU, whose time
        follows the input's area (docs/performance.md, "Active regions")."""
        return True

    def region_grid(self) -> tuple[int, int] | None:
        """``(long_side, stride)`` of the inputs frames go into, or None for a fixed input
        (see :class:`~feedtag.vision.detector.RegionDetector`)."""
        return None if self._stride is None else (self._input.size, self._stride)

    def detect(
        self,
        images: Sequence[Image],
        *,
        classes: Iterable[int] | None = None,
        scales: Sequence[float | None] | None = None,
    ) -> list[Detections]:
        """One :class:`~feedtag.core.Detections` per image, boxes in that image's pixels.

        ``classes`` keeps only those class ids for this call (None: the detector's default).
        ``scales``: per image, the scale to run it at (model pixels per image pixel: an active
        region runs at its frame's scale); None, or a None entry, fits the image's long side
        to the model's size.
        """
        options = self._options
        if classes is not None:
            options = dataclasses.replace(options, classes=self._class_filter(classes))
        if scales is not None and len(scales) != len(images):
            raise ValueError(f"expected {len(images)} scales, got {len(scales)}")
        groups: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            _check_image(index, image)
            scale = None if scales is None else scales[index]
            groups.setdefault(self.input_shape(image, scale), []).append(index)
        results: list[Detections | None] = [None] * len(images)
        for shape, indices in groups.items():
            for start in range(0, len(indices), self._chunk):
                part = indices[start : start + self._chunk]
                found = self._detect_chunk([images[i] for i in part], shape, options)
                for index, detections in zip(part, found, strict=True):
                    results[index] = detections
        return [found for found in results if found is not None]

    def warm_up(self) -> None:
        """Run one grey frame through the model: allocates memory (and builds TensorRT
        engines) now rather than on the first camera frame, and checks that the output has
        the shape the layout expects, so a wrong ``layout`` fails at load time."""
        self.detect([np.full((self._input.size, self._input.size, 3), 127, np.uint8)])

    def _detect_chunk(
        self, images: Sequence[Image], shape: tuple[int, int], options: DecodeOptions
    ) -> list[Detections]:
        batch, placements = self._fill(images, shape)
        outputs = self._runtime.run(batch)
        found = self._decoder.decode(outputs, options)
        if len(found) < len(images):
            raise DetectorError(
                f"{self._description}: {len(images)} images in, {len(found)} results out;"
                " does the model's batch dimension match its input?"
            )
        results = []
        for placement, image, model_detections in zip(placements, images, found, strict=False):
            height, width = image.shape[:2]
            xyxy = unletterbox_boxes(model_detections.xyxy, placement, width, height)
            # a box entirely in the letterbox margin is clipped to nothing: not a detection
            visible = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
            results.append(
                Detections(
                    xyxy[visible],
                    model_detections.confidence[visible],
                    model_detections.class_id[visible],
                )
            )
        return results

    def _fill(
        self, images: Sequence[Image], shape: tuple[int, int]
    ) -> tuple[npt.NDArray[Any], list[Placement]]:
        """Letterbox ``images`` into this thread's buffer for ``shape``; the batch to run is
        its first ``len(images)`` slots, or all of a fixed batch with grey in the rest."""
        buffers: dict[tuple[int, int], npt.NDArray[Any]] = self._buffers.__dict__.setdefault(
            "by_shape", {}
        )
        buffer = buffers.get(shape)
        slots = self._input.batch or len(images)
        if buffer is None or len(buffer) < slots:
            # as large as the largest batch seen (8 x 416 x 256 floats are 10 MB), not max_batch
            width, height = shape
            buffer = np.empty((slots, 3, height, width), self._input.dtype)
            buffers[shape] = buffer
        bgr = self._input_format.channels == "bgr"
        scale = self._input_format.pixel_scale
        placements = [
            letterbox_into(image, buffer[slot], bgr=bgr, pixel_scale=scale)
            for slot, image in enumerate(images)
        ]
        if self._input.batch is None:
            return buffer[: len(images)], placements
        # a fixed batch dimension takes exactly that many frames; grey fills the rest
        buffer[len(images) :] = PAD_VALUE * scale
        return buffer, placements

    def _class_filter(self, classes: Iterable[int] | None) -> frozenset[int] | None:
        if classes is None:
            return None
        chosen = frozenset(int(class_id) for class_id in classes)
        unknown = sorted(c for c in chosen if not 0 <= c < len(self._class_names))
        if unknown:
            raise ValueError(
                f"expected class ids in 0..{len(self._class_names) - 1}, got {unknown}"
            )
        return chosen


class OnnxDetector(LetterboxDetector):
    """A detector running an ``.onnx`` file with ONNX Runtime.

    ``layout`` names the output decoder (see :data:`feedtag.vision.decoders.DECODERS`);
    ``input_size`` is needed only when the model's height and width are dynamic.
    ``providers`` overrides the automatic TensorRT, CUDA, CPU choice; ``provider_options``
    gives options by provider name (for instance TensorRT's ``trt_engine_cache_enable``),
    and options for a provider not in use are ignored, so one setting serves every machine.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        class_names: Sequence[str],
        *,
        input_size: int | None = None,
        intra_op_num_threads: int = DEFAULT_INTRA_OP_THREADS,
        providers: Sequence[str] | None = None,
        provider_options: ProviderOptions | None = None,
        warm_up: bool = True,
        **options: Unpack[DetectorOptions],
    ) -> None:
        if intra_op_num_threads < 1:
            raise ValueError(f"expected intra_op_num_threads >= 1, got {intra_op_num_threads!r}")
        self.model_path = Path(model_path)
        runtime = OnnxRuntime(
            self.model_path, intra_op_num_threads, providers, input_size, provider_options
        )
        super().__init__(
            runtime, runtime.model_input, class_names, description=str(self.model_path), **options
        )
        self.providers: list[str] = runtime.providers
        log.info(
            "loaded %s: input %s, providers %s, layout %s",
            self.model_path,
            runtime.model_input.describe(),
            self.providers,
            self.layout,
        )
        if warm_up:
            self.warm_up()


class OnnxRuntime:
    """An ONNX Runtime session with one image input; errors come out as DetectorError."""

    def __init__(
        self,
        path: Path,
        intra_op_num_threads: int = DEFAULT_INTRA_OP_THREADS,
        providers: Sequence[str] | None = None,
        input_size: int | None = None,
        provider_options: ProviderOptions | None = None,
    ) -> None:
        self._path = path
        if not path.is_file():
            raise DetectorError(f"load {path} failed: model file not found")
        options_by_name = provider_options or {}
        chosen = [
            (name, dict(options_by_name.get(name, {}))) for name in self._providers(providers)
        ]
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_num_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads spin for a while by default, burning the cores that the ingest
        # threads of other cameras need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: it warns about every node left on CPU
        try:
            self._session = ort.InferenceSession(str(path), options, providers=chosen)
        except Exception as exc:
            raise detector_error_from_ort(exc, f"load {path}") from exc
        specs = [InputSpec(i.name, list(i.shape), i.type) for i in self._session.get_inputs()]
        self.model_input = image_input(specs, input_size, str(path))
        self.providers: list[str] = list(self._session.get_providers())

    def run(self, batch: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
        try:
            outputs = self._session.run(None, {self.model_input.name: batch})
        except Exception as exc:
            raise detector_error_from_ort(
                exc,
                f"inference with {self._path} on input {list(batch.shape)} {batch.dtype}",
                f"model input {self.model_input.describe()}",
            ) from exc
        return [np.asarray(output) for output in outputs]

    def _providers(self, requested: Sequence[str] | None) -> list[str]:
        available = list(ort.get_available_providers())
        if requested is None:
            return choose_providers(available, working_gpu_providers())
        missing = [name for name in requested if name not in available]
        if missing:
            raise DetectorError(
                f"load {self._path} failed: execution providers {missing} are not available;"
                f" this ONNX Runtime has {available}"
            )
        return list(requested)


class InputSpec(NamedTuple):
    """A model input as a runtime describes it: dimensions are ints when fixed, names or None
    when dynamic; ``type`` is the ONNX type string (``tensor(float)``)."""

    name: str
    shape: Sequence[int | str | None]
    type: str


def image_input(specs: Sequence[InputSpec], input_size: int | None, model: str) -> ModelInput:
    """The model's one square image input, or a :class:`DetectorError` that shows what the
    model has instead.

    >>> image_input([InputSpec("images", ["batch", 3, 416, 416], "tensor(float)")], None, "m")
    ModelInput(name='images', batch=None, size=416, dtype=dtype('float32'), dynamic_size=False)
    >>> image_input([InputSpec("x", [1, 416, 416, 3], "tensor(float)")], None, "m.onnx")
    Traceback (most recent call last):
    ...
    feedtag.errors.DetectorError: m.onnx: expected one image input [N, 3, S, S] of float or \
float16, got ['x[1, 416, 416, 3] tensor(float)']: not [N, 3, H, W]
    """
    problem = _input_problem(specs, input_size)
    if problem:
        shapes = [f"{spec.name}{list(spec.shape)} {spec.type}" for spec in specs]
        raise DetectorError(
            f"{model}: expected one image input [N, 3, S, S] of float or float16,"
            f" got {shapes}: {problem}"
        )
    (spec,) = specs
    batch, _, height, _ = spec.shape
    size = height if isinstance(height, int) else input_size
    if size is None:  # _input_problem has ruled this out; this tells mypy
        raise DetectorError(f"{model}: pass input_size for a dynamic input")
    return ModelInput(
        name=spec.name,
        batch=batch if isinstance(batch, int) and batch > 0 else None,
        size=int(size),
        dtype=_INPUT_DTYPES[spec.type],
        dynamic_size=not isinstance(height, int),
    )


def _check_image(index: int, image: Image) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        got = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"image {index}: expected image as uint8 numpy.ndarray, got {got}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image {index}: expected image shape (H, W, 3), got {image.shape}")


def _input_problem(specs: Sequence[InputSpec], input_size: int | None) -> str:
    """Why the model's inputs are not one square image input, or "" when they are."""
    if len(specs) != 1:
        return f"{len(specs)} inputs"
    shape, kind = list(specs[0].shape), specs[0].type
    sides = shape[2:] if len(shape) == 4 else []
    static = [side for side in sides if isinstance(side, int)]
    problems = (
        (kind not in _INPUT_DTYPES, f"input type {kind}"),
        (len(shape) != 4 or shape[1] != 3, "not [N, 3, H, W]"),
        (
            len(static) == 1 or (len(static) == 2 and static[0] != static[1]),
            "height and width must both be fixed and equal, or both dynamic",
        ),
        (
            bool(sides) and not static and input_size is None,
            "dynamic height and width: pass input_size",
        ),
        (
            bool(static) and input_size not in (None, static[0]),
            f"input_size={input_size} given, but the model's input side is fixed",
        ),
    )
    return next((message for bad, message in problems if bad), "")


def choose_providers(
    available: Sequence[str], working_gpu: Sequence[str] | None = None
) -> list[str]:
    """The execution providers to ask for, best first, among those ONNX Runtime has; a GPU
    provider only when it is among ``working_gpu`` (when given: those a session starts on).

    >>> choose_providers(["AzureExecutionProvider", "CPUExecutionProvider",
    ...                   "CUDAExecutionProvider"])
    ['CUDAExecutionProvider', 'CPUExecutionProvider']
    >>> choose_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], working_gpu=[])
    ['CPUExecutionProvider']
    """
    chosen = [
        name
        for name in PREFERRED_PROVIDERS
        if name in available
        and (working_gpu is None or name not in GPU_PROVIDERS or name in working_gpu)
    ]
    return chosen or ["CPUExecutionProvider"]


def detector_error_from_ort(exc: BaseException, action: str, context: str = "") -> DetectorError:
    """Translate an ONNX Runtime exception into a :class:`DetectorError`.

    ONNX Runtime's text (``[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : ...``) is kept after
    the status code, because it names the dimension or node at fault.

    >>> detector_error_from_ort(RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION :"
    ...     " bad shape"), "inference with m.onnx", "model input x[N, 3, 8, 8] float32")
    DetectorError('inference with m.onnx failed: inference failed: bad shape (model input \
x[N, 3, 8, 8] float32)')
    """
    if isinstance(exc, DetectorError):
        return exc
    meaning = _ORT_ERROR_TABLE.get(type(exc).__name__, "inference failed")
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if detail.startswith("[ONNXRuntimeError]"):
        detail = detail.split(" : ", 3)[-1].strip()
    message = f"{action} failed: {meaning}: {detail[:400]}"
    return DetectorError(f"{message} ({context})" if context else message)
