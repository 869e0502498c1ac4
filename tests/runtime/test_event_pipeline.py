"""The event pipeline's run-time changes, its media cost per camera and the retention job, on a
real SQLite store."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine

from feedtag.config import validate_config
from feedtag.core import Detections, Frame
from feedtag.runtime.events import EventPipeline, RetentionJob
from feedtag.store.audit import AuditEntry, AuditQuery, search_audit, write_audit
from feedtag.store.engine import create_store_engine
from feedtag.store.media import MediaStore
from feedtag.store.migrations import upgrade
from feedtag.store.query import EventQuery, search_events
from feedtag.store.spool import Spool
from feedtag.store.writer import StoreWriter

T0 = 1_800_000_000.0


def two_people() -> Detections:
    return Detections(
        np.array([[10, 10, 60, 90], [120, 10, 170, 90]], np.float32),
        np.full(2, 0.9, np.float32),
        np.zeros(2, np.int32),
        np.array([1, 2], np.int64),
    )


def started_store(tmp_path: Path, name: str = "store.db") -> tuple[Engine, StoreWriter]:
    """A migrated SQLite store in ``tmp_path`` and a running writer to it."""
    engine = create_store_engine(f"sqlite:///{tmp_path / name}")
    upgrade(engine)
    writer = StoreWriter(engine, Spool(tempfile.mkdtemp()), max_wait_s=0.02)
    writer.start()
    return engine, writer


def test_removing_a_camera_ends_what_its_rules_have_open(tmp_path: Path) -> None:
    rule = {"kind": "crowding", "min_count": 2, "min_duration_s": 2, "grace_s": 5}
    config = validate_config(
        {
            "media_root": str(tmp_path),
            "cameras": [{"id": "door", "url": "door.mp4", "analytics": {"rules": [rule]}}],
        }
    )
    engine, writer = started_store(tmp_path)
    events = EventPipeline(config.cameras, ["person"], writer, None)
    image = np.zeros((100, 200, 3), np.uint8)
    for t in range(5):
        events(Frame("door", t, float(t), T0 + t, image), two_people())
    events.remove_camera("door")
    events(Frame("door", 5, 5.0, T0 + 5, image), two_people())  # a late frame: ignored
    assert writer.flush(10)
    writer.close()
    (crowd,) = search_events(engine, EventQuery(camera_ids=["door"])).items
    assert crowd.kind.value == "crowding"
    assert crowd.ended_at == T0 + 4  # the last frame the crowd was seen
    assert events.event_counts() == {}


def test_the_retention_job_prunes_old_audit_entries(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    now = time.time()
    for name, age_days in (("old", 400), ("recent", 10)):
        write_audit(
            engine,
            AuditEntry(now - age_days * 86400, "t1", name, "viewer", "events.search",
                       None, None, None, "127.0.0.1", 200),
        )  # fmt: skip
    job = RetentionJob(engine, tmp_path / "media", 30 * 86400, audit_retention_s=365 * 86400)
    job.start()
    deadline = time.monotonic() + 10
    while job.last is None and time.monotonic() < deadline:
        time.sleep(0.05)
    job.stop()
    names = [e.token_name for e in search_audit(engine, AuditQuery()).items]
    assert names == ["recent"] and job.audit_pruned == 1


def frozen_events(tmp_path: Path, *, repeat: bool) -> list[str]:
    """A minute of a live scene at the floor rate with the packet gate: a frame every 2 s,
    decoded every 10 s (each a new picture) and the picture before repeated between them.
    With ``repeat`` False the same pictures come as decoded frames."""
    health = {"rules": [{"kind": "camera_health", "frozen_after_s": 5}]}
    config = validate_config({"media_root": str(tmp_path), "cameras": [
        {"id": "door", "url": "door.mp4", "analytics": health}]})  # fmt: skip
    engine, writer = started_store(tmp_path, f"store-{repeat}.db")
    events = EventPipeline(config.cameras, ["person"], writer, None)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (100, 200, 3), np.uint8)
    for index, t in enumerate(range(0, 60, 2)):
        decoded = t % 10 == 0
        if decoded:
            image = rng.integers(0, 255, (100, 200, 3), np.uint8)  # the scene lives
        frame = Frame("door", index, float(t), T0 + t, image, keyframe=True,
                      repeat=repeat and not decoded)  # fmt: skip
        events(frame, Detections.empty())
    assert writer.flush(10)
    writer.close()
    return [e.kind.value for e in search_events(engine, EventQuery(camera_ids=["door"])).items]


def test_repeated_pictures_are_not_a_frozen_camera(tmp_path: Path) -> None:
    """The health rule judges pictures the camera decoded; the 8 s of repeats between two of
    them would otherwise look frozen (``frozen_after_s`` 5 here)."""
    assert "camera_frozen" in frozen_events(tmp_path, repeat=False)
    assert "camera_frozen" not in frozen_events(tmp_path, repeat=True)


def test_each_camera_is_charged_the_cpu_of_its_own_snapshots_and_thumbnails(
    tmp_path: Path,
) -> None:
    """The media thread's CPU on a camera's images is that camera's media cost: the crowd's
    snapshot is charged to the door, the thumbnail someone watches to the yard, and a camera
    nobody writes an image for costs nothing."""
    crowd = {"rules": [{"kind": "crowding", "min_count": 2, "min_duration_s": 1, "grace_s": 5}]}
    config = validate_config({"media_root": str(tmp_path), "cameras": [
        {"id": "door", "url": "door.mp4", "analytics": crowd},
        {"id": "yard", "url": "yard.mp4"},
        {"id": "lane", "url": "lane.mp4"},
    ]})  # fmt: skip
    _, writer = started_store(tmp_path)
    media = MediaStore(tmp_path / "media")
    media.want_thumbnail("yard")
    events = EventPipeline(config.cameras, ["person"], writer, media)
    image = np.random.default_rng(0).integers(0, 255, (360, 640, 3), np.uint8)
    for t in range(4):
        for camera_id in ("door", "yard", "lane"):
            people = two_people() if camera_id == "door" else Detections.empty()
            events(Frame(camera_id, t, float(t), T0 + t, image), people)
    events.close()  # finishes the media thread's jobs
    assert writer.flush(10)
    writer.close()
    assert any(media.root.glob("snapshots/**/*.jpg")), "the crowd's snapshot was written"
    assert any(media.root.glob("thumbnails/yard*")), "the yard's thumbnail was written"
    costs = events.media_cpu_s()
    assert costs["door"] > 0 and costs["yard"] > 0, costs
    assert costs["lane"] == 0, costs
    events.remove_camera("door")
    assert set(events.media_cpu_s()) == {"yard", "lane"}


def watched_yard(tmp_path: Path) -> tuple[EventPipeline, StoreWriter, MediaStore]:
    """The pipeline of one camera, ``yard``, whose thumbnail someone is looking at."""
    config = validate_config({"media_root": str(tmp_path), "cameras": [
        {"id": "yard", "url": "yard.mp4"}]})  # fmt: skip
    _, writer = started_store(tmp_path)
    media = MediaStore(tmp_path / "media")
    media.want_thumbnail("yard")
    return EventPipeline(config.cameras, ["person"], writer, media), writer, media


def test_a_repeated_picture_gets_no_new_thumbnail(tmp_path: Path) -> None:
    """A picture the packet gate hands on again is the one the thumbnail shows: no new
    thumbnail (and no person check) until a new picture comes; a repeat of a picture that
    came after the latest thumbnail still gets one."""
    events, writer, media = watched_yard(tmp_path)
    written: list[Path] = []
    media.observers.append(lambda path, _image: written.append(path))
    rng = np.random.default_rng(1)
    pictures = {name: rng.integers(0, 255, (90, 160, 3), np.uint8) for name in "abc"}
    # (second, picture, repeat): a thumbnail is due every 5 s
    for index, (t, name, repeat) in enumerate([
        (0, "a", False),   # the first thumbnail
        (6, "a", True),    # due, but the same picture: none
        (12, "b", False),  # a new picture: a thumbnail
        (14, "c", False),  # not due yet
        (18, "c", True),   # due, and c is not what the thumbnail shows: a thumbnail
        (24, "c", True),   # due, the same picture again: none
    ]):  # fmt: skip
        frame = Frame("yard", index, float(t), T0 + t, pictures[name], keyframe=True,
                      repeat=repeat)  # fmt: skip
        events(frame, Detections.empty())
    events.close()  # finishes the media thread's jobs
    assert writer.flush(10)
    writer.close()
    assert len(written) == 3, written
    assert all(path.parent.name == "thumbnails" for path in written)


def test_a_thumbnail_that_failed_is_tried_again_on_a_repeat(tmp_path: Path) -> None:
    """A repeat of the picture whose thumbnail could not be written is not taken for done."""
    events, writer, media = watched_yard(tmp_path)
    attempts: list[float] = []
    write_thumbnail = media.write_thumbnail

    def full_disk_once(camera_id: str, image: Any) -> Path:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise OSError(28, "No space left on device")
        return write_thumbnail(camera_id, image)

    media.write_thumbnail = full_disk_once  # type: ignore[method-assign]
    jobs = events.media_jobs
    assert jobs is not None
    picture = np.random.default_rng(2).integers(0, 255, (90, 160, 3), np.uint8)
    for index, (t, repeat) in enumerate([(0, False), (6, True), (12, True)]):
        events(Frame("yard", index, float(t), T0 + t, picture, keyframe=True, repeat=repeat),
               Detections.empty())  # fmt: skip
        deadline = time.monotonic() + 10
        while jobs.done < len(attempts) or (index == 0 and not attempts):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    events.close()
    writer.close()
    # the first failed, the repeat at 6 s wrote it, the repeat at 12 s needed none
    assert len(attempts) == 2
    assert (media.root / "thumbnails" / "yard.jpg").is_file()
