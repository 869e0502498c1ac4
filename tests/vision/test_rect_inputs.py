"""Stride-aligned rectangular model inputs: which rectangle each frame gets, batches of one
shape each, boxes mapped back to the frame; and the default model at several rectangles
against its square letterboxed run on the same real frames."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from feedtag.config.models import DetectorConfig
from feedtag.core import Detections
from feedtag.runtime.detection import default_model_info
from feedtag.samples import bikes_path, vtest_path
from feedtag.vision.decoders import pairwise_iou
from feedtag.vision.letterbox import PAD_VALUE, input_shape
from feedtag.vision.modelbuild import calibration
from feedtag.vision.onnx_backend import LetterboxDetector, ModelInput, OnnxDetector

CLASSES = ("person", "car")


@pytest.mark.parametrize(
    ("frame", "long_side", "expected"),
    [
        ((640, 360), 416, (416, 256)),  # 16:9: 234 rounded up to 256
        ((1280, 720), 416, (416, 256)),
        ((1920, 1080), 320, (320, 192)),  # 180 -> 192
        ((640, 480), 416, (416, 320)),  # 4:3: 312 -> 320
        ((768, 576), 416, (416, 320)),  # vtest.avi
        ((360, 640), 416, (256, 416)),  # portrait
        ((1080, 1920), 416, (256, 416)),
        ((416, 416), 416, (416, 416)),  # square: the square
        ((32, 18), 416, (416, 256)),  # tiny frames are enlarged, as the square letterbox does
        ((1, 1), 416, (416, 416)),
        ((1000, 3), 416, (416, 32)),  # never less than one stride
        ((640, 272), 416, (416, 192)),  # bikes.mp4, 2.35:1: 177 -> 192
    ],
)
def test_shape_choice(frame: tuple[int, int], long_side: int, expected: tuple[int, int]) -> None:
    assert input_shape(*frame, long_side) == expected


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((640, 360, 400), "long_side a multiple of 32, got 400"),
        ((640, 360, 16), "long_side a multiple of 32, got 16"),
        ((0, 360, 416), "at least 1 x 1, got 0 x 360"),
    ],
)
def test_shape_choice_refuses(args: tuple[int, int, int], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        input_shape(*args)


class WhiteBoxFinder:
    """A model behind the :class:`InferenceRuntime` seam: reports the white rectangle of
    each input (channel 0 above 0.75) as one ``yolo-decoded`` row of class 0, and records
    the shape of every batch it is given."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, ...]] = []

    def run(self, batch: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
        self.batches.append(batch.shape)
        rows = np.zeros((len(batch), 1, 5 + len(CLASSES)), np.float32)
        for index, tensor in enumerate(batch):
            ys, xs = np.nonzero(tensor[0] > 0.75)
            if len(xs) == 0:  # a grey filler frame: nothing found
                continue
            x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            rows[index, 0] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, 1.0, 1.0, 0.0]
        return [rows]


def white_box_frame(width: int, height: int, box: tuple[int, int, int, int]) -> np.ndarray:
    frame = np.full((height, width, 3), 40, np.uint8)
    x1, y1, x2, y2 = box
    frame[y1:y2, x1:x2] = 255
    return frame


def rect_detector(runtime: WhiteBoxFinder, **kwargs: Any) -> LetterboxDetector:
    model_input = ModelInput("images", None, 416, np.dtype(np.float32), dynamic_size=True)
    return LetterboxDetector(runtime, model_input, CLASSES, **{"input_stride": 32, **kwargs})


FRAMES = [  # (width, height, white box): 16:9, portrait, 16:9, 4:3, 16:9 again
    (640, 360, (100, 50, 300, 200)),
    (360, 640, (20, 300, 200, 600)),
    (1280, 720, (640, 0, 1280, 720)),
    (768, 576, (10, 10, 100, 500)),
    (640, 360, (500, 300, 640, 360)),
]


@pytest.mark.parametrize("max_batch", [1, 2, 8])
def test_batches_never_mix_shapes_and_boxes_come_back_in_order(max_batch: int) -> None:
    runtime = WhiteBoxFinder()
    detector = rect_detector(runtime, max_batch=max_batch)
    frames = [white_box_frame(width, height, box) for width, height, box in FRAMES]
    results = detector.detect(frames)
    assert len(results) == len(frames)
    for found, (width, height, box) in zip(results, FRAMES, strict=True):
        assert len(found) == 1, (width, height)
        # one pixel of the model input is up to 1280/416 frame pixels, plus area averaging
        assert found.xyxy[0] == pytest.approx(box, abs=2 * max(width, height) / 416 + 1)
    shapes = {shape[2:] for shape in runtime.batches}
    assert shapes == {(256, 416), (416, 256), (320, 416)}
    assert all(len(shape) == 4 and shape[0] <= max_batch for shape in runtime.batches)
    # every frame went through the model exactly once
    assert sum(shape[0] for shape in runtime.batches) == len(frames)


def test_a_fixed_square_model_is_letterboxed_into_its_square() -> None:
    runtime = WhiteBoxFinder()
    fixed = ModelInput("images", 2, 416, np.dtype(np.float32))
    detector = LetterboxDetector(runtime, fixed, CLASSES, input_stride=32)
    assert detector.input_shape(np.zeros((360, 640, 3), np.uint8)) == (416, 416)
    (found,) = detector.detect([white_box_frame(640, 360, (100, 50, 300, 200))])
    assert found.xyxy[0] == pytest.approx((100, 50, 300, 200), abs=3)
    assert runtime.batches == [(2, 3, 416, 416)]  # the fixed batch of 2, grey in the second


