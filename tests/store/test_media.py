"""Media files: anonymized snapshots and thumbnails, path safety."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from feedtag.core import Detections
from feedtag.errors import StoreError
from feedtag.store.media import THUMBNAIL_DEMAND_S, MediaStore
from feedtag.vision.anonymize import Anonymized, cover_boxes, person_boxes

NAMES = ["person", "car"]
RNG = np.random.default_rng(3)
IMAGE = RNG.integers(0, 255, (360, 640, 3), dtype=np.uint8)
PERSON = Detections(
    np.array([[100, 50, 160, 250]], np.float32),
    np.array([0.9], np.float32),
    np.array([0], np.int32),
    np.array([4], np.int64),
)
COVERED = cover_boxes(IMAGE, person_boxes(PERSON, NAMES))
NOBODY = cover_boxes(IMAGE, np.zeros((0, 4), np.float32))


def detail(image: np.ndarray) -> float:
    grey = image.astype(np.float64).mean(axis=2)
    return float(np.abs(np.diff(grey, axis=1)).mean())


def test_thumbnail_is_anonymized_scaled_and_replaced(tmp_path: Path) -> None:
    media = MediaStore(tmp_path)
    path = media.write_thumbnail("door", COVERED)
    first = path.stat().st_mtime_ns
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.size == (480, 270)
        pixels = np.asarray(image.convert("RGB")).astype(np.int16)
    scale = 480 / 640
    head = pixels[int(50 * scale) : int(140 * scale), int(100 * scale) : int(160 * scale)]
    background = pixels[200:260, 300:400]
    assert detail(head) < detail(background) / 3  # the person is covered
    media.write_thumbnail("door", NOBODY)
    assert path.stat().st_mtime_ns >= first
    assert [p.name for p in path.parent.iterdir()] == ["door.jpg"]  # no temporary files left


def test_snapshot_path_and_content(tmp_path: Path) -> None:
    media = MediaStore(tmp_path)
    at = 1_764_300_000.0  # 2025-11-28 UTC
    path = media.write_snapshot(
        "door", "abc123", at=at, image=COVERED, detections=PERSON, highlight=[4]
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
        media.write_thumbnail(bad, NOBODY)
    with pytest.raises(StoreError):
        media.event_path("clips", "door", bad, 1.7e9)


def test_only_anonymized_images_are_written(tmp_path: Path) -> None:
    """A raw frame cannot be written by mistake: the media store takes only what the
    anonymizer made."""
    media = MediaStore(tmp_path)
    with pytest.raises(StoreError, match="only anonymized images"):
        media.write_thumbnail("door", IMAGE)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="only anonymized images"):
        media.write_snapshot("door", "e1", at=1.7e9, image=IMAGE, detections=PERSON)  # type: ignore[arg-type]
    assert not any(tmp_path.rglob("*.jpg"))


def test_thumbnails_are_wanted_only_while_asked_for(tmp_path: Path) -> None:
    media = MediaStore(tmp_path)
    assert not media.thumbnail_wanted("door", now=100.0)
    media.want_thumbnail("door", now=100.0)
    assert media.thumbnail_wanted("door", now=100.0 + THUMBNAIL_DEMAND_S)
    assert not media.thumbnail_wanted("door", now=101.0 + THUMBNAIL_DEMAND_S)
    assert not media.thumbnail_wanted("gate", now=100.0)


def test_observers_see_every_written_image(tmp_path: Path) -> None:
    media = MediaStore(tmp_path)
    seen: list[tuple[str, Anonymized]] = []
    media.observers.append(lambda path, image: seen.append((path.name, image)))
    media.observers.append(lambda path, image: 1 / 0)  # a failing observer is only logged
    media.write_thumbnail("door", COVERED)
    media.write_snapshot("door", "e1", at=1.7e9, image=COVERED, detections=PERSON)
    assert [name for name, _ in seen] == ["door.jpg", "e1.jpg"]
    assert seen[0][1] is COVERED


def test_a_media_root_mark_is_found_only_on_the_same_storage(tmp_path: Path) -> None:
    """The Ray engine's driver marks its media root; a shard whose media root is the same
    storage finds the mark, one writing to other storage (or a stale mark) does not."""
    driver = MediaStore(tmp_path / "shared" / "media")
    token = driver.mark()
    assert MediaStore(tmp_path / "shared" / "media").has_mark(token)
    assert not MediaStore(tmp_path / "elsewhere" / "media").has_mark(token)
    newer = driver.mark()  # the driver started again: a new mark
    assert newer != token
    assert not MediaStore(tmp_path / "shared" / "media").has_mark(token)
    assert MediaStore(tmp_path / "shared" / "media").has_mark(newer)
