"""Hostile media through the real ingest path: each file of ``tests/data/hostile`` runs as a
file camera in the node engine beside a healthy camera. The hostile camera must end in a
state with a clear reason, the healthy one must keep delivering frames, no exception may
escape a thread, and the engine must stop promptly."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from feedtag.api.cameras import camera_view
from feedtag.config import validate_config
from feedtag.config.models import FeedtagConfig
from feedtag.core import CameraState, Frame
from feedtag.ingest.camera import CameraIngest
from feedtag.ingest.handoff import FrameQueue
from feedtag.runtime.node import NodeEngine, RateRecorder

from ..conftest import wait_for

CORPUS: Final = Path(__file__).resolve().parent.parent / "data" / "hostile"
HEALTHY: Final = "valid.ts"  # 160x96, 2 s, 10 fps: the unharmed original of the corpus
STOP_BOUND_S: Final = 5.0

OFFLINE, STOPPED = CameraState.OFFLINE, CameraState.STOPPED
NOT_READABLE = "open failed: not a stream FFmpeg can read"
# (file, the state it ends in, what its reason says). A file that still holds frames ends
# like any file; one with none is offline and retried with backoff, like a missing file.
EXPECTED: Final = [
    ("empty.mp4", OFFLINE, NOT_READABLE),
    ("random_bytes.ts", OFFLINE, NOT_READABLE),
    ("truncated_moov_first.mp4", STOPPED, "end of file"),
    ("truncated_moov_last.mp4", OFFLINE, NOT_READABLE),
    ("truncated.h264", STOPPED, "end of file"),
    ("truncated.ts", STOPPED, "end of file"),
    ("bitflip_seed1.ts", STOPPED, "end of file"),
    ("bitflip_seed2.ts", STOPPED, "end of file"),
    ("bitflip_seed3.ts", STOPPED, "end of file"),
    ("resolution_change.ts", STOPPED, "end of file"),
    ("sps_65535x65535.h264", OFFLINE, "the file has no decodable video frame"),
    ("sps_8192x8192.h264", OFFLINE, "claims 8192x8192 pixels, more than the 40 MP"),
    ("header_65535x65535.mp4", STOPPED, "end of file"),
    ("header_0x0.mp4", STOPPED, "end of file"),
    ("audio_only.mp4", OFFLINE, "the source has no video stream"),
    ("png_renamed.mp4", STOPPED, "end of file"),
    ("png_1x1_renamed.mp4", STOPPED, "end of file"),
]


class ShapeRecorder(RateRecorder):
    """Also keeps the image shapes each camera delivered."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: dict[str, set[tuple[int, ...]]] = {}

    def consume(self, frame: Frame) -> None:
        self.shapes.setdefault(frame.camera_id, set()).add(frame.image.shape)
        super().consume(frame)


@pytest.fixture
def thread_exceptions() -> Iterator[list[threading.ExceptHookArgs]]:
    """Exceptions that escape any thread while the test runs."""
    caught: list[threading.ExceptHookArgs] = []
    previous = threading.excepthook
    threading.excepthook = caught.append
    yield caught
    threading.excepthook = previous


def config_for(media_root: Path, hostile: str, *, loop: bool = False) -> FeedtagConfig:
    return validate_config(
        {
            "media_root": str(media_root),
            "reconnect": {"initial_backoff_s": 0.2, "max_backoff_s": 1.0},
            "cameras": [
                {"id": "healthy", "url": HEALTHY, "loop": True, "analysis_fps": 5},
                {"id": "hostile", "url": hostile, "loop": loop, "realtime": False},
            ],
        }
    )


def media_root_with(tmp_path: Path, *names: str) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    for name in (HEALTHY, *names):
        shutil.copy(CORPUS / name, root / name)
    return root


def test_every_corpus_file_has_an_expectation() -> None:
    made = {path.name for path in CORPUS.iterdir() if path.is_file() and path.suffix != ".py"}
    assert made == {name for name, _, _ in EXPECTED} | {HEALTHY}


@pytest.mark.parametrize(("name", "state", "reason"), EXPECTED)
def test_hostile_file_beside_a_healthy_camera(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    thread_exceptions: list[threading.ExceptHookArgs],
    *,
    name: str,
    state: CameraState,
    reason: str,
) -> None:
    caplog.set_level(logging.INFO)
    config = config_for(media_root_with(tmp_path, name), name)
    recorder = ShapeRecorder()
    engine = NodeEngine(config, recorder)
    engine.start()
    try:
        hostile = wait_for(
            lambda: (s := engine.statuses()[1]).state is state and reason in s.reason and s,
            10,
            what=f"{state.value} ({reason})",
        )
        before = recorder.counts.get("healthy", 0)
        wait_for(lambda: recorder.counts.get("healthy", 0) >= before + 2, 5, what="healthy")
        assert engine.statuses()[0].state is CameraState.ONLINE
    finally:
        started = time.monotonic()
        assert engine.stop()
        assert time.monotonic() - started < STOP_BOUND_S
    assert not thread_exceptions
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in hostile.reason and "unexpected" not in hostile.reason
    shown = camera_view(config.cameras[1], hostile, None, None)["status"]["reason"]
    assert str(tmp_path) not in shown, "the API shows a server path"
    if name == "resolution_change.ts":  # decoded at both sizes, no reconnect between them
        assert recorder.shapes["hostile"] == {(96, 160, 3), (176, 320, 3)}
        assert hostile.counters.reconnects == 0


@pytest.mark.parametrize(
    ("name", "counter", "bound"),
    [
        # nothing decodes: each pass fails, and backoff spaces the reopens
        ("sps_65535x65535.h264", "reconnects", 6),
        # no timestamps: stream time stands still, so nothing but the camera paces the loop
        ("png_renamed.mp4", "frames_decoded", 4),
        ("truncated.h264", "frames_decoded", 4 * 6),
    ],
)
def test_a_looping_file_that_nothing_paces_does_not_spin(
    tmp_path: Path, name: str, counter: str, bound: int
) -> None:
    config = config_for(media_root_with(tmp_path, name), name, loop=True)
    ingest = CameraIngest(config.cameras[1], config.reconnect, FrameQueue(2))
    ingest.start()
    try:
        time.sleep(2.0)
        status = ingest.status()
    finally:
        ingest.stop()
        assert ingest.join(STOP_BOUND_S)
    assert getattr(status.counters, counter) <= bound, status.counters
