"""Slow inference: the real default detector made ten times slower, under four cameras that
ask for more frames than it can take.

The detector sits behind the Detector seam; everything else is what ``feedtag run`` builds
(``NodeEngine.from_config``: ingest, bounded queues, gate, batch scheduler, tracker, event
pipeline, store) and the API serves ``/metrics`` over real uvicorn.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import feedtag.runtime.node as node_module
from feedtag.core import CameraState, Detections
from feedtag.ingest.handoff import QUEUE_FULL
from feedtag.runtime.vision import DETECTOR_BUSY
from feedtag.vision.batching import DEFAULT_MAX_PENDING_PER_CAMERA
from feedtag.vision.detector import Detector, Image

from ..api.server import start_api_server
from ..conftest import wait_for
from .measure import MIB, sample, slope

SLOWDOWN = 10
CAMERAS = 4
ANALYSIS_FPS = 4.0  # 16 frames/s offered; the slowed detector takes at most 4 per worker
#: what a slowed call adds per frame on top of its factor, so that the detector cannot keep up
#: however fast the real one is (OpenVINO in bf16 runs a frame in about 5 ms)
PER_FRAME_S = 0.25
RUN_S = 55.0
WARM_UP_S = 15.0  # start-up allocations (models, arenas, pools) end by about 12 s
SAMPLE_EVERY_S = 0.5
#: Leaking only the detected frames (about 2/s of 640x360 RGB) would grow RSS by about
#: 80 MiB/min, every analysed one by 600. What remains after warm-up are steps of a few MiB
#: (caches filling: SQLite's page cache, allocator arenas; Python objects stay flat under
#: tracemalloc), which over the 40 s window read as at most about 15 MiB/min.
MAX_RSS_SLOPE_MIB_PER_MIN = 20.0
SHUTDOWN_BOUND_S = 5.0


class SlowDetector:
    """A detector ``factor`` times slower than ``inner`` and ``per_frame_s`` more per frame:
    each call runs the real detection, then sleeps (``factor`` - 1) times as long as it took
    plus ``per_frame_s`` for each image. Results are the real ones."""

    def __init__(self, inner: Detector, factor: float, per_frame_s: float = PER_FRAME_S) -> None:
        self.inner = inner
        self.factor = factor
        self.per_frame_s = per_frame_s
        self.lock = threading.Lock()
        self.frames = 0
        self.real_s = 0.0
        self.total_s = 0.0

    @property
    def class_names(self) -> Sequence[str]:
        return self.inner.class_names

    def detect(self, images: Sequence[Image]) -> list[Detections]:
        started = time.monotonic()
        results = self.inner.detect(images)
        took = time.monotonic() - started
        time.sleep(took * (self.factor - 1) + self.per_frame_s * len(images))
        with self.lock:
            self.frames += len(images)
            self.real_s += took
            self.total_s += time.monotonic() - started
        return results


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as {(sample name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            out[item.name, tuple(sorted(item.labels.items()))] = item.value
    return out


def test_slow_detector_keeps_queues_bounded_memory_flat_and_counts_every_frame(
    tmp_path: Path,
    vtest_clip: Path,
    models_dir: Path,
    default_detector: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a detector 10x slower than the real one and 0.25 s more per frame, and four
    cameras offering twice what its two workers can take (four times what one can): every decoded-frame queue stays within ``engine.queue_size`` and each
    camera's frames waiting for the detector within the scheduler's bound; resident memory
    is flat after warm-up (least-squares slope); and the drops are exact per camera: every
    frame handed to analysis is gated, detected, failed, dropped from the frame queue
    (``queue_full``) or dropped by the batch scheduler (``detector_busy``), or still waits
    in the queue at stop, and ``/metrics`` shows the same per-camera counts. Shutdown
    returns within 5 s although a slowed batch is mid-inference."""
    slow = SlowDetector(default_detector, SLOWDOWN)
    monkeypatch.setattr(node_module, "build_detector", lambda settings, progress=None: slow)
    cameras = [
        {"id": f"cam{i}", "url": vtest_clip.name, "loop": True, "analysis_fps": ANALYSIS_FPS}
        for i in range(CAMERAS)
    ]
    server = start_api_server(
        tmp_path / "data", cameras, media_root=vtest_clip.parent, models_dir=models_dir
    )
    with server:
        engine = server.engine
        queue_bound = server.config.engine.queue_size
        # Per camera: waiting in the scheduler, as many again in each batch being detected,
        # and the one frame the consumer thread is handing over (counted, not yet queued; or
        # replaced, not yet cancelled).
        stage = engine.vision_stage_status()
        assert stage is not None
        workers = stage.detector_workers  # the default: one per core
        vision_bound = DEFAULT_MAX_PENDING_PER_CAMERA * (workers + 1) + 1
        started = time.monotonic()
        rss: list[tuple[float, int]] = []
        deepest_queue = deepest_vision = 0
        while (now := time.monotonic() - started) < RUN_S:
            depths = engine.queue_depths()
            in_flight = {
                cid: v.frames - v.gated - v.detected - v.failed - v.dropped
                for cid, v in engine.vision_statuses().items()
            }
            assert all(depth <= queue_bound for depth in depths.values()), depths
            assert all(0 <= n <= vision_bound for n in in_flight.values()), in_flight
            deepest_queue = max(deepest_queue, *depths.values())
            deepest_vision = max(deepest_vision, *in_flight.values())
            rss.append((now, sample(collect=False).rss))
            time.sleep(SAMPLE_EVERY_S)
        assert {s.state for s in engine.statuses()} == {CameraState.ONLINE}

        stop_started = time.monotonic()
        assert engine.stop()
        stop_s = time.monotonic() - stop_started
        assert stop_s < SHUTDOWN_BOUND_S
        # A batch already in detect() still resolves after stop; wait for its callbacks.
        wait_for(
            lambda: all(
                v.frames == v.gated + v.detected + v.failed + v.dropped
                for v in engine.vision_statuses().values()
            ),
            10,
            what="the last batch to come back",
        )
        statuses = {s.camera_id: s for s in engine.statuses()}
        vision = engine.vision_statuses()
        depths = engine.queue_depths()
        answer = httpx.get(
            server.base_url + "/metrics", headers=server.auth(server.admin_token), timeout=10
        )
        assert answer.status_code == 200
        metrics = metric_samples(answer.text)

    lines = []
    for cid, camera_status in statuses.items():
        counters, seen = camera_status.counters, vision[cid]
        queue_full = counters.frames_dropped.get(QUEUE_FULL, 0)
        # every frame handed to analysis is accounted for, exactly
        assert counters.frames_analysed == queue_full + depths[cid] + seen.frames
        assert seen.frames == seen.gated + seen.detected + seen.failed + seen.dropped
        assert seen.failed == 0
        assert seen.detected > 0 and seen.dropped > 0, f"{cid}: not overloaded? {seen}"
        for reason, count in ((QUEUE_FULL, queue_full), (DETECTOR_BUSY, seen.dropped)):
            labels = (("camera", cid), ("reason", reason))
            assert metrics["feedtag_camera_frames_dropped_total", labels] == count
        assert (
            metrics["feedtag_camera_frames_analysed_total", (("camera", cid),)]
            == counters.frames_analysed
        )
        assert metrics["feedtag_camera_frames_detected_total", (("camera", cid),)] == seen.detected
        lines.append(
            f"{cid}: handed {counters.frames_analysed} = queue_full {queue_full} + waiting "
            f"{depths[cid]} + gated {seen.gated} + detected {seen.detected} + failed "
            f"{seen.failed} + detector_busy {seen.dropped}"
        )

    warm = [(t, r) for t, r in rss if t >= WARM_UP_S]
    rss_slope = slope([t for t, _ in warm], [r for _, r in warm]) * 60 / MIB
    real_ms = slow.real_s / slow.frames * 1000
    slowed_ms = slow.total_s / slow.frames * 1000
    print(
        f"\ndetector: real {real_ms:.1f} ms/frame, slowed {slowed_ms:.0f} ms/frame "
        f"({slow.frames} frames in {RUN_S:.0f} s); deepest frame queue {deepest_queue}/"
        f"{queue_bound}, deepest vision backlog {deepest_vision}/{vision_bound}; RSS "
        f"{warm[0][1] / MIB:.0f} -> {warm[-1][1] / MIB:.0f} MiB after {WARM_UP_S:.0f} s, "
        f"slope {rss_slope:+.2f} MiB/min; stop {stop_s:.2f} s\nRSS every 5 s (MiB): "
        f"{[round(r / MIB) for _, r in rss[:: round(5 / SAMPLE_EVERY_S)]]}\n" + "\n".join(lines)
    )
    assert slowed_ms >= (SLOWDOWN - 0.5) * real_ms
    assert abs(rss_slope) < MAX_RSS_SLOPE_MIB_PER_MIN, f"RSS slope {rss_slope:.2f} MiB/min"
