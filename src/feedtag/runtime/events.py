"""From tracked detections to stored tags, events and media, per camera.

:class:`EventPipeline` is the vision stage's result handler: each camera's
:class:`~feedtag.analytics.engine.CameraAnalyzer` turns observations into events and tag
segments; events get an anonymized snapshot (an event about one track shows the best frame of
that track so far, :mod:`feedtag.vision.best_frame`; an event about several, or none, the frame
it fired on); everything goes to the store writer (which
spools through outages); each camera's thumbnail is renewed every few seconds. Open presence
segments are written as they grow (upserts), so "who is visible now" can be searched before
a segment closes.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from time import thread_time_ns
from typing import Final

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine

from feedtag.analytics.engine import CameraAnalyzer
from feedtag.analytics.rules import Observation
from feedtag.config.models import CameraConfig, StoreConfig
from feedtag.core import CameraState, Detections, Event, EventEnd, Frame, TagSegment
from feedtag.errors import FeedtagError
from feedtag.runtime.clips import ClipWriter
from feedtag.runtime.control import chosen
from feedtag.runtime.database import open_database
from feedtag.runtime.media_worker import MediaWorker
from feedtag.store.audit import prune_audit
from feedtag.store.engine import store_url_for_log
from feedtag.store.media import MediaStore
from feedtag.store.outbox import Router
from feedtag.store.retention import RetentionResult, run_retention
from feedtag.store.spool import Spool
from feedtag.store.writer import StoreWriter
from feedtag.vision.anonymize import Anonymizer, RecentPersons, person_boxes
from feedtag.vision.best_frame import BestFrames, Sighting

log = logging.getLogger(__name__)

#: open presence segments are written at most this often per camera
SEGMENT_CHECKPOINT_S: Final = 10.0
SPOOL_FOLDER: Final = "spool"
MEDIA_FOLDER: Final = "media"


@dataclass
class _Camera:
    analyzer: CameraAnalyzer
    lock: threading.Lock
    best: BestFrames
    recent: RecentPersons = field(default_factory=RecentPersons)
    last_thumbnail: float = 0.0
    last_checkpoint: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)
    #: CPU of the media thread on this camera's snapshots and thumbnails (anonymizing,
    #: encoding, writing), in nanoseconds; added under ``lock``
    media_ns: int = 0
    #: the picture the latest thumbnail was made of (None after a failed write), while
    #: ingest still holds it
    thumbnail_picture: weakref.ref[npt.NDArray[np.uint8]] | None = None

    def thumbnail_of(self, picture: npt.NDArray[np.uint8]) -> bool:
        """Whether the latest thumbnail was made of ``picture`` (the same array): a picture
        the packet gate hands on again needs no new thumbnail, and no new person check."""
        made_of = self.thumbnail_picture
        return made_of is not None and made_of() is picture

    def media_job(self, job: Callable[[], None]) -> Callable[[], None]:
        """``job``, counting the CPU its thread spends in it as this camera's media cost."""

        def counted() -> None:
            start = thread_time_ns()
            try:
                job()
            finally:
                spent = thread_time_ns() - start
                with self.lock:
                    self.media_ns += spent

        return counted


