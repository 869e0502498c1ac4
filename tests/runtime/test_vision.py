"""The vision stage: gate, batching, tracking and class filters, per camera."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from feedtag.config import validate_config
from feedtag.config.models import CameraConfig
from feedtag.core import Detections, Frame
from feedtag.runtime.node import NodeEngine
from feedtag.runtime.vision import VisionConsumer, tracks_moved

from ..conftest import wait_for

NAMES = ["person", "car"]


class MovingBoxDetector:
    """A fake behind the Detector seam: one person whose box moves with the image content."""

    class_names: Sequence[str] = NAMES

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        with self.lock:
            self.calls.append(len(images))
        out = []
        for image in images:
            x = float(image[0, 0, 0])  # the test encodes the person's x in pixel (0, 0)
            out.append(
                Detections(
                    np.array([[x, 10, x + 20, 60], [100, 100, 160, 140]], np.float32),
                    np.array([0.9, 0.8], np.float32),
                    np.array([0, 1], np.int32),
                )
            )
        return out


def camera(camera_id: str, **extra: Any) -> CameraConfig:
    data = {"cameras": [{"id": camera_id, "url": "rtsp://cam/x", **extra}]}
    return validate_config(data).cameras[0]


def frame(camera_id: str, index: int, x: int, noise: int = 0) -> Frame:
    image = np.full((180, 320, 3), 90, np.uint8)
    image[0, 0, 0] = x
    image[20:80, x : x + 20] = 250  # the person, visible to the gate
    if noise:
        image[100:, :] = noise
    return Frame(camera_id, index, float(index), 0.0, image)


def run(consumer: VisionConsumer, frames: list[Frame]) -> list[tuple[Frame, Detections]]:
    results: list[tuple[Frame, Detections]] = []
    consumer.on_result = lambda f, d: results.append((f, d))
    consumer.start()
    try:
        for item in frames:
            consumer.consume(item)
            wanted = item.index + 1
            wait_for(lambda n=wanted: len(results) >= n, 5, what=f"result {item.index}")
    finally:
        consumer.stop()
    return results


def test_tracks_get_ids_and_the_gate_skips_still_frames() -> None:
    detector = MovingBoxDetector()
    consumer = VisionConsumer(detector, validate_config({}).detector, [camera("a")])
    moving = [frame("a", i, 20 + 15 * i) for i in range(5)]
    still = [frame("a", 5 + i, 20 + 15 * 4) for i in range(5)]
    results = run(consumer, moving + still)
    ids = [d.tracker_id.tolist() for _, d in results]  # type: ignore[union-attr]
    assert ids[2][0] == ids[4][0] > 0  # the person keeps one id
    status = consumer.statuses()[0]
    assert status.detected < 10 and status.gated >= 3  # the still tail was carried forward
    assert status.counts == {"person": 1, "car": 1}
    assert all(len(d) == 2 for _, d in results)  # carried-forward results are complete


def test_class_filter_per_camera() -> None:
    consumer = VisionConsumer(
        MovingBoxDetector(), validate_config({}).detector, [camera("a", classes=["car"])]
    )
    results = run(consumer, [frame("a", 0, 20)])
    assert results[0][1].class_id.tolist() == [1]


def test_unknown_class_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown classes"):
        VisionConsumer(
            MovingBoxDetector(), validate_config({}).detector, [camera("a", classes=["cat"])]
        )


def test_frames_of_many_cameras_share_batches() -> None:
    detector = MovingBoxDetector()
    cameras = [camera(f"c{i}", gate={"enabled": False}) for i in range(6)]
    settings = validate_config({"detector": {"max_wait_s": 0.2, "max_batch": 8}}).detector
    consumer = VisionConsumer(detector, settings, cameras)
    done = threading.Event()
    seen: list[str] = []
    consumer.on_result = lambda f, d: (seen.append(f.camera_id), len(seen) == 6 and done.set())
    for i in range(6):
        consumer.consume(frame(f"c{i}", 0, 20))
    consumer.start()
    try:
        assert done.wait(5)
    finally:
        consumer.stop()
    assert sorted(seen) == [f"c{i}" for i in range(6)]
    assert max(detector.calls) > 1  # at least one inference call carried several cameras


def test_a_lossless_file_does_not_wait_for_batch_companions(tmp_path: Path) -> None:
    """A file analysed losslessly hands the detector one frame and waits for its result, so
    the frame must not wait ``max_wait_s`` for companions that cannot come."""
    detector = MovingBoxDetector()
    config = validate_config(
        {
            "media_root": str(tmp_path),
            "detector": {"max_wait_s": 5},
            "cameras": [
                {"id": "file", "url": "clip.mp4", "realtime": False, "gate": {"enabled": False}}
            ],
        }
    )
    assert config.cameras[0].lossless
    consumer = VisionConsumer(detector, config.detector, config.cameras)
    results: list[Frame] = []
    consumer.on_result = lambda f, d: results.append(f)
    consumer.start()
    try:
        started = time.monotonic()
        for index in range(10):
            consumer.consume(frame("file", index, 20 + 5 * index))
        elapsed = time.monotonic() - started
    finally:
        consumer.stop()
    assert [f.index for f in results] == list(range(10))
    assert elapsed < 3.0  # ten frames; each would wait 5 s for company otherwise


@pytest.mark.parametrize(("fps", "bound_s"), [(5.0, 1.0), (1.0, 2.0)])
def test_a_frame_waits_for_companions_at_most_half_its_cameras_interval(
    fps: float, bound_s: float
) -> None:
    """At 5 fps a frame may wait 0.1 s, so that its result is back before the next frame
    (a frame the gate carries meanwhile would otherwise overtake it); at 1 fps, 0.5 s."""
    detector = MovingBoxDetector()
    settings = validate_config({"detector": {"max_wait_s": 5}}).detector
    cam = camera("a", analysis_fps=fps, adaptive={"enabled": False}, gate={"enabled": False})
    consumer = VisionConsumer(detector, settings, [cam])
    results: list[Frame] = []
    consumer.on_result = lambda f, d: results.append(f)
    consumer.start()
    try:
        time.sleep(0.05)
        started = time.monotonic()
        consumer.consume(frame("a", 0, 20))
        wait_for(lambda: len(results) == 1, 5, what="the result")
        elapsed = time.monotonic() - started
    finally:
        consumer.stop()
    assert 0.5 / fps * 0.8 <= elapsed < bound_s


def test_tracks_moved() -> None:
    def one(x: float, track: int) -> Detections:
        return Detections(
            np.array([[x, 0, x + 10, 10]], np.float32),
            np.ones(1, np.float32),
            np.zeros(1, np.int32),
            np.array([track], np.int64),
        )

    assert tracks_moved(one(0, 3), one(30, 3), 5)
    assert not tracks_moved(one(0, 3), one(30, 4), 5)  # a different track
    assert not tracks_moved(one(0, -1), one(30, -1), 5)  # not tracks yet
    assert not tracks_moved(Detections.empty(), one(30, 3), 5)


@pytest.mark.slow
def test_engine_detects_people_in_real_footage(vtest_clip: Path, models_dir: Path) -> None:
    config = validate_config(
        {
            "media_root": str(vtest_clip.parent),
            "detector": {"models_dir": str(models_dir)},
            "cameras": [{"id": "yard", "url": vtest_clip.name, "loop": True}],
        }
    )
    engine = NodeEngine.from_config(config)
    engine.start()
    try:
        status = wait_for(
            lambda: (s := engine.vision_statuses().get("yard")) and s.detected >= 3 and s, 20
        )
    finally:
        assert engine.stop()
    assert status.counts.get("person", 0) >= 2
    assert status.latency_ms is not None and status.latency_ms < 2000
    assert status.tracks >= 1


def test_a_result_that_comes_back_after_a_newer_frames_is_dropped() -> None:
    """Two workers: the camera's first frame is still in detection when its second one's
    result comes back. The late result must not reach the tracker (its clock would run back
    and drop the tracks) nor the rules after the newer frame."""
    held, release, newer_done = threading.Event(), threading.Event(), threading.Event()

    class HeldFirst(MovingBoxDetector):
        def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
            if int(images[0][0, 0, 0]) == 20:  # frame 0
                held.set()
                assert release.wait(5)
            out = super().detect(images)
            if int(images[0][0, 0, 0]) == 40:  # frame 1
                newer_done.set()
            return out

    detector = HeldFirst()
    settings = validate_config(
        {"detector": {"workers": 2, "max_batch": 1, "max_wait_s": 0.01}}
    ).detector
    consumer = VisionConsumer(detector, settings, [camera("a", gate={"enabled": False})])
    results: list[Frame] = []
    consumer.on_result = lambda f, d: results.append(f)
    consumer.start()
    try:
        consumer.consume(frame("a", 0, 20))
        assert held.wait(5)  # one worker holds frame 0
        consumer.consume(frame("a", 1, 40))
        assert newer_done.wait(5)
        wait_for(lambda: len(results) == 1, 5, what="frame 1's result")
        release.set()
        wait_for(lambda: consumer.statuses()[0].dropped == 1, 5, what="frame 0 dropped")
    finally:
        release.set()
        consumer.stop()
    assert [f.index for f in results] == [1]
    status = consumer.statuses()[0]
    assert (status.frames, status.detected, status.dropped) == (2, 1, 1)
