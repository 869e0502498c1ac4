"""One per-frame vision step: the engine's vision stage and ``feedtag detect``'s loop (which
the presence benchmark runs) give the same results for the same frames, gate decisions, track
ids and the moving hint included."""

from __future__ import annotations

import numpy as np

from feedtag.config import validate_config
from feedtag.core import Frame
from feedtag.runtime.detect import detect_stream
from feedtag.runtime.step import CameraStep
from feedtag.runtime.vision import VisionConsumer
from feedtag.vision.gate import ChangeGate
from feedtag.vision.tracker import ByteTracker

from .test_vision import MovingBoxDetector, camera, frame, run


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
