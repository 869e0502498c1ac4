"""``feedtag bench detect``: detector cost per backend, precision, model input and batch.

Frames are real (vtest.avi and bikes.mp4, cropped to 16:9 and scaled to 640 x 360 like the
analysed frames of most cameras). Each row measures the whole detector call (letterbox,
float conversion, inference, decode, NMS, mapping back) and, on the same prepared inputs,
the bare inference call of the same loaded model; the difference is the cost outside the
model. Inputs: the square letterbox (``416x416``, what a model with a fixed square input
gets) and the stride-aligned rectangle the default model runs a 16:9 frame in
(``416x256``). "Frames per second per core" is frames divided by the process CPU time of
the whole calls, so it does not depend on how many cores the runtime's threads spread over;
"frames per second" is frames divided by the wall time of the whole calls.

With ``--gpu``, each GPU execution provider that works here (:mod:`feedtag.vision.gpu`) runs
the default model as ``feedtag run`` runs it there (FP32, 416x256 rectangles, frames
already at the model's scale) at batches 1 to 64: a GPU's throughput is set by the batch,
and its frames per second by the wall clock are what one GPU serves.
"""

from __future__ import annotations

import functools
import importlib.util
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import av
import numpy as np
import psutil

from feedtag.bench.footage import bikes_path, fit_frame, vtest_path
from feedtag.config.models import DetectorConfig
from feedtag.errors import DetectorError
from feedtag.runtime.detection import default_model_info, tensorrt_provider_options
from feedtag.vision.detector import Image
from feedtag.vision.gpu import working_gpu_providers
from feedtag.vision.letterbox import letterbox
from feedtag.vision.onnx_backend import LetterboxDetector, OnnxDetector
from feedtag.vision.openvino_backend import OpenVinoDetector  # imports openvino lazily

FRAMES_PER_CLIP: Final = 16
BATCHES: Final = (1, 8)
GPU_BATCHES: Final = (1, 2, 4, 8, 16, 32, 64)
#: the analysed frame size of a 16:9 camera
FRAME_WIDTH, FRAME_HEIGHT = 640, 360


@dataclass(frozen=True, slots=True)
class DetectBenchRow:
    backend: str
    precision: str
    input_size: int
    input_shape: str  # "416x256": the model input's width x height
    frame: str  # the analysed frame's width x height: 640x360, or already at the model's scale
    batch: int
    frames: int
    ms_per_frame: float  # the whole detect() call
    model_ms_per_frame: float  # the bare inference call on the same inputs
    outside_model_ms_per_frame: float  # the difference: letterbox, conversion, decode, NMS
    frames_per_s_per_core: float
    frames_per_s: float  # by the wall clock

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def real_frames(per_clip: int = FRAMES_PER_CLIP) -> list[Image]:
    """Frames spread over both sample clips, centre-cropped to 16:9 and scaled to 640 x 360."""
    frames: list[Image] = []
    for path in (vtest_path(), bikes_path()):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            total = stream.frames or 300
            wanted = {int(total * (i + 0.5) / per_clip) for i in range(per_clip)}
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    frames.append(_sixteen_by_nine(frame))
                if index >= max(wanted):
                    break
    return frames


def at_model_scale(frames: list[Image], long_side: int) -> list[Image]:
    """``frames`` as ingest delivers them when ``analysis_width`` is the model's input size:
    one swscale call there, and the detector has nothing left to resize."""
    height, width = frames[0].shape[:2]
    scaled_height = round(height * long_side / width / 2) * 2
    return [
        np.asarray(
            av.VideoFrame.from_ndarray(frame, format="rgb24")
            .reformat(width=long_side, height=scaled_height, interpolation="AREA")
            .to_ndarray(),
            dtype=np.uint8,
        )
        for frame in frames
    ]


def _sixteen_by_nine(frame: av.VideoFrame) -> Image:
    fitted = fit_frame(frame, FRAME_WIDTH, FRAME_HEIGHT, pixel_format="rgb24", interpolation="AREA")
    return np.asarray(fitted.to_ndarray(), dtype=np.uint8)


def backends() -> Iterator[tuple[str, Callable[..., LetterboxDetector]]]:
    yield "onnxruntime-cpu", functools.partial(OnnxDetector, providers=["CPUExecutionProvider"])
    if importlib.util.find_spec("openvino") is not None:
        yield "openvino-cpu", OpenVinoDetector


def measure(
    call: Callable[[list[Any]], object], items: list[Any], batch: int, seconds: float
) -> tuple[int, float, float]:
    """(items, wall s, CPU s) of ``call`` on ``batch`` items at a time, repeated over at
    least ``seconds``."""
    process = psutil.Process()
    done, wall_start = 0, time.perf_counter()
    cpu_start = sum(process.cpu_times()[:2])
    while time.perf_counter() - wall_start < seconds:
        for start in range(0, len(items), batch):
            call(items[start : start + batch])
            done += len(items[start : start + batch])
    return done, time.perf_counter() - wall_start, sum(process.cpu_times()[:2]) - cpu_start


