"""One per-frame vision step: the engine's vision stage and ``feedtag detect``'s loop (which
the presence benchmark runs) give the same results for the same frames, gate decisions, track
ids and the moving hint included."""

from __future__ import annotations

import numpy as np

from feedtag.config import validate_config
from feedtag.core import AnalysisLevel, Detections, Frame
from feedtag.ingest.rate import AdaptiveRate
from feedtag.runtime.detect import detect_stream
from feedtag.runtime.step import CameraStep
from feedtag.runtime.vision import VisionConsumer
from feedtag.vision.gate import ChangeGate
from feedtag.vision.tracker import ByteTracker

from .test_vision import NAMES, MovingBoxDetector, camera, frame, run


def scene() -> list[Frame]:
    """A person walks four strides, stands, takes one-pixel steps, then stands still."""
    xs = [20, 35, 50, 65, 65, 65, 66, 67, 68, 69, 70, 70, 70, 70, 70, 70]
    return [frame("a", i, x) for i, x in enumerate(xs)]


def test_engine_and_detect_stream_run_the_same_step() -> None:
    settings = validate_config({}).detector
    cam = camera("a")
    engine = run(VisionConsumer(MovingBoxDetector(), settings, [cam]), scene())
    gate = cam.gate
    direct = list(
        detect_stream(
            iter(scene()),
            MovingBoxDetector(),
            gate=ChangeGate(gate.pixel_threshold, gate.min_changed_fraction, gate.refresh_s),
            track_lost_s=settings.track_lost_s,
        )
    )
    assert [f.index for f, _ in engine] == [r.frame_index for r in direct]
    for (_, ours), theirs in zip(engine, direct, strict=True):
        assert np.array_equal(ours.xyxy, theirs.detections.xyxy)
        assert np.array_equal(ours.tracker_id, theirs.detections.tracker_id)  # type: ignore[arg-type]
    gated = [r.gated for r in direct]
    assert 0 < sum(gated) < len(gated)  # the gate decided both ways
    assert [bool(g) for g in gated[-3:]] == [True] * 3  # standing still: carried forward


def test_the_moving_hint_keeps_the_detector_on_a_slowly_moving_track() -> None:
    """The first frame after the strides has not changed, so the gate alone would skip it;
    the track moved at the last detection, so the step runs the detector once more."""
    detector = MovingBoxDetector()
    step = CameraStep(ChangeGate(), ByteTracker(lost_s=4.0))
    hinted = [step.run(f, lambda image: detector.detect([image])[0])[1] for f in scene()]
    plain_gate = ChangeGate()
    plain = [not plain_gate.decide(f.image, f.pts_s).run for f in scene()]
    assert plain[4] and not hinted[4]
    assert sum(hinted) == sum(plain) - 1


LINE_RULES = {
    "lines": [{"name": "door", "start": [0.5, 0], "end": [0.5, 1]}],
    "rules": [{"kind": "line_cross", "line": "door", "labels": ["person"]}],
}


def adaptive_step(**extra: object) -> tuple[CameraStep, AdaptiveRate]:
    cam = camera("a", **extra)
    rate = AdaptiveRate.for_camera(cam)
    return CameraStep.for_camera(cam, NAMES, ByteTracker(lost_s=4.0), rate), rate


def walk(xs: list[int]) -> list[Frame]:
    return [frame("a", i, x) for i, x in enumerate(xs)]


def test_a_track_moving_near_a_line_raises_the_rate_to_tracking() -> None:
    step, rate = adaptive_step(analytics=LINE_RULES, adaptive={"quiet_after_s": 3})
    detector = MovingBoxDetector()
    seen = []
    # walks up to the line (x 150: ground point 0.5), then stands far from it
    for item in walk([100, 115, 130, 145, 150, 150, 150, 150, 150, 150]):
        step.run(item, lambda image: detector.detect([image])[0])
        seen.append(rate.level)
    assert seen[:2] == [AnalysisLevel.NORMAL] * 2  # not a confirmed, moving track yet
    assert AnalysisLevel.TRACKING in seen[2:5]
    # standing still (and the car parked): quiet_after_s after the last step (t 4) nothing
    # has moved or appeared, so tracking ends and the scene is quiet
    assert seen[5:] == [AnalysisLevel.TRACKING] * 2 + [AnalysisLevel.FLOOR] * 3
    assert rate.target_fps == 0.5


def test_the_same_walk_far_from_any_motion_rule_stays_normal() -> None:
    far = {**LINE_RULES, "lines": [{"name": "door", "start": [0.9, 0], "end": [0.9, 0.1]}]}
    detector = MovingBoxDetector()
    for extra in ({}, {"analytics": far}):
        step, rate = adaptive_step(**extra)
        for item in walk([100, 115, 130, 145, 150]):
            step.run(item, lambda image: detector.detect([image])[0])
            assert rate.level is AnalysisLevel.NORMAL, extra


def test_an_empty_still_scene_drops_to_the_floor() -> None:
    step, rate = adaptive_step(adaptive={"quiet_after_s": 5})
    still = np.full((180, 320, 3), 90, np.uint8)
    levels = []
    for i in range(8):
        step.run(Frame("a", i, float(i), 0.0, still), lambda image: Detections.empty())
        levels.append(rate.level)
    assert levels == [AnalysisLevel.NORMAL] * 5 + [AnalysisLevel.FLOOR] * 3
    assert rate.target_fps == 0.5
    # the light changes: the gate runs the detector, which finds nothing new
    brighter = np.full((180, 320, 3), 130, np.uint8)
    assert not step.run(Frame("a", 8, 8.0, 0.0, brighter), lambda image: Detections.empty())[1]
    assert rate.level is AnalysisLevel.FLOOR
    # someone walks in: the rate is normal again at once
    step.run(frame("a", 9, 100), lambda image: MovingBoxDetector().detect([image])[0])
    assert rate.level is AnalysisLevel.NORMAL


def test_adaptation_off_feeds_nothing() -> None:
    step, rate = adaptive_step(adaptive={"enabled": False, "quiet_after_s": 1})
    still = np.full((180, 320, 3), 90, np.uint8)
    for i in range(5):
        step.run(Frame("a", i, float(i), 0.0, still), lambda image: Detections.empty())
    assert rate.level is AnalysisLevel.NORMAL and not rate.adapts


def test_a_repeated_picture_is_carried_forward_without_a_look() -> None:
    """The packet gate hands the picture before on again in place of a keyframe it left
    undecoded: the step carries the result forward even when the gate's refresh is due or
    the picture differs from the gate's reference, and tells the rate nothing happened."""
    step, rate = adaptive_step(adaptive={"quiet_after_s": 5})
    detector = MovingBoxDetector()
    seen = step.run(frame("a", 0, 40), lambda image: detector.detect([image])[0])[0]
    calls = []

    def detect(image: np.ndarray) -> Detections:
        calls.append(image)
        return detector.detect([image])[0]

    moved = frame("a", 1, 120)  # a picture the gate would call changed
    repeat = Frame("a", 1, 30.0, 0.0, moved.image, keyframe=True, repeat=True)  # refresh due
    carried, gated = step.run(repeat, detect)
    assert gated and not calls
    assert np.array_equal(carried.xyxy, seen.xyxy)
    assert rate.level is AnalysisLevel.FLOOR  # 30 s with nothing new
    # the same picture as a decoded frame is looked at
    assert not step.run(Frame("a", 2, 31.0, 0.0, moved.image), detect)[1] and calls
