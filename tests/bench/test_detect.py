"""``feedtag bench detect``: the split of a detector call into model and outside-model time,
on the real default model and real frames."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedtag.bench.detect import at_model_scale, measure_row, real_frames, run_gpu_bench
from feedtag.config.models import DetectorConfig
from feedtag.errors import DetectorError
from feedtag.runtime.detection import default_model_info
from feedtag.vision.onnx_backend import OnnxDetector

pytestmark = pytest.mark.slow


def test_frames_are_16_by_9_analysis_frames() -> None:
    frames = real_frames(per_clip=2)
    assert len(frames) == 4
    assert {frame.shape for frame in frames} == {(360, 640, 3)}
    assert {frame.shape for frame in at_model_scale(frames, 416)} == {(234, 416, 3)}


@pytest.mark.parametrize(("stride", "shape"), [(None, "416x416"), (32, "416x256")])
def test_a_row_splits_the_call_into_model_and_outside(
    models_dir: Path, stride: int | None, shape: str
) -> None:
    info = default_model_info(DetectorConfig(models_dir=models_dir, precision="int8"))
    detector = OnnxDetector(
        info.path, list(info.class_names), input_size=416, input_stride=stride, max_batch=2
    )
    row = measure_row(
        "onnxruntime-cpu", "int8", detector, frames=real_frames(per_clip=2), batch=2, seconds=0.2
    )
    assert (row.input_shape, row.frame, row.batch) == (shape, "640x360", 2)
    assert row.frames >= 4 and row.frames % 2 == 0
    # under load the two timings can come out in either order; each must be a real time
    assert row.model_ms_per_frame > 0 and row.ms_per_frame > 0
    assert row.outside_model_ms_per_frame == pytest.approx(
        row.ms_per_frame - row.model_ms_per_frame, abs=0.02
    )


def test_the_gpu_sweep_runs_each_batch_on_the_provider_asked_for(models_dir: Path) -> None:
    """``bench detect --gpu``'s code path, on the CPU provider (no GPU here): the FP32 default
    model in 16:9 rectangles at each batch, frames enough for the largest."""
    rows = run_gpu_bench(
        0.1, batches=(1, 40), providers=["CPUExecutionProvider"], models_dir=models_dir
    )
    assert [(r.backend, r.precision, r.input_shape, r.frame, r.batch) for r in rows] == [
        ("onnxruntime-cpu", "fp32", "416x256", "416x234", 1),
        ("onnxruntime-cpu", "fp32", "416x256", "416x234", 40),
    ]
    assert rows[1].frames % 40 == 0  # whole batches of 40, from 32 distinct frames
    assert all(r.frames_per_s > 0 and r.frames_per_s_per_core > 0 for r in rows)


def test_the_gpu_sweep_without_a_gpu_says_so(models_dir: Path) -> None:
    with pytest.raises(DetectorError, match="no GPU execution provider works here"):
        run_gpu_bench(0.1, providers=[], models_dir=models_dir)
