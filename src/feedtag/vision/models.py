"""The model registry and the default model's build under one name, for the ``feedtag models``
commands and scripts.

The code lives in :mod:`feedtag.vision.registry` (manifests, the cache folder, whether the
cached default model is usable) and :mod:`feedtag.vision.modelbuild` (the Darknet converter,
INT8 quantization, calibration). Importing this module imports the build tooling; runtime
code imports :mod:`feedtag.vision.registry` instead, which does not.
"""

from __future__ import annotations

from feedtag.vision.modelbuild.default_model import (
    INSTALL_HINT,
    SOURCE_PACKAGE,
    build_default_model,
    locate_darknet_source,
)
from feedtag.vision.registry import (
    DEFAULT_INPUT_SIZE,
    DEFAULT_PRECISION,
    INPUT_SIZES,
    ModelInfo,
    default_models_dir,
    ensure_default_model,
    list_models,
    load_model_info,
    model_name,
    verify_model,
)

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "DEFAULT_PRECISION",
    "INPUT_SIZES",
    "INSTALL_HINT",
    "SOURCE_PACKAGE",
    "ModelInfo",
    "build_default_model",
    "default_models_dir",
    "ensure_default_model",
    "list_models",
    "load_model_info",
    "locate_darknet_source",
    "model_name",
    "verify_model",
]
