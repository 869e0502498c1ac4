"""Which runtime ``feedtag run`` builds its detector on (``detector.backend``,
``detector.precision``): the default model on OpenVINO where OpenVINO computes FP32 in bf16,
on ONNX Runtime with INT8 elsewhere, and a clear error where OpenVINO is asked for but
missing."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import pytest

from feedtag.config.models import DetectorConfig
from feedtag.errors import DetectorError
from feedtag.runtime import detection
from feedtag.vision.onnx_backend import OnnxDetector
from feedtag.vision.openvino_backend import OpenVinoDetector, default_cpu_precision

needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="openvino is not installed"
)


@needs_openvino
def test_auto_takes_openvino_with_fp32_where_it_computes_bf16(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(detection, "default_cpu_precision", lambda: "bf16")
    with caplog.at_level(logging.INFO, logger="feedtag.runtime.detection"):
        detector = detection.build_detector(DetectorConfig(models_dir=models_dir, workers=2))
    assert isinstance(detector, OpenVinoDetector)
    assert detector.model_path.name.endswith("-416-fp32.onnx")
    assert detector.streams == 2  # one per detector worker
    assert "detector: OpenVINO on CPU, FP32 default model" in caplog.text


def test_auto_takes_onnx_runtime_with_int8_elsewhere(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(detection, "default_cpu_precision", lambda: "f32")
    detector = detection.build_detector(DetectorConfig(models_dir=models_dir))
    assert isinstance(detector, OnnxDetector)
    assert detector.model_path.name.endswith("-416-int8.onnx")
    monkeypatch.setattr(detection, "default_cpu_precision", lambda: None)  # not installed
    assert isinstance(detection.build_detector(DetectorConfig(models_dir=models_dir)), OnnxDetector)


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
