"""Media files: anonymized snapshots and thumbnails, path safety."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from feedtag.core import Detections
from feedtag.errors import StoreError
from feedtag.store.media import MediaStore

NAMES = ["person", "car"]
RNG = np.random.default_rng(3)
IMAGE = RNG.integers(0, 255, (360, 640, 3), dtype=np.uint8)
PERSON = Detections(
    np.array([[100, 50, 160, 250]], np.float32),
    np.array([0.9], np.float32),
    np.array([0], np.int32),
    np.array([4], np.int64),
)


def detail(image: np.ndarray) -> float:
    grey = image.astype(np.float64).mean(axis=2)
    return float(np.abs(np.diff(grey, axis=1)).mean())


def test_thumbnail_is_anonymized_scaled_and_replaced(tmp_path: Path) -> None:
    media = MediaStore(tmp_path)
    path = media.write_thumbnail("door", IMAGE, PERSON, NAMES)
    first = path.stat().st_mtime_ns
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.size == (480, 270)
        pixels = np.asarray(image.convert("RGB")).astype(np.int16)
    scale = 480 / 640
    head = pixels[int(50 * scale) : int(140 * scale), int(100 * scale) : int(160 * scale)]
    background = pixels[200:260, 300:400]
    assert detail(head) < detail(background) / 3  # the person's upper body is covered
    media.write_thumbnail("door", IMAGE, Detections.empty(), NAMES)
    assert path.stat().st_mtime_ns >= first
    assert [p.name for p in path.parent.iterdir()] == ["door.jpg"]  # no temporary files left


def test_snapshot_path_and_content(tmp_path: Path) -> None:
    media = MediaStore(tmp_path)
    at = 1_764_300_000.0  # 2025-11-28 UTC
    path = media.write_snapshot(
        "door", "abc123", at=at, image=IMAGE, detections=PERSON, class_names=NAMES, highlight=[4]
    )
    assert media.relative(path) == "snapshots/door/2025-11-28/abc123.jpg"
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert detail(pixels[60:130, 105:155]) < detail(IMAGE[60:130, 105:155]) / 3
    assert media.resolve("snapshots/door/2025-11-28/abc123.jpg") == path


@pytest.mark.parametrize(
    "relative",
    ["../etc/passwd", "/etc/passwd", "snapshots/../../x", "thumbnails/missing.jpg", ""],
)
def test_resolve_refuses_anything_outside_or_missing(tmp_path: Path, relative: str) -> None:
    media = MediaStore(tmp_path / "media")
    with pytest.raises(StoreError):
        media.resolve(relative)


def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "media"
    (root / "thumbnails").mkdir(parents=True)
    os.symlink("/etc/hostname", root / "thumbnails" / "evil.jpg")
    with pytest.raises(StoreError):
        MediaStore(root).resolve("thumbnails/evil.jpg")


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "x" * 200, "door\n"])
def test_unsafe_ids_are_refused(tmp_path: Path, bad: str) -> None:
    media = MediaStore(tmp_path)
    with pytest.raises(StoreError, match="not a safe media id"):
        media.write_thumbnail(bad, IMAGE, Detections.empty(), NAMES)
    with pytest.raises(StoreError):
        media.event_path("clips", "door", bad, 1.7e9)
