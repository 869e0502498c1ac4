"""``feedtag bench detect``: detector cost per backend, precision, input size and batch.

Frames are real (vtest.avi and bikes.mp4 at the 640-wide analysis size); each measurement
covers the whole detector call (letterbox, inference, decode, NMS, mapping back). "Frames
per second per core" is frames divided by the process CPU time they took, so it does not
depend on how many cores the runtime's threads spread over.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Final

import av
import numpy as np
import psutil

from feedtag.bench.footage import bikes_path, vtest_path
from feedtag.config.models import DetectorConfig
from feedtag.runtime.detection import default_model_info
from feedtag.vision.detector import Detector, Image
from feedtag.vision.onnx_backend import OnnxDetector
from feedtag.vision.openvino_backend import OpenVinoDetector  # imports openvino lazily

FRAMES_PER_CLIP: Final = 16
BATCHES: Final = (1, 8)


@dataclass(frozen=True, slots=True)
class DetectBenchRow:
    backend: str
    precision: str
    input_size: int
    batch: int
    frames: int
    ms_per_frame: float
    frames_per_s_per_core: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def real_frames(per_clip: int = FRAMES_PER_CLIP) -> list[Image]:
    """Frames spread over both sample clips, scaled to 640 wide like analysed frames."""
    frames: list[Image] = []
    for path in (vtest_path(), bikes_path()):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            total = stream.frames or 300
            wanted = {int(total * (i + 0.5) / per_clip) for i in range(per_clip)}
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    height = round(frame.height * 640 / frame.width / 2) * 2
                    image = frame.to_ndarray(width=640, height=height, format="rgb24")
                    frames.append(np.asarray(image, dtype=np.uint8))
                if index >= max(wanted):
                    break
    return frames


def backends() -> Iterator[tuple[str, Callable[..., Detector]]]:
    yield "onnxruntime-cpu", OnnxDetector
    if importlib.util.find_spec("openvino") is not None:
        yield "openvino-cpu", OpenVinoDetector


def measure(
    detector: Detector, frames: list[Image], batch: int, seconds: float
) -> tuple[int, float, float]:
    """(frames, wall s, CPU s) over at least ``seconds`` of repeated passes."""
    process = psutil.Process()
    done, wall_start = 0, time.perf_counter()
    cpu_start = sum(process.cpu_times()[:2])
    while time.perf_counter() - wall_start < seconds:
        for start in range(0, len(frames), batch):
            detector.detect(frames[start : start + batch])
            done += len(frames[start : start + batch])
    return done, time.perf_counter() - wall_start, sum(process.cpu_times()[:2]) - cpu_start


def run_bench(
    seconds: float = 5.0, progress: Callable[[str], None] | None = None
) -> list[DetectBenchRow]:
    frames = real_frames()
    rows = []
    for size in (320, 416):
        for precision in ("fp32", "int8"):
            settings = DetectorConfig(input_size=size, precision=precision)
            info = default_model_info(settings)
            for name, kind in backends():
                detector = kind(info.path, list(info.class_names), layout=info.layout, max_batch=8)
                for batch in BATCHES:
                    if progress is not None:
                        progress(f"{name} {precision} {size} batch {batch}")
                    count, wall, cpu = measure(detector, frames, batch, seconds)
                    rows.append(
                        DetectBenchRow(
                            name, precision, size, batch, count,
                            round(wall / count * 1000, 2), round(count / cpu, 1),
                        )
                    )  # fmt: skip
    return rows
