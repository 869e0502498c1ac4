from __future__ import annotations

from pathlib import Path

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
