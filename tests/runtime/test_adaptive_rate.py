"""The adaptive analysis rate end to end on real footage through the node engine (ingest,
gate, default detector, tracker, rules): a still scene drops to the floor rate, people
walking near a counting line raise it to the tracking rate. Rates are measured as frames
analysed per second of stream time; the files are read as fast as possible, so the result
does not depend on the machine's speed."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from feedtag.bench.footage import encode_h264, quiet_h264, vtest_path, waking_h264
from feedtag.config import validate_config
from feedtag.core import (
    AnalysisLevel,
    CameraState,
    DecodeMode,
    Detections,
    Frame,
    PacketGateState,
)
from feedtag.runtime.node import NodeEngine

from ..conftest import wait_for

pytestmark = pytest.mark.slow

LINE_ANALYTICS: dict[str, Any] = {
    "lines": [{"name": "middle", "start": [0.5, 0.1], "end": [0.5, 0.9]}],
    "rules": [{"kind": "line_cross", "labels": ["person"], "line": "middle"}],
}


def analyse(path: Path, models_dir: Path, data: Path, **camera: Any) -> tuple[
    list[tuple[float, AnalysisLevel]], NodeEngine
]:  # fmt: skip
    """Runs one camera over ``path`` to its end: (stream time, level) of every analysed
    frame (not those the packet gate repeated), and the stopped engine."""
    config = validate_config(
        {
            "media_root": str(path.parent),
            "detector": {"models_dir": str(models_dir)},
            "store": {"data_dir": str(data)},
            "cameras": [{"id": "cam", "url": path.name, "realtime": False, **camera}],
        }
    )
    engine = NodeEngine.from_config(config)
    assert engine.rates is not None
    seen: list[tuple[float, AnalysisLevel]] = []
    handler = engine.consumer.on_result  # type: ignore[attr-defined]
    rate = engine.rates.get("cam")
    assert rate is not None

    results: list[float] = []

    def record(frame: Frame, detections: Detections) -> None:
        results.append(frame.pts_s)
        if not frame.repeat:  # a picture handed on again by the packet gate is not analysed
            seen.append((frame.pts_s, rate.level))
        handler(frame, detections)

    engine.consumer.on_result = record  # type: ignore[attr-defined]
    engine.start()
    try:
        wait_for(lambda: engine.statuses()[0].state is CameraState.STOPPED, 180, what="the end")
        analysed = engine.statuses()[0].counters.frames_analysed
        wait_for(lambda: len(results) >= analysed, 20, what="every result")
    finally:
        assert engine.stop(deadline_s=8)
    return seen, engine


def per_second(seen: list[tuple[float, AnalysisLevel]], start: float, end: float) -> float:
    return sum(start <= t < end for t, _ in seen) / (end - start)


def test_a_still_scene_drops_to_the_floor_rate(models_dir: Path, tmp_path: Path) -> None:
    """The still frame shows people standing: tracks that do not move are not activity."""
    path = quiet_h264(640, 360, seconds=60)  # a keyframe every second
    adaptive = {"quiet_after_s": 5, "packet_gate": False}
    seen, engine = analyse(path, models_dir, tmp_path, analysis_fps=2, adaptive=adaptive)
    print(f"\nquiet feed: {len(seen)} frames analysed in 60 s")
    # normal before it is quiet (1.92: a 0.5 s period on 25 fps frames samples every 13th)
    assert per_second(seen, 0, 5) == pytest.approx(2.0, rel=0.1)
    assert per_second(seen, 10, 60) == pytest.approx(0.5, abs=0.05)  # then the floor
    status = engine.statuses()[0]
    assert status.analysis_level is AnalysisLevel.FLOOR and status.target_fps == 0.5
    assert status.mode is DecodeMode.KEYFRAMES  # 0.5 fps needs keyframes only
    assert status.packet_gate is PacketGateState.OFF


def test_at_the_floor_the_packet_gate_decodes_a_still_scene_once_per_refresh(
    models_dir: Path, tmp_path: Path
) -> None:
    """Its packet sizes show nothing changed, so of the floor rate's keyframes only one per
    gate.refresh_s (10 s) is decoded, and that one finds nothing new: the gate stays open."""
    path = quiet_h264(640, 360, seconds=60)
    seen, engine = analyse(
        path, models_dir, tmp_path, analysis_fps=2, adaptive={"quiet_after_s": 5}
    )
    times = [t for t, _ in seen]
    print(f"\nquiet feed, packet gate: {len(seen)} frames analysed in 60 s: {times}")
    assert per_second(seen, 0, 5) == pytest.approx(2.0, rel=0.1)
    # the floor's first keyframes build the packet-size baseline (three groups of pictures)
    assert 0.08 <= per_second(seen, 20, 60) <= 0.125
    gaps = [b - a for a, b in itertools.pairwise(times) if a >= 20]
    assert max(gaps) == pytest.approx(10.0, abs=0.05)
    status = engine.statuses()[0]
    assert status.analysis_level is AnalysisLevel.FLOOR
    assert status.packet_gate is PacketGateState.BELIEVED
    # each floor frame (one every 2 s) was either analysed or left undecoded
    floor_frames = sum(t > 5.5 for t in times)
    assert floor_frames + status.counters.keyframes_unchanged == pytest.approx(27, abs=2)


def test_people_walking_into_a_quiet_view_are_analysed_at_the_next_keyframe(
    models_dir: Path, tmp_path: Path
) -> None:
    """20 s of the still scene at the floor, then people walk through 8.5% of the view: the
    first second of it changes the packet sizes, the next keyframe due at the floor rate is
    decoded, and the detector finds them there. (What the rate does next is the adaptive rate's business,
    tested above; this file is read faster than its results come back.)"""
    path = waking_h264(640, 360, quiet_s=20, busy_s=10)
    seen, engine = analyse(path, models_dir, tmp_path, adaptive={"quiet_after_s": 5})
    print(f"\nwaking feed: frames analysed at {[t for t, _ in seen]}")
    assert per_second(seen, 8, 20) <= 0.25  # the floor, mostly left undecoded
    assert engine.statuses()[0].counters.keyframes_unchanged >= 3
    first, level = min((t, level) for t, level in seen if t >= 20)
    # the first keyframe due at the floor rate (one every 2 s) once a second of activity ended
    assert first in (21.0, 22.0)
    assert level is AnalysisLevel.NORMAL  # people appeared on it


def test_the_same_still_scene_without_adaptation_stays_at_analysis_fps(
    models_dir: Path, tmp_path: Path
) -> None:
    path = quiet_h264(640, 360, seconds=60)
    seen, engine = analyse(path, models_dir, tmp_path, analysis_fps=2, adaptive={"enabled": False})
    assert per_second(seen, 10, 60) == pytest.approx(2.0, rel=0.05)
    assert {level for _, level in seen} == {AnalysisLevel.NORMAL}
    assert engine.statuses()[0].mode is DecodeMode.SAMPLED


@pytest.fixture(scope="module")
def vtest_12s(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("adaptive")
    return encode_h264(
        vtest_path(), folder / "vtest_12s.mp4", width=640, height=360, max_seconds=12
    )


def test_people_walking_near_a_line_raise_the_rate_to_tracking(
    vtest_12s: Path, models_dir: Path, tmp_path: Path
) -> None:
    seen, engine = analyse(
        vtest_12s, models_dir, tmp_path, analysis_fps=1, analytics=LINE_ANALYTICS
    )
    tracking = [t for t, level in seen if level is AnalysisLevel.TRACKING]
    print(f"\nvtest with a line: {len(seen)} frames analysed in 12 s, first tracking at "
          f"{tracking[0] if tracking else None} s")  # fmt: skip
    assert tracking and tracking[0] < 5  # people cross the path near the line at once
    # from the next keyframe on, every frame is decoded and 5 a second are analysed
    assert per_second(seen, 6, 12) == pytest.approx(5.0, abs=0.5)
    status = engine.statuses()[0]
    assert status.analysis_level is AnalysisLevel.TRACKING and status.mode is DecodeMode.SAMPLED


def test_the_same_walk_without_a_motion_rule_stays_at_analysis_fps(
    vtest_12s: Path, models_dir: Path, tmp_path: Path
) -> None:
    presence = {"rules": [{"kind": "presence", "labels": ["person"]}]}
    seen, _ = analyse(vtest_12s, models_dir, tmp_path, analysis_fps=1, analytics=presence)
    assert len(seen) == 12
    assert {level for _, level in seen} == {AnalysisLevel.NORMAL}
