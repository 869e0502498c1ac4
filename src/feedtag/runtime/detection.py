"""Building the configured detector: the default model (built offline on first use) or a
user's ONNX file."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Final

from feedtag.config.models import DetectorConfig
from feedtag.errors import ModelError
from feedtag.vision import registry
from feedtag.vision.anonymize import FINDER_CONFIDENCE, PERSON_LABELS, Anonymizer, PersonFinder
from feedtag.vision.onnx_backend import OnnxDetector

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
#: the person finder runs the default model at this input size: tiles of 416 at native
#: scale find people the 320 model misses
FINDER_INPUT_SIZE: Final = 416


def default_model_info(
    settings: DetectorConfig, progress: Progress | None = None
) -> registry.ModelInfo:
    """The default model at the configured size and precision, built if missing or stale."""
    folder = settings.models_dir or registry.default_models_dir()
    registry.ensure_default_model(folder, progress)
    manifest = folder / f"{registry.model_name(settings.input_size, settings.precision)}.json"
    if not manifest.is_file():
        registry.build_default(folder, progress)
    info = registry.load_model_info(manifest)
    if not registry.verify_model(info):
        raise ModelError(f"{info.path} does not match the sha256 in its manifest")
    return info


def build_detector(settings: DetectorConfig, progress: Progress | None = None) -> OnnxDetector:
    """The detector ``settings`` describe, loaded and warmed up."""
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
    return OnnxDetector(
        path,
        names,
        input_size=size,
        input_stride=stride,
        layout=layout,
        confidence_threshold=settings.confidence,
        iou_threshold=settings.iou,
        max_batch=settings.max_batch,
        intra_op_num_threads=settings.threads,
    )


def build_anonymizer(settings: DetectorConfig) -> Anonymizer:
    """The anonymizer for every image written: a person finder on its own ONNX Runtime
    session of the detector's model (the default model at 416, whatever size analysis runs
    at), at the finder's low threshold. A model without a person class gets no finder, so
    every image is blurred whole (fail closed), and that is logged."""
    size: int | None = None
    if settings.model == "default":
        info = default_model_info(settings.model_copy(update={"input_size": FINDER_INPUT_SIZE}))
        path, names, layout = info.path, list(info.class_names), info.layout
        size = info.input_size  # square tiles, so no input_stride
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
    finder = OnnxDetector(
        path,
        names,
        input_size=size,
        layout=layout,
        confidence_threshold=FINDER_CONFIDENCE,
        iou_threshold=settings.iou,
        max_batch=settings.max_batch,
        classes=[index for index, name in enumerate(names) if name in PERSON_LABELS],
        intra_op_num_threads=settings.threads,
    )
    return Anonymizer(PersonFinder(finder, tile=finder.model_input.size))