class EventPipeline:
    """Rules, snapshots, thumbnails and the store, for every camera of a node."""

    def __init__(
        self,
        cameras: Sequence[CameraConfig],
        class_names: Sequence[str],
        writer: StoreWriter,
        media: MediaStore | None,
        thumbnail_interval_s: float = 5.0,
        *,
        anonymizer: Anonymizer | None = None,
    ) -> None:
        self.class_names = list(class_names)
        self.writer = writer
        self.media = media
        #: covers people in every image written; without a person finder it blurs them whole
        self.anonymizer = anonymizer if anonymizer is not None else Anonymizer(None)
        self.clips: ClipWriter | None = None  # set by the engine when cameras keep rings
        self.thumbnail_interval_s = thumbnail_interval_s
        # snapshots and thumbnails are encoded here, not in the detection worker's thread
        self.media_jobs = MediaWorker() if media is not None else None
        self._cameras = {camera.id: _camera(camera) for camera in cameras}

    def add_camera(self, camera: CameraConfig) -> None:
        """A camera added at run time."""
        self._cameras[camera.id] = _camera(camera)

    def remove_camera(self, camera_id: str) -> None:
        """A camera removed (or about to be changed) at run time: what its rules still have
        open is ended and stored, and its counts go."""
        camera = self._cameras.pop(camera_id, None)
        if camera is None:
            return
        if self.clips is not None:
            self.clips.forget(camera_id)
        with camera.lock:
            result = camera.analyzer.close(time.time())
        self._store_all(result.events, result.ends, result.segments)

    def __call__(self, frame: Frame, detections: Detections) -> None:
        camera = self._cameras.get(frame.camera_id)
        if camera is None:
            return
        # a repeated picture (the packet gate's) is not a new look at the scene: the health
        # rule would take it for a frozen camera, and it is no better a snapshot than before
        picture = None if frame.repeat else frame.image
        observation = Observation(
            frame.camera_id, frame.pts_s, frame.wall_time, detections, self.class_names,
            frame.size, image=picture, camera_state=CameraState.ONLINE,
        )  # fmt: skip
        now = Sighting(frame.image, detections, frame.pts_s, frame.wall_time)
        with camera.lock:
            if picture is not None:
                camera.best.observe(picture, detections, frame.pts_s, frame.wall_time)
            camera.recent.observe(detections, self.class_names, frame.pts_s)
            result = camera.analyzer.update(observation)
            open_segments = self._due_checkpoint(camera, frame.wall_time)
            shown = [_shown(camera.best, event, now) for event in result.events]
            known = [
                np.concatenate(
                    [
                        person_boxes(sighting.detections, self.class_names),
                        camera.recent.predicted(sighting.t_s),
                    ]
                )
                for sighting in shown
            ]
        for event, sighting, boxes in zip(result.events, shown, known, strict=True):
            camera.counts[event.kind.value] += 1
            self._store(self._with_clip(self._with_snapshot(camera, event, sighting, boxes)))
        later: list[EventEnd | TagSegment] = [*result.ends, *result.segments, *open_segments]
        for item in later:
            self._store(item)
        self._thumbnail(camera, frame, detections)

    def tick(self, camera_id: str, state: CameraState, wall_time: float) -> None:
        """A camera sends no frames (offline, stalled): let its health rule see the state."""
        camera = self._cameras.get(camera_id)
        if camera is None:
            return
        with camera.lock:
            result = camera.analyzer.update(Observation.status(camera_id, wall_time, state))
        for event in result.events:
            camera.counts[event.kind.value] += 1
            self._store(event)
        for end in result.ends:
            self._store(end)

    def event_counts(self, camera_ids: Collection[str] | None = None) -> dict[str, dict[str, int]]:
        """Events per kind per camera since the start (for the live summary; only
        ``camera_ids`` when given)."""
        return {camera_id: dict(c.counts) for camera_id, c in chosen(self._cameras, camera_ids)}

    def media_cpu_s(self, camera_ids: Collection[str] | None = None) -> dict[str, float]:
        """Per camera, CPU seconds spent on its snapshots and thumbnails (the media thread)
        and its event clips (the clip writer) since it started (a job still running is
        counted when it ends; only ``camera_ids`` when given)."""
        clipped = self.clips.cpu_s() if self.clips is not None else {}
        out = {}
        for camera_id, camera in chosen(self._cameras, camera_ids):
            with camera.lock:
                out[camera_id] = camera.media_ns / 1e9 + clipped.get(camera_id, 0.0)
        return out

    def close(self) -> None:
        """Close every open segment and rule, hand the rest to the writer, and finish the
        snapshots and thumbnails still queued."""
        now = time.time()
        for camera in list(self._cameras.values()):
            with camera.lock:
                result = camera.analyzer.close(now)
            self._store_all(result.events, result.ends, result.segments)
        if self.media_jobs is not None:
            self.media_jobs.close()

    def _due_checkpoint(self, camera: _Camera, wall_time: float) -> list[TagSegment]:
        if wall_time - camera.last_checkpoint < SEGMENT_CHECKPOINT_S:
            return []
        camera.last_checkpoint = wall_time
        return camera.analyzer.open_segments()

    def _with_snapshot(
        self, camera: _Camera, event: Event, sighting: Sighting, known: npt.NDArray[np.float32]
    ) -> Event:
        media, jobs = self.media, self.media_jobs
        if media is None or jobs is None:
            return event
        try:
            path = media.event_path("snapshots", event.camera_id, event.event_id, event.started_at)
        except FeedtagError:
            log.exception(
                "camera %s: no snapshot path for event %s", event.camera_id, event.event_id
            )
            return event

        def write() -> None:
            try:
                covered = (
                    self.anonymizer.blur_all(sighting.image)  # shutting down: no time to check
                    if jobs.hurrying()
                    else self.anonymizer.anonymize(sighting.image, known)
                )
                media.write_snapshot(
                    event.camera_id, event.event_id, at=event.started_at, image=covered,
                    detections=sighting.detections, highlight=event.track_ids,
                )  # fmt: skip
            except (OSError, FeedtagError):
                log.exception("camera %s: snapshot of %s failed", event.camera_id, event.event_id)

        jobs.submit(camera.media_job(write), essential=True)
        attributes = {
            **event.attributes,
            "snapshot": media.relative(path),
            "snapshot_at": round(sighting.wall_time, 3),
        }
        return replace(event, attributes=attributes)

    def _with_clip(self, event: Event) -> Event:
        if self.clips is None or self.media is None or not self.clips.request(event):
            return event
        planned = self.media.event_path("clips", event.camera_id, event.event_id, event.started_at)
        return replace(event, attributes={**event.attributes, "clip": self.media.relative(planned)})

    def _thumbnail(self, camera: _Camera, frame: Frame, detections: Detections) -> None:
        media, jobs = self.media, self.media_jobs
        if (
            media is None
            or jobs is None
            or (frame.repeat and camera.thumbnail_of(frame.image))
            or frame.wall_time - camera.last_thumbnail < self.thumbnail_interval_s
            or not media.thumbnail_wanted(frame.camera_id)
        ):
            return
        camera.last_thumbnail = frame.wall_time
        camera.thumbnail_picture = weakref.ref(frame.image)
        known = np.concatenate(
            [person_boxes(detections, self.class_names), camera.recent.predicted(frame.pts_s)]
        )

        def write() -> None:
            if jobs.hurrying():
                return  # shutting down: nobody is waiting for it
            try:
                covered = self.anonymizer.anonymize(frame.image, known)
                media.write_thumbnail(frame.camera_id, covered)
            except (OSError, FeedtagError):
                log.exception("camera %s: thumbnail failed", frame.camera_id)
                camera.thumbnail_picture = None  # a repeat of it may try again

        jobs.submit(camera.media_job(write), essential=False)

    def _store_all(
        self, events: list[Event], ends: list[EventEnd], segments: list[TagSegment]
    ) -> None:
        items: list[Event | EventEnd | TagSegment] = [*events, *ends, *segments]
        for item in items:
            self._store(item)

    def _store(self, item: Event | EventEnd | TagSegment) -> None:
        # The live stream hears of events and ends from the writer, once they are stored.
        try:
            self.writer.put(item)
        except FeedtagError:
            log.exception("camera %s: the store writer refused an item", item.camera_id)