def measure_row(
    name: str,
    precision: str,
    detector: LetterboxDetector,
    *,
    frames: list[Image],
    batch: int,
    seconds: float,
) -> DetectBenchRow:
    """One row: the whole call, then the bare model on inputs letterboxed beforehand."""
    shape = detector.input_shape(frames[0])
    inputs = [letterbox(frame, shape).tensor for frame in frames]
    dtype = detector.model_input.dtype
    count, wall, cpu = measure(detector.detect, frames, batch, seconds)
    prepared = [
        np.ascontiguousarray(np.stack(inputs[start : start + batch]), dtype=dtype)
        for start in range(0, len(inputs), batch)
    ]
    calls, bare_wall, _ = measure(lambda part: detector.runtime.run(part[0]), prepared, 1, seconds)
    whole_ms = wall / count * 1000
    model_ms = bare_wall / (calls * len(frames) / len(prepared)) * 1000
    height, width = frames[0].shape[:2]
    return DetectBenchRow(
        name, precision, detector.model_input.size, f"{shape[0]}x{shape[1]}",
        f"{width}x{height}", batch, count,
        round(whole_ms, 2), round(model_ms, 2), round(whole_ms - model_ms, 2),
        round(count / cpu, 1), round(count / wall, 1),
    )  # fmt: skip


def run_bench(
    seconds: float = 5.0,
    progress: Callable[[str], None] | None = None,
    batches: Sequence[int] = BATCHES,
) -> list[DetectBenchRow]:
    frames = real_frames()
    rows = []
    for size in (320, 416):
        for precision in ("fp32", "int8"):
            info = default_model_info(DetectorConfig(input_size=size, precision=precision))
            for name, kind in backends():
                scaled = at_model_scale(frames, info.input_size)
                for stride, images in ((None, frames), (info.input_stride, frames),
                                       (info.input_stride, scaled)):  # fmt: skip
                    detector = kind(
                        info.path, list(info.class_names), layout=info.layout, max_batch=8,
                        input_size=info.input_size, input_stride=stride,
                    )  # fmt: skip
                    for batch in batches:
                        shape = "x".join(map(str, detector.input_shape(images[0])))
                        if progress is not None:
                            progress(f"{name} {precision} {shape} batch {batch}")
                        rows.append(
                            measure_row(
                                name, precision, detector, frames=images, batch=batch,
                                seconds=seconds,
                            )
                        )  # fmt: skip
    return rows


def run_gpu_bench(
    seconds: float = 5.0,
    progress: Callable[[str], None] | None = None,
    batches: Sequence[int] = GPU_BATCHES,
    providers: Sequence[str] | None = None,
    models_dir: Path | None = None,
) -> list[DetectBenchRow]:
    """The default model on each GPU execution provider that works here (``providers``
    overrides the list), at each batch size. Raises :class:`DetectorError` where none works."""
    chosen = list(working_gpu_providers() if providers is None else providers)
    if not chosen:
        raise DetectorError(
            "no GPU execution provider works here: ONNX Runtime's CPU build, no GPU, or the "
            "CUDA/cuDNN libraries missing (scripts/setup.sh --gpu; docs/vision.md, 'On a GPU')"
        )
    settings = DetectorConfig(backend="onnxruntime", precision="fp32", models_dir=models_dir)
    info = default_model_info(settings)
    stride = info.input_stride
    frames = at_model_scale(real_frames(), info.input_size)
    frames *= -(-max(batches) // len(frames))  # enough frames for the largest batch
    tensorrt = tensorrt_provider_options(settings, info.input_size, stride, max(batches))
    rows = []
    for provider in chosen:
        detector = OnnxDetector(
            info.path, list(info.class_names), layout=info.layout, max_batch=max(batches),
            input_size=info.input_size, input_stride=stride,
            providers=[provider, *([] if provider.startswith("CPU") else ["CPUExecutionProvider"])],
            provider_options=tensorrt,
        )  # fmt: skip
        name = "onnxruntime-" + provider.removesuffix("ExecutionProvider").lower()
        for batch in batches:
            if progress is not None:
                progress(f"{name} fp32 batch {batch}")
            whole = frames[: len(frames) // batch * batch]  # full batches only
            detector.detect(whole[:batch])  # a new batch size may build or tune kernels
            rows.append(
                measure_row(name, "fp32", detector, frames=whole, batch=batch, seconds=seconds)
            )
    return rows
