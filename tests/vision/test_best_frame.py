"""The best frame of each track, and the event snapshots that show it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from feedtag.config import validate_config
from feedtag.core import Detections, Frame
from feedtag.runtime.events import EventPipeline
from feedtag.store.engine import create_store_engine
from feedtag.store.media import MediaStore
from feedtag.store.migrations import upgrade
from feedtag.store.query import EventQuery, search_events
from feedtag.store.spool import Spool
from feedtag.store.writer import StoreWriter
from feedtag.vision.anonymize import Anonymizer
from feedtag.vision.best_frame import BestFrames, sighting_score

W, H = 200, 100
T0 = 1_800_000_000.0


def boxes(*rows: tuple[int, float, float, float, float, float]) -> Detections:
    """Detections from ``(track, x1, y1, x2, y2, confidence)`` rows, all persons."""
    if not rows:
        return Detections.empty()
    return Detections(
        np.array([r[1:5] for r in rows], np.float32),
        np.array([r[5] for r in rows], np.float32),
        np.zeros(len(rows), np.int32),
        np.array([r[0] for r in rows], np.int64),
    )


def image(value: int) -> np.ndarray:
    return np.full((H, W, 3), value, np.uint8)


@pytest.mark.parametrize(
    ("name", "a", "b"),
    [
        ("larger beats smaller", ((10, 10, 60, 90), 0.8), ((10, 10, 30, 50), 0.8)),
        ("surer beats unsure", ((10, 10, 60, 90), 0.9), ((10, 10, 60, 90), 0.3)),
        ("whole beats cut off at the border", ((50, 10, 90, 90), 0.8), ((0, 10, 45, 90), 0.8)),
    ],
)
def test_sighting_score_orders_views(name: str, a: tuple, b: tuple) -> None:
    score_a = sighting_score(np.array(a[0], np.float32), a[1], (W, H))
    score_b = sighting_score(np.array(b[0], np.float32), b[1], (W, H))
    assert score_a > score_b, name


def test_each_track_keeps_its_own_best() -> None:
    best = BestFrames()
    best.observe(image(1), boxes((1, 10, 10, 60, 90, 0.9), (2, 100, 40, 110, 60, 0.9)), 0, T0)
    best.observe(image(2), boxes((1, 10, 40, 20, 60, 0.9), (2, 100, 10, 150, 90, 0.9)), 1, T0 + 1)
    best.observe(image(3), boxes((1, 10, 40, 20, 60, 0.9), (2, 100, 40, 110, 60, 0.9)), 2, T0 + 2)
    first, second = best.best(1), best.best(2)
    assert first is not None and second is not None
    assert int(first.image[0, 0, 0]) == 1 and int(second.image[0, 0, 0]) == 2
    assert best.frames == 2
    assert best.best(99) is None


def test_unconfirmed_detections_are_not_kept() -> None:
    best = BestFrames()
    best.observe(image(1), boxes((-1, 10, 10, 60, 90, 0.9)), 0, T0)
    assert best.frames == 0


def test_lost_tracks_are_forgotten_and_stream_time_going_back_forgets_all() -> None:
    best = BestFrames(lost_s=5)
    best.observe(image(1), boxes((1, 10, 10, 60, 90, 0.9)), 0, T0)
    best.observe(image(2), boxes((2, 10, 10, 60, 90, 0.9)), 4, T0 + 4)
    best.observe(image(3), Detections.empty(), 6, T0 + 6)  # track 1 unseen for 6 s
    assert best.best(1) is None and best.best(2) is not None
    best.observe(image(4), Detections.empty(), 1, T0 + 7)  # a reconnect restarted the clock
    assert best.best(2) is None


def test_memory_is_bounded_by_max_frames() -> None:
    best = BestFrames(max_frames=3, lost_s=1000)
    for t in range(20):  # 20 tracks, each best in its own frame
        best.observe(image(t), boxes((t + 1, 10, 10, 60, 90, 0.9)), t, T0 + t)
        assert best.frames <= 3
    assert best.best(20) is not None  # the newest are kept
    assert best.best(1) is None  # the oldest went


def test_a_track_in_view_keeps_its_best_while_seen() -> None:
    best = BestFrames(lost_s=2)
    best.observe(image(1), boxes((1, 10, 10, 60, 90, 0.9)), 0, T0)
    for t in range(1, 30):  # seen every second, never better
        best.observe(image(t + 1), boxes((1, 10, 40, 20, 60, 0.9)), t, T0 + t)
    kept = best.best(1)
    assert kept is not None and kept.wall_time == T0


LINE_RULE = {"kind": "line_cross", "line": "mid", "labels": ["person"]}


def pipeline(tmp: Path, rule: dict = LINE_RULE) -> tuple[EventPipeline, StoreWriter, MediaStore]:
    config = validate_config(
        {
            "media_root": str(tmp),
            "cameras": [
                {
                    "id": "door",
                    "url": str(tmp / "door.mp4"),
                    "analytics": {
                        "lines": [{"name": "mid", "start": [0.5, 0], "end": [0.5, 1]}],
                        "rules": [rule],
                    },
                }
            ],
        }
    )
    engine = create_store_engine(f"sqlite:///{tmp / 'store.db'}")
    upgrade(engine)
    writer = StoreWriter(engine, Spool(tempfile.mkdtemp()), max_wait_s=0.02)
    writer.start()
    media = MediaStore(tmp / "media")
    return EventPipeline(config.cameras, ["person"], writer, media), writer, media


def test_an_event_snapshot_shows_the_best_frame_of_its_track(tmp_path: Path) -> None:
    events, writer, media = pipeline(tmp_path)
    # A person walks left to right across the line at x=100: large and sure at t=1 (frame
    # grey 90), small when crossing at t=4 (grey 200).
    walk = [
        (0, (20, 40, 40, 80, 0.6), 30),
        (1, (40, 10, 80, 95, 0.95), 90),
        (2, (70, 40, 85, 70, 0.7), 140),
        (3, (85, 50, 95, 65, 0.5), 170),
        (4, (102, 50, 112, 65, 0.5), 200),
        (5, (120, 50, 130, 65, 0.5), 230),
    ]
    for index, (t, box, grey) in enumerate(walk):
        frame = Frame("door", index, float(t), T0 + t, image(grey))
        events(frame, boxes((7, *box)))
    events.close()  # finishes the snapshots being written
    assert writer.flush(10)
    writer.close()
    (event,) = search_events(writer._engine, EventQuery(camera_ids=["door"])).items
    assert event.kind.value == "line_cross" and event.track_ids == (7,)
    assert event.attributes["snapshot_at"] == T0 + 1
    with Image.open(media.resolve(event.attributes["snapshot"])) as picture:
        corner = np.asarray(picture.convert("L"))[:8, -8:]  # far from any box or cover
    assert abs(float(corner.mean()) - 90) < 6


def test_an_event_about_a_crowd_shows_the_frame_it_fired_on(tmp_path: Path) -> None:
    rule = {"kind": "crowding", "min_count": 2, "min_duration_s": 2, "grace_s": 1}
    events, writer, _ = pipeline(tmp_path, rule)
    two = boxes((1, 10, 10, 60, 90, 0.9), (2, 120, 10, 170, 90, 0.9))
    for t in range(4):
        events(Frame("door", t, float(t), T0 + t, image(50 + t)), two)
    assert writer.flush(10)
    writer.close()
    (event,) = search_events(writer._engine, EventQuery(camera_ids=["door"])).items
    assert event.kind.value == "crowding"
    assert event.attributes["snapshot_at"] == T0 + 2  # fired at t=2, not a track's best


class NoPersons:
    """A person check that finds nobody (the images are plain grey)."""

    def find(self, image: np.ndarray) -> np.ndarray:
        return np.zeros((0, 4), np.float32)


@pytest.mark.parametrize("hurrying", [False, True])
def test_a_snapshot_queued_at_shutdown_is_blurred_whole_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hurrying: bool
) -> None:
    """Past the media worker's careful time at shutdown, a queued snapshot skips its person
    check and is written blurred whole: still written, nobody uncovered, no 90 ms wait."""
    rule = {"kind": "crowding", "min_count": 2, "min_duration_s": 2, "grace_s": 1}
    events, writer, media = pipeline(tmp_path, rule)
    events.anonymizer = Anonymizer(NoPersons())  # type: ignore[arg-type]
    assert events.media_jobs is not None
    monkeypatch.setattr(events.media_jobs, "hurrying", lambda: hurrying)
    two = boxes((1, 10, 10, 60, 90, 0.9), (2, 120, 10, 170, 90, 0.9))
    for t in range(4):
        events(Frame("door", t, float(t), T0 + t, image(50 + t)), two)
    events.close()
    assert writer.flush(10)
    writer.close()
    (event,) = search_events(writer._engine, EventQuery(camera_ids=["door"])).items
    assert media.resolve(event.attributes["snapshot"]).is_file()
    assert events.anonymizer.whole == (1 if hurrying else 0)
    assert events.anonymizer.images == (0 if hurrying else 1)