def _camera(camera: CameraConfig) -> _Camera:
    return _Camera(
        CameraAnalyzer(camera.id, camera.analytics),
        threading.Lock(),
        BestFrames(lost_s=camera.analytics.lost_track_s),
    )


def _shown(best: BestFrames, event: Event, now: Sighting) -> Sighting:
    """The frame an event's snapshot shows: its one track's best sighting, else ``now``."""
    if len(event.track_ids) == 1:
        kept = best.best(event.track_ids[0])
        if kept is not None:
            return kept
    return now


class RetentionJob:
    """Runs the retention job at start and then every ``interval_s``, in its own thread:
    events, tags and media older than ``retention_s``, audit entries older than
    ``audit_retention_s``."""

    def __init__(
        self,
        engine: Engine,
        media_root: Path,
        retention_s: float,
        interval_s: float = 3600.0,
        audit_retention_s: float = 365 * 86400.0,
    ) -> None:
        self._engine = engine
        self._media_root = media_root
        self._retention_s = retention_s
        self._audit_retention_s = audit_retention_s
        self.audit_pruned = 0
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self.last: RetentionResult | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.last = run_retention(self._engine, self._media_root, self._retention_s)
                log.info("retention: %s", self.last)
                pruned = prune_audit(self._engine, time.time() - self._audit_retention_s)
                self.audit_pruned += pruned
                log.info("retention: %d audit entries removed", pruned)
            except FeedtagError:
                log.exception("retention job failed; trying again later")
            self._stop.wait(self._interval_s)


@dataclass(frozen=True, slots=True)
class OpenStore:
    writer: StoreWriter
    media: MediaStore
    retention: RetentionJob


def open_store(
    settings: StoreConfig,
    engine: Engine | None = None,
    *,
    router: Router | None = None,
    spool_folder: str = SPOOL_FOLDER,
) -> OpenStore:
    """Start the store's writer (with the outage spool), the media store and the retention
    job over ``engine`` (default: :func:`open_database`). ``router`` names the alert routes
    each event owes; the writer queues them in the event's transaction. ``spool_folder``
    (under the data folder) belongs to this writer alone: two writers replaying and
    appending to one spool would delete each other's records."""
    data_dir = settings.resolved_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    if engine is None:
        engine = open_database(settings)
    log.info("store: %s", store_url_for_log(settings.resolved_url()))
    spool = Spool(data_dir / spool_folder, max_bytes=settings.spool_max_mb * 2**20)
    writer = StoreWriter(engine, spool, router=router)
    writer.start()
    media = MediaStore(Path(data_dir / MEDIA_FOLDER))
    retention = RetentionJob(
        engine,
        media.root,
        settings.retention_days * 86400,
        audit_retention_s=settings.audit_retention_days * 86400,
    )
    retention.start()
    return OpenStore(writer, media, retention)
