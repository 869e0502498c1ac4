"""The checks :mod:`feedtag.core`'s values make when built: a wrong array names the field,
what it expected and what it got."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from feedtag.core import Detections, Frame

BOXES = np.zeros((2, 4), np.float32)
SCORES = np.zeros(2, np.float32)
CLASSES = np.zeros(2, np.int32)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ((BOXES.astype(np.float64), SCORES, CLASSES), "expected xyxy dtype float32, got 'float64'"),
        ((BOXES[:, :3], SCORES, CLASSES), "expected xyxy shape (N, 4), got (2, 3)"),
        ((BOXES, None, CLASSES), "expected confidence as numpy.ndarray, got 'NoneType'"),
        ((BOXES, SCORES, [0, 0]), "expected class_id as numpy.ndarray, got 'list'"),
        ((BOXES, SCORES, CLASSES.astype(np.int64)), "expected class_id dtype int32, got 'int64'"),
        ((BOXES, SCORES[:1], CLASSES), "expected confidence shape (2,), got (1,)"),
        ((BOXES, SCORES, CLASSES, CLASSES), "expected tracker_id dtype int64, got 'int32'"),
        (
            (BOXES, SCORES, CLASSES, np.zeros(3, np.int64)),
            "expected tracker_id shape (2,), got (3,)",
        ),
    ],
)
def test_detections_name_what_is_wrong(arrays: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        Detections(*arrays)
    assert str(raised.value) == message


def test_detections_take_the_arrays_they_describe() -> None:
    assert len(Detections(BOXES, SCORES, CLASSES)) == 2
    assert len(Detections(BOXES, SCORES, CLASSES, np.arange(2, dtype=np.int64))) == 2
    assert len(Detections.empty()) == 0


def test_a_frame_names_a_wrong_image() -> None:
    with pytest.raises(ValueError, match=r"^expected image dtype uint8, got 'float32'$"):
        Frame("cam", 0, 0.0, 0.0, np.zeros((4, 4, 3), np.float32))
