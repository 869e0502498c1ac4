"""Which runtime ``feedtag run`` builds its detector on (``detector.backend``,
``detector.precision``): the default model on OpenVINO where OpenVINO computes FP32 in bf16
(as FP32 with AMX, as INT8 without), on ONNX Runtime with INT8 elsewhere, and a clear error
where OpenVINO is asked for but missing."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from feedtag.config.models import DetectorConfig
from feedtag.errors import DetectorError
from feedtag.runtime import detection
from feedtag.vision.onnx_backend import OnnxDetector
from feedtag.vision.openvino_backend import OpenVinoDetector, cpu_has_amx, default_cpu_precision

needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="openvino is not installed"
)


@needs_openvino
@pytest.mark.parametrize(("amx", "precision"), [(True, "fp32"), (False, "int8")])
def test_auto_takes_openvino_where_it_computes_bf16(
    models_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    amx: bool,
    precision: str,
) -> None:
    """With AMX the FP32 model, computed in bf16; with AVX-512 BF16 alone (AMD Zen 4 and
    later) the INT8 one, the cheapest there."""
    monkeypatch.setattr(detection, "default_cpu_precision", lambda: "bf16")
    monkeypatch.setattr(detection, "cpu_has_amx", lambda: amx)
    with caplog.at_level(logging.INFO, logger="feedtag.runtime.detection"):
        detector = detection.build_detector(DetectorConfig(models_dir=models_dir, workers=2))
    assert isinstance(detector, OpenVinoDetector)
    assert detector.model_path.name.endswith(f"-416-{precision}.onnx")
    assert detector.streams == 2  # one per detector worker
    assert f"detector: OpenVINO on CPU, {precision.upper()} default model" in caplog.text


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("fpu sse2 avx512f avx512_bf16 avx512_vnni", False),  # AMD Zen 4/5
        ("fpu sse2 avx512_bf16 amx_bf16 amx_tile amx_int8", True),  # Xeon Sapphire Rapids
        ("fpu sse2 xamx_bf16x", False),  # a flag is matched whole
    ],
)
def test_amx_is_read_from_the_cpu_flags(tmp_path: Path, flags: str, expected: bool) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: some CPU\nflags\t\t: {flags}\n\n")
    assert cpu_has_amx(cpuinfo) is expected


def test_amx_is_false_where_the_flags_cannot_be_read(tmp_path: Path) -> None:
    assert cpu_has_amx(tmp_path / "missing") is False
    (tmp_path / "no-flags").write_text("processor\t: 0\nFeatures\t: fp asimd\n")  # ARM
    assert cpu_has_amx(tmp_path / "no-flags") is False


def test_auto_takes_onnx_runtime_with_int8_elsewhere(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(detection, "default_cpu_precision", lambda: "f32")
    detector = detection.build_detector(DetectorConfig(models_dir=models_dir))
    assert isinstance(detector, OnnxDetector)
    assert detector.model_path.name.endswith("-416-int8.onnx")
    monkeypatch.setattr(detection, "default_cpu_precision", lambda: None)  # not installed
    assert isinstance(detection.build_detector(DetectorConfig(models_dir=models_dir)), OnnxDetector)


@needs_openvino
def test_an_explicit_fp32_is_kept_on_openvino_without_amx(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(detection, "default_cpu_precision", lambda: "bf16")
    monkeypatch.setattr(detection, "cpu_has_amx", lambda: False)
    detector = detection.build_detector(DetectorConfig(models_dir=models_dir, precision="fp32"))
    assert isinstance(detector, OpenVinoDetector)
    assert detector.model_path.name.endswith("-416-fp32.onnx")  # computed in bf16


def test_explicit_settings_override_either_half(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(detection, "default_cpu_precision", lambda: "bf16")
    forced = DetectorConfig(models_dir=models_dir, backend="onnxruntime")
    detector = detection.build_detector(forced)
    assert isinstance(detector, OnnxDetector)
    assert detector.model_path.name.endswith("-416-int8.onnx")
    fp32 = detection.build_detector(forced.model_copy(update={"precision": "fp32"}))
    assert fp32.model_path.name.endswith("-416-fp32.onnx")  # type: ignore[attr-defined]


def test_openvino_asked_for_but_missing_says_how_to_install(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # what an absent package looks like
    assert default_cpu_precision() is None
    with pytest.raises(DetectorError, match=r"pip install 'feedtag\[openvino\]'"):
        detection.build_detector(DetectorConfig(models_dir=models_dir, backend="openvino"))
    # auto falls back to ONNX Runtime without a word of error
    assert isinstance(detection.build_detector(DetectorConfig(models_dir=models_dir)), OnnxDetector)


def test_auto_takes_onnx_runtime_in_fp32_where_a_gpu_provider_works(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A working CUDA provider wins over OpenVINO on the CPU, even with AMX; an explicit
    backend still wins over the GPU."""
    monkeypatch.setattr(detection, "working_gpu_providers", lambda: ("CUDAExecutionProvider",))
    monkeypatch.setattr(detection, "default_cpu_precision", lambda: "bf16")
    monkeypatch.setattr(detection, "cpu_has_amx", lambda: True)
    with caplog.at_level(logging.INFO, logger="feedtag.runtime.detection"):
        detector = detection.build_detector(DetectorConfig(models_dir=models_dir))
    assert isinstance(detector, OnnxDetector)
    assert detector.model_path.name.endswith("-416-fp32.onnx")
    assert "detector: ONNX Runtime on a GPU, FP32 default model" in caplog.text
    assert detection.resolve_runtime(DetectorConfig(backend="openvino")).gpu is False
    int8 = detection.resolve_runtime(DetectorConfig(precision="int8"))
    assert (int8.backend, int8.precision, int8.gpu) == ("onnxruntime", "int8", True)


def test_without_a_gpu_provider_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU build of ONNX Runtime (what the tests run on) has no GPU provider to try."""
    monkeypatch.setattr(detection, "default_cpu_precision", lambda: "f32")
    assert detection.resolve_runtime(DetectorConfig()) == detection.Runtime("onnxruntime", "int8")


def test_on_a_gpu_tensorrt_keeps_its_engines_with_one_profile(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The detector and the anonymizer's finder both get TensorRT's engine cache in the
    models folder and one profile over every batch and stride-aligned rectangle (the finder
    runs each image and tile in its own rectangle too)."""
    monkeypatch.setattr(detection, "working_gpu_providers", lambda: ("TensorrtExecutionProvider",))
    given: list[dict[str, Any]] = []

    class Recording(OnnxDetector):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            given.append(kwargs.get("provider_options") or {})
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(detection, "OnnxDetector", Recording)
    detection.build_detector(DetectorConfig(models_dir=models_dir))
    detection.build_anonymizer(DetectorConfig(models_dir=models_dir))
    detector, finder = (options["TensorrtExecutionProvider"] for options in given)
    for options in (detector, finder):
        assert options["trt_engine_cache_path"] == str(models_dir / "tensorrt-engines")
    for options in (detector, finder):
        assert options["trt_profile_min_shapes"] == "images:1x3x32x32"
        assert options["trt_profile_opt_shapes"] == "images:32x3x256x416"
        assert options["trt_profile_max_shapes"] == "images:32x3x416x416"
