"""A detector that hangs: the engine reports it, replaces the worker, and the other cameras
keep being analysed.

The detector sits behind the Detector seam (it answers at once, and never returns from the
call that holds frame k); everything else is what ``feedtag run`` builds
(``NodeEngine.from_config``: ingest of real footage, bounded queues, batch scheduler with its
watchdog, tracker, post-processing stage, event pipeline, store). The same engine runs once
without the hang, and each camera's detected frames per second are compared.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import generate_latest

import feedtag.runtime.node as node_module
from feedtag.api.metrics import engine_registry
from feedtag.config import validate_config
from feedtag.core import Detections, VisionStageStatus
from feedtag.runtime.bus import EventBus
from feedtag.runtime.local import LocalEngineControl
from feedtag.runtime.node import NodeEngine
from feedtag.vision.detector import Image

from .test_slow_detector import metric_samples

pytestmark = pytest.mark.slow

CAMERAS = 4
ANALYSIS_FPS = 2.0
HANG_TIMEOUT_S = 1.0
WARM_UP_S = 3.0  # cameras connected, analysing at their rate
WINDOW_S = 12.0  # detected fps is measured over this; the hang starts in its first half
HANG_AT_S = 4.0  # into the window
SHUTDOWN_BOUND_S = 5.0


class HangOnFrame:
    """Answers every call at once with nothing found, except the call that holds frame
    ``hang_on`` (counted over all calls from 0; None: never), which waits for
    :attr:`release`."""

    class_names: Sequence[str] = ("person", "bicycle", "car")

    def __init__(self) -> None:
        self.hang_on: int | None = None
        self.frames = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.hung = threading.Event()

    def detect(self, images: Sequence[Image]) -> list[Detections]:
        with self.lock:
            first, self.frames = self.frames, self.frames + len(images)
            hangs = self.hang_on is not None and first <= self.hang_on < self.frames
        if hangs:
            self.hung.set()
            self.release.wait(60)
        return [Detections.empty() for _ in images]

    def hang_on_next_frame(self) -> None:
        with self.lock:
            self.hang_on = self.frames


def detected_fps(
    tmp_path: Path, clip: Path, monkeypatch: pytest.MonkeyPatch, hang: bool
) -> tuple[dict[str, float], VisionStageStatus | None, str, float]:
    """Run the engine; (detected fps per camera over the window, the stage status after
    the window, /metrics text, how long stop took)."""
    detector = HangOnFrame()
    monkeypatch.setattr(node_module, "build_detector", lambda settings, progress=None: detector)
    config = validate_config(
        {
            "media_root": str(clip.parent),
            "store": {"data_dir": str(tmp_path / ("hang" if hang else "steady"))},
            # the cameras' frames arrive together (one clip, started together): batches of
            # two leave two cameras outside the hung batch; one worker, so that the hung
            # batch's worker is the only one and its replacement carries the others
            "detector": {"hang_timeout_s": HANG_TIMEOUT_S, "max_batch": 2, "workers": 1},
            "cameras": [
                # a fixed rate (no gate, no adaptation): every camera's rate is what is compared
                {"id": f"cam{i}", "url": clip.name, "loop": True, "analysis_fps": ANALYSIS_FPS,
                 "gate": {"enabled": False}, "adaptive": {"enabled": False}}
                for i in range(CAMERAS)
            ],
        }
    )  # fmt: skip
    engine = NodeEngine.from_config(config)
    engine.start()
    try:
        time.sleep(WARM_UP_S)
        started = time.monotonic()
        before = {cid: v.detected for cid, v in engine.vision_statuses().items()}
        if hang:
            time.sleep(HANG_AT_S)
            detector.hang_on_next_frame()
            assert detector.hung.wait(5), "the detector was never called again"
        time.sleep(max(0.0, started + WINDOW_S - time.monotonic()))
        after = {cid: v.detected for cid, v in engine.vision_statuses().items()}
        took = time.monotonic() - started
        stage = engine.vision_stage_status()
        metrics = generate_latest(engine_registry(LocalEngineControl(engine), EventBus())).decode()
    finally:
        stop_started = time.monotonic()
        assert engine.stop()
        stop_s = time.monotonic() - stop_started
        detector.release.set()  # the hung call was still hung during stop
    return {cid: (after[cid] - before[cid]) / took for cid in after}, stage, metrics, stop_s


def test_a_hung_detector_is_reported_replaced_and_the_other_cameras_keep_their_rate(
    tmp_path: Path,
    vtest_clip: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    steady, _, _, _ = detected_fps(tmp_path, vtest_clip, monkeypatch, hang=False)
    caplog.set_level(logging.ERROR, logger="feedtag.vision.batching")
    hung, stage, metrics, stop_s = detected_fps(tmp_path, vtest_clip, monkeypatch, hang=True)
    print(f"\nfps without a hang {steady}\nwith a hang {hung}\n{stage}; stop {stop_s:.2f} s")

    assert stage is not None
    assert (stage.detector_hangs, stage.detector_restarts, stage.detector_workers) == (1, 1, 1)
    assert stage.hung_cameras and set(stage.hung_cameras) < set(steady)
    # in the log, at ERROR, with the cameras of the hung batch
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and all(cid in errors[0] for cid in stage.hung_cameras), errors
    # in /metrics
    samples = metric_samples(metrics)
    assert samples["feedtag_detector_hangs_total", ()] == 1
    assert samples["feedtag_detector_restarts_total", ()] == 1
    for cid in steady:
        frames_hung = samples["feedtag_camera_frames_hung_total", (("camera", cid),)]
        assert frames_hung == (1 if cid in stage.hung_cameras else 0)
    # every other camera keeps its analysed rate, within 10% of the run without a hang
    for cid, fps in steady.items():
        assert fps == pytest.approx(ANALYSIS_FPS, rel=0.1), f"{cid}: the steady run is off"
        if cid not in stage.hung_cameras:
            assert hung[cid] == pytest.approx(fps, rel=0.1), f"{cid}: {hung[cid]} vs {fps}"
    assert stop_s < SHUTDOWN_BOUND_S
