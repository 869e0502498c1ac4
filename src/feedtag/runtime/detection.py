"""Building the configured detector: the default model (built offline on first use) or a
user's ONNX file."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from feedtag.config.models import DetectorConfig
from feedtag.errors import ModelError
from feedtag.vision import models
from feedtag.vision.onnx_backend import OnnxDetector

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


def default_model_info(
    settings: DetectorConfig, progress: Progress | None = None
) -> models.ModelInfo:
    """The default model at the configured size and precision, built if missing or stale."""
    folder = settings.models_dir or models.default_models_dir()
    models.ensure_default_model(folder, progress)
    manifest = folder / f"{models.model_name(settings.input_size, settings.precision)}.json"
    if not manifest.is_file():
        models.build_default_model(folder, progress=progress)
    info = models.load_model_info(manifest)
    if not models.verify_model(info):
        raise ModelError(f"{info.path} does not match the sha256 in its manifest")
    return info


def build_detector(settings: DetectorConfig, progress: Progress | None = None) -> OnnxDetector:
    """The detector ``settings`` describe, loaded and warmed up."""
    if settings.model == "default":
        info = default_model_info(settings, progress)
        path, names, layout = info.path, list(info.class_names), info.layout
    else:
        path = Path(settings.model)
        if settings.class_names is None:
            raise ModelError("detector.class_names is required for a user model")
        names, layout = list(settings.class_names), settings.layout
    return OnnxDetector(
        path,
        names,
        layout=layout,
        confidence_threshold=settings.confidence,
        iou_threshold=settings.iou,
        max_batch=settings.max_batch,
        intra_op_num_threads=settings.threads,
    )
