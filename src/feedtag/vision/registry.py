"""The model registry: where detector models live, what their manifests say, and whether the
default model in the cache can be used as it is.

Each model file has a JSON manifest beside it (name, file, sha256, input size, output layout,
class names, precision, provenance, licence), written after the model, so a manifest names
only a complete file. The default model (YOLOv3-tiny, COCO-80, INT8) is built offline by
:mod:`feedtag.vision.modelbuild` the first time it is needed; this module imports that
tooling only then, so loading a model never imports the converter or the quantizer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from feedtag.errors import ModelError

log = logging.getLogger(__name__)

MODEL_FAMILY: Final = "yolov3-tiny-coco"
INPUT_SIZES: Final = (416, 320)
DEFAULT_INPUT_SIZE: Final = 416
DEFAULT_PRECISION: Final = "int8"
LAYOUT_YOLO_DECODED: Final = "yolo-decoded"
MANIFEST_FORMAT: Final = 1
#: the version of feedtag's Darknet converter (:mod:`feedtag.vision.modelbuild.darknet`);
#: a default model made by another version is rebuilt. Raise it when the converter's output
#: changes.
CONVERTER_VERSION: Final = "2"
#: the default model's height and width are dynamic: any multiples of this run
INPUT_STRIDE: Final = 32
#: the name of the default model's image input
INPUT_NAME: Final = "images"

#: ``progress(step, done, total)``; steps: "frames", "convert", "ranges", "calibrate",
#: "quantize", "write"
Progress = Callable[[str, int, int], None]


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
    def input_stride(self) -> int | None:
        """The stride a model with dynamic height and width runs at any multiple of (the
        manifest's ``input.stride``); None for a model with a fixed square input."""
        value = self.manifest.get("input", {}).get("stride")
        return int(value) if value is not None else None

    @property
    def manifest_path(self) -> Path:
        return self.path.with_suffix(".json")


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


def build_default(models_dir: Path, progress: Progress | None = None) -> ModelInfo:
    """Build the default models into ``models_dir`` with the offline tooling
    (:func:`feedtag.vision.modelbuild.default_model.build_default_model`, imported only now)."""
    from feedtag.vision.modelbuild import default_model  # noqa: PLC0415 - build tooling, on demand

    return default_model.build_default_model(models_dir, progress=progress)


def ensure_default_model(
    models_dir: Path | None = None, progress: Progress | None = None
) -> ModelInfo:
    """The default model: the one in ``models_dir`` if its file matches its manifest's sha256
    and was made by this converter version; otherwise it is built (see
    :func:`build_default`)."""
    folder = models_dir if models_dir is not None else default_models_dir()
    manifest = folder / f"{model_name()}.json"
    if manifest.is_file():
        try:
            info = load_model_info(manifest)
        except ModelError as exc:
            log.warning("rebuilding the default model: %s", exc)
        else:
            current = info.manifest.get("provenance", {}).get("converter_version")
            if current != CONVERTER_VERSION:
                log.info(
                    "rebuilding the default model: converter %s -> %s", current, CONVERTER_VERSION
                )
            elif verify_model(info):
                return info
            else:
                log.warning("rebuilding the default model: %s does not match its sha256", info.path)
    return build_default(folder, progress)


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
        return file_sha256(info.path) == info.sha256
    except OSError:
        return False


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