def test_the_batch_buffer_is_refilled_between_calls() -> None:
    """A smaller frame after a larger one in the same rectangle: the old picture must not
    show in the new margins."""
    runtime = WhiteBoxFinder()
    detector = rect_detector(runtime)
    detector.detect([white_box_frame(640, 360, (0, 0, 640, 360))])  # all white
    (found,) = detector.detect([white_box_frame(320, 180, (10, 10, 20, 20))])
    assert found.xyxy[0] == pytest.approx((10, 10, 20, 20), abs=1.5)


def test_no_stride_keeps_the_square() -> None:
    runtime = WhiteBoxFinder()
    model_input = ModelInput("images", None, 416, np.dtype(np.float32), dynamic_size=True)
    detector = LetterboxDetector(runtime, model_input, CLASSES)
    detector.detect([white_box_frame(640, 360, (100, 50, 300, 200))])
    assert runtime.batches == [(1, 3, 416, 416)]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"input_stride": 0}, "input_stride >= 1 dividing the input size 416, got 0"),
        ({"input_stride": 96}, "dividing the input size 416, got 96"),
        ({"input_stride": 32, "layout": "yolox"}, "layout 'yolox' decodes a square grid"),
    ],
)
def test_bad_stride_settings_are_refused(kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        rect_detector(WhiteBoxFinder(), **kwargs)


def test_pad_value_fills_the_margins() -> None:
    """What the model sees: the picture in its rectangle, grey 0.5 elsewhere."""
    seen: list[npt.NDArray[Any]] = []

    class Keep(WhiteBoxFinder):
        def run(self, batch: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
            seen.append(batch.copy())
            return super().run(batch)

    rect_detector(Keep()).detect([white_box_frame(640, 360, (0, 0, 640, 360))])
    (batch,) = seen
    assert batch.shape == (1, 3, 256, 416)
    assert np.all(batch[0, :, 11:245] == 1.0)  # 234 rows of picture, 11 grey above
    assert np.all(batch[0, :, :11] == PAD_VALUE) and np.all(batch[0, :, 245:] == PAD_VALUE)


# -- the default model at several rectangles ------------------------------------------------------


def crops(frame: np.ndarray) -> list[np.ndarray]:
    """The frame itself, a 16:9 band of it, and a portrait band: three input shapes."""
    height, width = frame.shape[:2]
    band = min(height, width * 9 // 16)
    top = (height - band) // 2
    tall_width = min(width, height * 9 // 16)
    left = (width - tall_width) // 2
    wide = np.ascontiguousarray(frame[top : top + band])
    tall = np.ascontiguousarray(frame[:, left : left + tall_width])
    return [frame, wide, tall]


#: a detection this sure is not borderline (the detector's threshold is 0.3)
SURE = 0.45


def sure_only(found: Detections) -> Detections:
    keep = found.confidence >= SURE
    return Detections(found.xyxy[keep], found.confidence[keep], found.class_id[keep])


def matched_ious(reference: Detections, candidate: Detections) -> tuple[int, list[float]]:
    """Greedy one-to-one pairs of same-class boxes at IoU >= 0.5: (count, their IoUs)."""
    if len(reference) == 0 or len(candidate) == 0:
        return 0, []
    overlap = pairwise_iou(reference.xyxy.astype(np.float64), candidate.xyxy.astype(np.float64))
    overlap[reference.class_id[:, None] != candidate.class_id[None, :]] = 0
    ious = []
    while overlap.size and overlap.max() >= 0.5:
        row, column = np.unravel_index(int(overlap.argmax()), overlap.shape)
        ious.append(float(overlap[row, column]))
        overlap[row, :] = 0
        overlap[:, column] = 0
    return len(ious), ious


def real_frames() -> list[np.ndarray]:
    frames = []
    for clip in (vtest_path(), bikes_path()):
        for frame in calibration.sample_frames(clip, 4, offset=0.2):
            frames += crops(frame)
    return frames


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_rectangles_find_what_the_square_finds(models_dir: Any, precision: str) -> None:
    info = default_model_info(DetectorConfig(models_dir=models_dir, precision=precision))
    assert info.input_stride == 32
    kwargs: dict[str, Any] = {"layout": info.layout, "input_size": info.input_size}
    square = OnnxDetector(info.path, list(info.class_names), **kwargs)
    rect = OnnxDetector(info.path, list(info.class_names), input_stride=32, **kwargs)
    frames = real_frames()
    shapes = {rect.input_shape(frame) for frame in frames}
    assert len(shapes) >= 3 and (416, 256) in shapes, shapes
    # A sure box (score >= SURE) of one run must be among all the boxes of the other: a
    # borderline box near the 0.3 threshold comes and goes between any two inputs, as it does
    # between two frames, and says nothing about the rectangle.
    found = sure = found_back = sure_back = 0
    ious: list[float] = []
    for frame in frames:
        (ref,), (got,) = square.detect([frame]), rect.detect([frame])
        count, pair_ious = matched_ious(sure_only(ref), got)
        found, sure, ious = found + count, sure + len(sure_only(ref)), ious + pair_ious
        count, _ = matched_ious(sure_only(got), ref)
        found_back, sure_back = found_back + count, sure_back + len(sure_only(got))
    recall, precision_ = found / sure, found_back / sure_back
    print(
        f"\n{precision}: rectangles {sorted(shapes)} vs square over {len(frames)} frames:"
        f" recall {recall:.3f}, precision {precision_:.3f} ({sure} sure square boxes,"
        f" {sure_back} sure rectangle boxes), median IoU {np.median(ious):.3f}"
    )
    assert sure >= 40
    assert recall >= 0.95 and precision_ >= 0.95, (recall, precision_)
    assert np.median(ious) > 0.9
