from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from feedtag.core import Detections
from feedtag.vision.anonymize import (
    Anonymizer,
    PersonFinder,
    RecentPersons,
    cover,
    cover_boxes,
    person_boxes,
    tile_windows,
)

NAMES = ["person", "bicycle", "car"]


def detections(*boxes: tuple[float, float, float, float, int]) -> Detections:
    array = np.array([b[:4] for b in boxes], np.float32).reshape(-1, 4)
    return Detections(
        array,
        np.full(len(boxes), 0.9, np.float32),
        np.array([b[4] for b in boxes], np.int32),
    )


def detail(patch: np.ndarray) -> float:
    """High-frequency energy: mean absolute difference of neighbouring pixels."""
    grey = patch.astype(np.float64).mean(axis=2)
    return float(np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())


@pytest.fixture(scope="module")
def real_frame(vtest_clip: Path) -> np.ndarray:
    with av.open(str(vtest_clip)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24")  # type: ignore[no-any-return]


def test_cover_removes_detail_from_real_footage(real_frame: np.ndarray) -> None:
    patch = real_frame[100:220, 200:300]
    covered = cover(patch)
    assert detail(patch) > 4 * detail(covered)
    assert detail(covered) < 3.0  # a smooth shading: no edges, no texture left
    # no edge anywhere: neighbouring pixels differ by little, so no outline survives
    grey = covered.astype(np.int32).mean(axis=2)
    assert np.abs(np.diff(grey, axis=0)).max() < 20 and np.abs(np.diff(grey, axis=1)).max() < 20


def test_the_whole_body_is_covered_others_untouched(real_frame: np.ndarray) -> None:
    person = (200, 100, 260, 260, 0)
    car = (400, 280, 560, 340, 2)
    people = person_boxes(detections(person, car), NAMES)
    out = cover_boxes(real_frame, people).image
    assert detail(out[100:260, 200:260]) < detail(real_frame[100:260, 200:260]) / 3  # all of it
    assert (out[290:340, 420:560] == real_frame[290:340, 420:560]).all()  # cars stay
    assert (out[:, 300:] == real_frame[:, 300:]).all()
    assert not (out == real_frame).all()


@pytest.mark.parametrize(
    "box",
    [(-30, -20, 10, 40, 0), (630, 340, 700, 400, 0), (5, 5, 5.5, 5.5, 0), (0, 0, 640, 360, 0)],
    ids=["off-top-left", "off-bottom-right", "tiny", "whole-frame"],
)
def test_edges_and_degenerate_boxes(real_frame: np.ndarray, box: tuple[float, ...]) -> None:
    out = cover_boxes(real_frame, person_boxes(detections(box), NAMES))  # type: ignore[arg-type]
    assert out.image.shape == real_frame.shape and out.image.dtype == np.uint8
    assert len(out.boxes) == 1


def test_no_people_no_change(real_frame: np.ndarray) -> None:
    out = cover_boxes(real_frame, person_boxes(Detections.empty(), NAMES))
    assert (out.image == real_frame).all() and len(out.boxes) == 0


class _Failing:
    class_names = ("person",)

    def detect(self, images: Any) -> list[Detections]:
        raise RuntimeError("the inference session is gone")


class _Blind:
    class_names = ("person",)

    def detect(self, images: Any) -> list[Detections]:
        return [Detections.empty() for _ in images]


@pytest.mark.parametrize(
    ("finder", "whole"),
    [
        (None, True),
        (PersonFinder(_Failing(), tile=416), True),
        (PersonFinder(_Blind(), 416), False),
    ],
    ids=["no-finder", "finder-fails", "finder-works"],
)
def test_fails_closed(real_frame: np.ndarray, finder: PersonFinder | None, whole: bool) -> None:
    """Without a working person check the whole image is blurred, never written as it is."""
    anonymizer = Anonymizer(finder)
    out = anonymizer.anonymize(real_frame)
    assert out.whole is whole and anonymizer.whole == int(whole)
    if whole:
        assert detail(out.image) < detail(real_frame) / 3
        assert out.boxes.tolist() == [[0, 0, 640, 360]]
    else:
        assert (out.image == real_frame).all()


def test_known_boxes_are_covered_even_when_the_finder_misses(real_frame: np.ndarray) -> None:
    """A tracked person the finder does not see on this frame is still covered."""
    known = np.array([[200, 100, 260, 260]], np.float32)
    out = Anonymizer(PersonFinder(_Blind(), 416)).anonymize(real_frame, known)
    assert detail(out.image[100:260, 200:260]) < detail(real_frame[100:260, 200:260]) / 3


@pytest.mark.parametrize(
    ("width", "height", "tile", "expected"),
    [
        (640, 360, 416, 2),
        (1280, 720, 416, 8),
        (416, 416, 416, 1),
        (100, 50, 416, 1),
    ],
)
def test_tiles_cover_the_image(width: int, height: int, tile: int, expected: int) -> None:
    windows = tile_windows(width, height, tile)
    assert len(windows) == expected
    seen = np.zeros((height, width), bool)
    for x1, y1, x2, y2 in windows:
        assert x2 - x1 <= tile and y2 - y1 <= tile
        seen[y1:y2, x1:x2] = True
    assert seen.all()


def test_recent_persons_predicts_and_forgets() -> None:
    def seen(x: float) -> Detections:
        return Detections(np.array([[x, 0, x + 10, 20]], np.float32), np.ones(1, np.float32),
                          np.zeros(1, np.int32), np.array([9]))  # fmt: skip

    recent = RecentPersons(hold_s=2.0)
    recent.observe(seen(0), NAMES, 0.0)
    recent.observe(seen(10), NAMES, 1.0)
    assert len(recent.predicted(1.0)) == 0  # seen on this very frame: its box is in hand
    box = recent.predicted(1.5)[0]
    assert box[0] < 15 < box[2]  # moved on at 10 px/s and grown
    recent.observe(Detections.empty(), NAMES, 4.0)
    assert len(recent.predicted(4.0)) == 0  # unseen for longer than hold_s: forgotten


@pytest.mark.slow
def test_detector_no_longer_finds_covered_people(default_detector: Any) -> None:
    """The check the anonymizer docstring describes: crops around every confidently
    detected person of vtest.avi, run through the detector as they are and anonymized."""
    from feedtag.bench.accuracy import analysed_frames
    from feedtag.bench.footage import vtest_path

    names = list(default_detector.class_names)
    found: dict[str, list[bool]] = {"original": [], "box": []}
    for frame in analysed_frames(vtest_path(), 1.0)[::4]:
        detections = default_detector.detect([frame.image])[0]
        people = detections.select((detections.class_id == 0) & (detections.confidence >= 0.5))
        versions = {
            "original": frame.image,
            "box": cover_boxes(frame.image, person_boxes(people, names)).image,
        }
        height, width = frame.image.shape[:2]
        for x1, y1, x2, y2 in people.xyxy:
            w, h = x2 - x1, y2 - y1
            left, right = int(max(0, x1 - w / 2)), int(min(width, x2 + w / 2))
            top, bottom = int(max(0, y1 - h / 5)), int(min(height, y2 + h / 5))
            for name, image in versions.items():
                crop = np.ascontiguousarray(image[top:bottom, left:right])
                result = default_detector.detect([crop])[0]
                found[name].append(
                    bool(((result.class_id == 0) & (result.confidence >= 0.3)).any())
                )
    rates = {name: sum(hits) / len(hits) for name, hits in found.items()}
    print(f"\nperson found in {len(found['original'])} crops: {rates}")
    assert len(found["original"]) >= 30
    assert rates["original"] >= 0.9
    assert rates["box"] <= 0.05  # the whole body covered: the person is gone for the detector


@pytest.fixture(scope="module")
def crowded_frames() -> list[np.ndarray]:
    """Ten busy analysed frames of vtest.avi at 640x360 (1 fps, seconds 10 to 64): six to
    nine people each, many small."""
    from feedtag.bench.accuracy import analysed_frames
    from feedtag.bench.footage import sample_h264

    frames = analysed_frames(sample_h264("vtest", 640, 360), 1.0)
    return [frame.image for frame in frames[10:70:6]]


@pytest.mark.slow
def test_a_crowded_snapshot_leaves_nobody_uncovered(
    models_dir: Path, crowded_frames: list[np.ndarray], tmp_path: Path
) -> None:
    """The incident: analysis at 320 covered 2 of 6+ people of a stored vtest snapshot. Now
    the snapshot is anonymized from a person check on the image itself, and the stronger,
    independent check (FP32 on 2x-enlarged tiles) finds nobody at >= 0.5 outside covered
    area, while it does find them in the raw frames and in the old, analysis-only cover."""
    from feedtag.bench.anonymize import StrongCheck
    from feedtag.config.models import DetectorConfig
    from feedtag.runtime.detection import build_anonymizer, build_detector
    from feedtag.store.media import MediaStore

    analysis = build_detector(DetectorConfig(input_size=320, models_dir=models_dir))
    anonymizer = build_anonymizer(DetectorConfig(input_size=320, models_dir=models_dir))
    check = StrongCheck.build(models_dir)
    media = MediaStore(tmp_path)
    names = list(analysis.class_names)
    raw_persons = old_misses = 0
    for index, frame in enumerate(crowded_frames):
        detections = analysis.detect([frame])[0]
        raw_persons += len(check.score(frame, np.zeros((0, 4), np.float32), unique=True))
        # what feedtag did before: cover only what analysis found, head and upper body
        old = person_boxes(detections, names).copy()
        old[:, 3] = old[:, 1] + (old[:, 3] - old[:, 1]) * 0.55
        old_misses += sum(f.missed for f in check.score(cover_boxes(frame, old).image, old))
        covered = anonymizer.anonymize(frame, person_boxes(detections, names))
        path = media.write_snapshot(
            "vtest", f"crowd{index}", at=1.7e9, image=covered, detections=detections
        )
        written = np.asarray(Image.open(path).convert("RGB"))
        findings = check.score(written, covered.boxes)
        missed = [f for f in findings if f.missed]
        assert not missed, f"frame {index}: persons left uncovered: {missed}"
        assert not covered.whole
    print(f"\nraw frames: {raw_persons} persons; old cover: {old_misses} uncovered")
    assert raw_persons >= 5 * len(crowded_frames)  # the check sees the crowd
    assert old_misses >= 1  # and would have caught the old anonymizer


def test_events_on_one_frame_share_one_check(real_frame: np.ndarray) -> None:
    calls: list[int] = []

    class Counting(_Blind):
        def detect(self, images: Any) -> list[Detections]:
            calls.append(len(images))
            return super().detect(images)

    anonymizer = Anonymizer(PersonFinder(Counting(), 416))
    known = np.array([[200, 100, 260, 260]], np.float32)
    first = anonymizer.anonymize(real_frame, known)
    assert anonymizer.anonymize(real_frame, known) is first  # the same frame and boxes
    assert anonymizer.anonymize(real_frame.copy(), known) is not first  # another frame
    assert len(calls) == 2 and anonymizer.reused == 1
