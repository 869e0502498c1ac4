"""The gate on real footage: what it saves and what it costs in presence recall, against the
same frames run through the detector without a gate (issue goal: recall >= 0.98)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from feedtag.bench.accuracy import analysed_frames, gate_report
from feedtag.bench.footage import vtest_path
from feedtag.vision.gate import ChangeGate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vtest_frames() -> list[Any]:
    return analysed_frames(vtest_path(), analysis_fps=1.0)  # 80 frames at 640x480


def test_busy_view_is_never_skipped(default_detector: Any, vtest_frames: list[Any]) -> None:
    report = gate_report(default_detector, vtest_frames, ChangeGate())
    print(f"\nvtest full view, 1 fps: {report}")
    # people cross the view every second: a correct gate lets every frame through
    assert report.presence_recall >= 0.98
    assert report.gated_fraction < 0.1


def test_quiet_view_is_skipped_without_losing_presence(
    default_detector: Any, vtest_frames: list[Any]
) -> None:
    # the lawn in the lower part of the same camera: real footage where people pass now and
    # then, as on most cameras most of the time
    lawn = [
        dataclasses.replace(frame, image=np.ascontiguousarray(frame.image[280:480]))
        for frame in vtest_frames
    ]
    report = gate_report(default_detector, lawn, ChangeGate())
    print(f"\nvtest lawn crop, 1 fps: {report}, gated {report.gated_fraction:.0%}")
    assert report.presence_recall >= 0.98
    assert report.gated_fraction >= 0.2
