from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from feedtag.core import Detections
from feedtag.vision.anonymize import anonymize, cover

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


def test_upper_body_is_covered_rest_and_others_untouched(real_frame: np.ndarray) -> None:
    person = (200, 100, 260, 260, 0)
    car = (400, 200, 560, 300, 2)
    out = anonymize(real_frame, detections(person, car), NAMES)
    assert detail(out[100:180, 200:260]) < detail(real_frame[100:180, 200:260]) / 3
    assert (out[200:260, 200:260] == real_frame[200:260, 200:260]).all()  # legs stay
    assert (out[200:300, 400:560] == real_frame[200:300, 400:560]).all()  # cars stay
    assert out is not real_frame and not (out == real_frame).all()


def test_whole_box_mode(real_frame: np.ndarray) -> None:
    out = anonymize(real_frame, detections((200, 100, 260, 260, 0)), NAMES, region="box")
    assert detail(out[120:250, 200:260]) < detail(real_frame[120:250, 200:260]) / 3


@pytest.mark.parametrize(
    "box",
    [(-30, -20, 10, 40, 0), (630, 340, 700, 400, 0), (5, 5, 5.5, 5.5, 0), (0, 0, 640, 360, 0)],
    ids=["off-top-left", "off-bottom-right", "tiny", "whole-frame"],
)
def test_edges_and_degenerate_boxes(real_frame: np.ndarray, box: tuple[float, ...]) -> None:
    out = anonymize(real_frame, detections(box), NAMES)  # type: ignore[arg-type]
    assert out.shape == real_frame.shape and out.dtype == np.uint8


def test_no_people_no_change(real_frame: np.ndarray) -> None:
    out = anonymize(real_frame, Detections.empty(), NAMES)
    assert (out == real_frame).all()


@pytest.mark.slow
def test_detector_no_longer_finds_covered_people(default_detector: Any) -> None:
    """The check the anonymizer docstring describes: crops around every confidently
    detected person of vtest.avi, run through the detector as they are and anonymized."""
    from feedtag.bench.accuracy import analysed_frames
    from feedtag.bench.footage import vtest_path

    names = list(default_detector.class_names)
    found: dict[str, list[bool]] = {"original": [], "upper": [], "box": []}
    for frame in analysed_frames(vtest_path(), 1.0)[::4]:
        detections = default_detector.detect([frame.image])[0]
        people = detections.select((detections.class_id == 0) & (detections.confidence >= 0.5))
        versions = {
            "original": frame.image,
            "upper": anonymize(frame.image, people, names),
            "box": anonymize(frame.image, people, names, region="box"),
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
    assert rates["box"] <= 0.05  # whole-box mode: the person is gone for the detector
    assert rates["upper"] <= 0.7 * rates["original"]  # head and torso gone; legs remain
