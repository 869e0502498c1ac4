"""Frames at the detector's scale: ingest converts each analysed frame a second time, straight
from the decoded picture to the size the detector scales whole frames to
(``Frame.model_image``), so that the detector only places it in its input; boxes come back
in the analysed frame's pixels."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from feedtag.config import validate_config
from feedtag.core import Detections, Frame
from feedtag.runtime.detect import frames_of
from feedtag.runtime.vision import VisionConsumer
from feedtag.vision.decoders import pairwise_iou
from feedtag.vision.detector import picture_size_of
from feedtag.vision.letterbox import input_shape, letterbox_into, picture_size

from ..vision.test_regions import BlobFinder, blob_detector
from .test_vision import run

#: boxes this sure are found by the other path too
SURE = 0.45


@pytest.mark.parametrize("seed", range(3))
def test_a_frame_at_the_picture_size_is_placed_where_the_resized_frame_goes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(200):
        width, height = int(rng.integers(40, 3000)), int(rng.integers(40, 3000))
        long_side = int(rng.choice([256, 320, 416, 640]))
        shape = input_shape(width, height, long_side) if rng.random() < 0.7 else (long_side,) * 2
        small = picture_size(width, height, *shape)
        out = np.zeros((3, shape[1], shape[0]), np.float32)
        big = letterbox_into(np.zeros((height, width, 3), np.uint8), out)
        placed = letterbox_into(np.zeros((small[1], small[0], 3), np.uint8), out)
        assert (placed.pad_x, placed.pad_y) == (big.pad_x, big.pad_y), (width, height, shape)
        # the picture fills the input along one side: nothing was scaled a second time
        assert placed.scale == 1.0 or small[0] == shape[0] or small[1] == shape[1]


def test_the_detector_says_the_size_it_scales_whole_frames_to() -> None:
    detector = blob_detector(BlobFinder())
    size = picture_size_of(detector)
    assert size is not None
    assert size(640, 360) == (416, 234)
    assert size(1280, 720) == (416, 234)
    assert size(360, 640) == (234, 416)
    assert size(768, 576) == (416, 312)
    assert picture_size_of(object()) is None


def test_ingest_delivers_each_frame_also_at_the_models_scale(vtest_clip: Path) -> None:
    config = validate_config(
        {"media_root": str(vtest_clip.parent),
         "cameras": [{"id": "a", "url": vtest_clip.name, "realtime": False}]},
    )  # fmt: skip
    camera = config.cameras[0]
    frames = list(frames_of(camera, config, threading.Event(), model_size=lambda w, h: (416, 234)))
    assert len(frames) >= 4
    for frame in frames:
        assert frame.image.shape == (360, 640, 3)
        assert frame.model_image is not None and frame.model_image.shape == (234, 416, 3)
        assert frame.detector_image is frame.model_image
        # the same picture: the analysed frame shrunk by area matches it to a few levels
        shrunk = cv2.resize(frame.image, (416, 234), interpolation=cv2.INTER_AREA)
        assert np.abs(shrunk.astype(int) - frame.model_image).mean() < 3
    # a detector that would not shrink the frame gets no second conversion
    same = list(frames_of(camera, config, threading.Event(), model_size=lambda w, h: (w, h)))
    assert all(frame.model_image is None for frame in same)
    assert all(frame.detector_image is frame.image for frame in same)


def test_a_frame_refuses_a_model_image_of_the_wrong_kind() -> None:
    image = np.zeros((360, 640, 3), np.uint8)
    with pytest.raises(ValueError, match="expected model_image dtype uint8"):
        Frame("a", 0, 0.0, 0.0, image, model_image=np.zeros((234, 416, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected model_image shape \(H, W, 3\)"):
        Frame("a", 0, 0.0, 0.0, image, model_image=np.zeros((234, 416), np.uint8))


def with_model_image(frame: Frame) -> Frame:
    small = cv2.resize(frame.image, (416, 234), interpolation=cv2.INTER_AREA)
    return Frame(frame.camera_id, frame.index, frame.pts_s, frame.wall_time, frame.image,
                 frame.keyframe, small)  # fmt: skip


def test_the_vision_stage_runs_whole_frames_on_the_model_image(vtest_clip: Path) -> None:
    from ..vision.test_regions import scene_frame

    runtime = BlobFinder()
    detector = blob_detector(runtime)
    camera = validate_config(
        {"cameras": [{"id": "yard", "url": "rtsp://cam/x", "gate": {"enabled": False}}]}
    ).cameras[0]
    consumer = VisionConsumer(detector, validate_config({}).detector, [camera])
    assert consumer.model_size() is not None
    frames = [with_model_image(scene_frame(i, 400 + 12 * i)) for i in range(3)]
    results = run(consumer, frames)
    assert [shape[2:] for shape in runtime.shapes] == [(256, 416)] * 3
    for index, (_, found) in enumerate(results):
        # in the analysed frame's pixels: the car and the walker where they are drawn
        xs = sorted(found.xyxy.tolist())
        assert xs[0] == pytest.approx((40, 250, 140, 300), abs=3)
        assert xs[1] == pytest.approx((400 + 12 * index, 100, 430 + 12 * index, 180), abs=3)


def sure_matched(found: Detections, other: Detections) -> tuple[int, int]:
    sure = found.select(found.confidence >= SURE)
    if not len(sure):
        return 0, 0
    if not len(other):
        return 0, len(sure)
    iou = pairwise_iou(sure.xyxy, other.xyxy)
    same_class = sure.class_id[:, None] == other.class_id[None, :]
    return int(((iou * same_class).max(axis=1) >= 0.5).sum()), len(sure)


def test_the_default_model_finds_the_same_on_the_model_image(
    default_detector: Any, vtest_clip: Path, bikes_clip: Path
) -> None:
    """Real footage through the real ingest, the default detector: the boxes it is sure of in
    the analysed frame (resized by the detector) and in the model image (made by ingest)
    are the same boxes, both ways."""
    size = picture_size_of(default_detector)
    assert size is not None
    hits = total = 0
    for clip in (vtest_clip, bikes_clip):
        config = validate_config(
            {"media_root": str(clip.parent),
             "cameras": [{"id": "a", "url": clip.name, "realtime": False,
                          "analysis_fps": 5}]},
        )  # fmt: skip
        for frame in frames_of(config.cameras[0], config, threading.Event(), model_size=size):
            assert frame.model_image is not None
            (whole,) = default_detector.detect([frame.image])
            small: npt.NDArray[np.uint8] = frame.model_image
            (placed,) = default_detector.detect([small])
            placed = frame.to_image_pixels(placed)
            for one, other in ((whole, placed), (placed, whole)):
                matched, sure = sure_matched(one, other)
                hits, total = hits + matched, total + sure
    assert total >= 100
    assert hits / total >= 0.95, (hits, total)
