"""The node engine, first form: every camera in its own ingest thread, bounded drop-oldest
queues, and one consumer thread that takes frames fairly across cameras.

Until detection exists, the consumer records per-camera rates (:class:`RateRecorder`).
Every wait has a timeout and every thread watches a stop event, so :meth:`NodeEngine.stop`
returns within its deadline even when a camera is stuck in a blocking read: ingest threads
are daemons and a stuck one ends at its read timeout, after the engine has returned.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Final, Protocol

from feedtag.config.models import CameraConfig, FeedtagConfig
from feedtag.core import CameraState, CameraStatus, Frame, VisionStageStatus, VisionStatus
from feedtag.errors import CameraExists, CameraNotFound
from feedtag.ingest.camera import CameraIngest
from feedtag.ingest.handoff import FrameQueue
from feedtag.ingest.netpolicy import NetworkPolicy
from feedtag.ingest.policies import RateMeter
from feedtag.ingest.rate import AnalysisRates
from feedtag.ingest.ring import PacketRing
from feedtag.runtime.clips import ClipWriter
from feedtag.runtime.control import DEFAULT_STOP_DEADLINE_S, chosen
from feedtag.runtime.detection import build_anonymizer, build_detector
from feedtag.runtime.events import EventPipeline, OpenStore, open_store
from feedtag.runtime.vision import VisionConsumer
from feedtag.vision.detector import Detector

log = logging.getLogger(__name__)

#: how long the consumer waits for any frame before checking the stop event again
CONSUMER_WAIT_S: Final = 0.2
#: how often cameras that send no frames are reported to their health rules
HEALTH_TICK_S: Final = 2.0
_SILENT_STATES: Final = frozenset(
    {CameraState.OFFLINE, CameraState.STALLED, CameraState.CONNECTING}
)


class FrameConsumer(Protocol):
    """Whatever analyses frames; ``consume`` is called from the engine's consumer thread."""

    def start(self) -> None: ...

    def stop(self, timeout: float = 2.0) -> None: ...

    def consume(self, frame: Frame) -> None: ...

    def add_camera(self, camera: CameraConfig) -> None: ...

    def remove_camera(self, camera_id: str) -> None: ...

    def statuses(self, camera_ids: Collection[str] | None = None) -> list[VisionStatus]:
        """What the vision stage did for each camera (only ``camera_ids`` when given)."""
        ...


class RateRecorder:
    """A consumer that only measures how many frames per second each camera delivers."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._meters: dict[str, RateMeter] = {}
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        pass  # nothing to start: it only counts

    def stop(self, timeout: float = 2.0) -> None:
        pass

    def add_camera(self, camera: CameraConfig) -> None:
        pass  # meters are made on a camera's first frame

    def remove_camera(self, camera_id: str) -> None:
        with self._lock:
            self._meters.pop(camera_id, None)

    def statuses(self, camera_ids: Collection[str] | None = None) -> list[VisionStatus]:
        return []  # no vision: ingest only

    def consume(self, frame: Frame) -> None:
        with self._lock:
            meter = self._meters.get(frame.camera_id)
            if meter is None:
                meter = self._meters[frame.camera_id] = RateMeter(clock=self._clock)
            self.counts[frame.camera_id] = self.counts.get(frame.camera_id, 0) + 1
        meter.tick()

    def rate(self, camera_id: str) -> float:
        with self._lock:
            meter = self._meters.get(camera_id)
        return 0.0 if meter is None else meter.rate()


class NodeEngine:
    """Runs the enabled cameras of ``config`` in this process (or of ``cameras``, the config
    file's with the changes stored through the API laid over them: ``runtime/catalog.py``).

    >>> from feedtag.config import parse_config
    >>> engine = NodeEngine(parse_config("cameras: []"))
    >>> engine.start(); engine.stop()
    True
    """

    def __init__(
        self,
        config: FeedtagConfig,
        consumer: FrameConsumer | None = None,
        cameras: Sequence[CameraConfig] | None = None,
        rates: AnalysisRates | None = None,
    ) -> None:
        """``rates``: the adaptive analysis rates the consumer feeds (the same object it was
        given); None: every camera analyses at its fixed ``analysis_fps``."""
        # ``config`` stays the file's: ``_network`` trusts only hosts the file wrote
        self.config = config
        if cameras is None:
            cameras = config.cameras
        self.consumer: FrameConsumer = consumer if consumer is not None else RateRecorder()
        self.rates = rates
        self._ready = threading.Event()
        self._stop = threading.Event()
        # Copy-on-write: writers replace the dict under ``_lock``, never mutate it, so readers
        # (the consumer loop, every round) iterate it without a lock or a copy.
        self._lock = threading.Lock()
        self._cameras: dict[str, CameraIngest] = {
            camera.id: self._make_ingest(camera) for camera in cameras if camera.enabled
        }
        self._consumer_thread: threading.Thread | None = None
        self._started = False
        self.events: EventPipeline | None = None
        self.store: OpenStore | None = None
        # run in order after the consumer stops: close rules, then drain the store writer
        self._closers: list[Callable[[], None]] = []

    @classmethod
    def from_config(
        cls,
        config: FeedtagConfig,
        progress: Callable[[str, int, int], None] | None = None,
        *,
        detector: Detector | None = None,
        store: OpenStore | None = None,
        cameras: Sequence[CameraConfig] | None = None,
    ) -> NodeEngine:
        """An engine whose consumer is what ``config`` asks for: detection and tracking for
        every camera (``cameras``, default the config's), or (``detector.enabled: false``)
        ingest only. Builds the default model on first use, reporting to ``progress``,
        unless ``detector`` is given.

        ``store`` is an opened store that the caller owns (the composition root,
        :mod:`feedtag.runtime.app`, opens it once and closes it after :meth:`stop`); without
        it the engine opens the configured store and closes it when it stops."""
        if cameras is None:
            cameras = config.cameras
        if not config.detector.enabled:
            return cls(config, RateRecorder(), cameras)
        if detector is None:
            detector = build_detector(config.detector, progress)
        owns_store = store is None
        if store is None:
            store = open_store(config.store)
        cameras = [camera for camera in cameras if camera.enabled]
        events = EventPipeline(
            cameras, detector.class_names, store.writer, store.media,
            config.store.thumbnail_interval_s, anonymizer=build_anonymizer(config.detector),
        )  # fmt: skip
        # one controller per camera: the vision stage feeds it, the ingest samples by it (in
        # the Ray engine each shard runs this engine, so shards adapt the same way)
        rates = AnalysisRates()
        consumer = VisionConsumer(detector, config.detector, cameras, on_result=events, rates=rates)
        engine = cls(config, consumer, cameras, rates=rates)
        engine.events = events
        engine.store = store
        engine._closers.append(events.close)
        if owns_store:
            engine._closers += [store.writer.close, store.retention.stop]
        if any(camera.clips.enabled for camera in cameras):
            clips = ClipWriter(store.media, engine.ring)
            events.clips = clips
            clips.start()
            engine._closers.append(clips.stop)
        return engine

    def _make_ingest(self, camera: CameraConfig) -> CameraIngest:
        queue = FrameQueue(self.config.engine.queue_size, self._ready, lossless=camera.lossless)
        ring = PacketRing(camera.clips.ring_s) if camera.clips.enabled else None
        rate = None if self.rates is None else self.rates.for_camera(camera)
        return CameraIngest(
            camera,
            self.config.reconnect,
            queue,
            ring=ring,
            network=self._network(camera),
            rate=rate,
            model_size=(
                self.consumer.model_size() if isinstance(self.consumer, VisionConsumer) else None
            ),
        )

    def _network(self, camera: CameraConfig) -> NetworkPolicy:
        """Where ``camera`` may connect: a camera as the config file defines it trusts its
        own host (the operator wrote it); every other host it is led to, and every host of
        a camera added or changed through the API, must pass ``api.allow_networks``."""
        written = {c.id: c.url for c in self.config.cameras}.get(camera.id)
        trusted = written.host if written is not None and written == camera.url else None
        return NetworkPolicy.allowing(self.config.api.allow_networks, trusted)

    def ring(self, camera_id: str) -> PacketRing | None:
        """The packet ring of a camera with clips enabled (for the clip writer)."""
        ingest = self._cameras.get(camera_id)
        return None if ingest is None else ingest.ring

    def start(self) -> None:
        self.consumer.start()
        self._consumer_thread = threading.Thread(
            target=self._consume_loop, name="consumer", daemon=True
        )
        self._consumer_thread.start()
        with self._lock:
            self._started = True
            cameras = list(self._cameras.values())
        for ingest in cameras:
            ingest.start()
        log.info("engine started with %d camera(s)", len(cameras))

    def add_camera(self, camera: CameraConfig) -> None:
        """Start one more camera at run time; the others are not touched. Before
        :meth:`start` the camera only joins the engine (``start`` opens it), and after
        :meth:`stop` it is not opened at all: no thread outlives the engine.

        Raises :class:`~feedtag.errors.CameraExists` when the id is already running."""
        ingest = self._make_ingest(camera)
        with self._lock:
            if camera.id in self._cameras:
                raise CameraExists(camera.id)
            self._cameras = {**self._cameras, camera.id: ingest}
            opens = self._started and not self._stop.is_set()
        self.consumer.add_camera(camera)
        if self.events is not None:
            self.events.add_camera(camera)
        if opens:
            ingest.start()

    def remove_camera(self, camera_id: str, timeout: float = 5.0) -> bool:
        """Stop and forget one camera; True if its thread ended within ``timeout``.

        Raises :class:`~feedtag.errors.CameraNotFound` when no running camera has the id."""
        with self._lock:
            cameras = dict(self._cameras)
            ingest = cameras.pop(camera_id, None)
            if ingest is None:
                raise CameraNotFound(camera_id)
            self._cameras = cameras
        ingest.stop()
        self.consumer.remove_camera(camera_id)
        if self.rates is not None:
            self.rates.remove(camera_id)
        ended = ingest.join(timeout)
        if self.events is not None:
            self.events.remove_camera(camera_id)  # after the last frame: ends what is open
        return ended

    def change_camera(self, camera: CameraConfig, timeout: float = 5.0) -> bool:
        """Replace one running camera's settings (stop it, start it again with ``camera``);
        the others are not touched. True if the old thread ended within ``timeout``."""
        ended = self.remove_camera(camera.id, timeout)
        self.add_camera(camera)
        return ended

    def cameras(self) -> list[CameraConfig]:
        """The settings of every running camera, in the order they were started."""
        return [ingest.camera for ingest in self._cameras.values()]

    def queue_depths(self, camera_ids: Collection[str] | None = None) -> dict[str, int]:
        """Decoded frames waiting for analysis, per camera (only ``camera_ids`` when
        given)."""
        return {i: len(ingest.queue) for i, ingest in chosen(self._cameras, camera_ids)}

    def stop(self, deadline_s: float = DEFAULT_STOP_DEADLINE_S) -> bool:
        """Stop everything; True if every thread ended within ``deadline_s``."""
        self._stop.set()
        cameras = self._cameras.values()  # both loops below see the same cameras
        for ingest in cameras:
            ingest.stop()
        end = time.monotonic() + deadline_s
        ended = True
        for ingest in cameras:
            if not ingest.join(max(0.0, end - time.monotonic())):
                log.warning("camera %s did not stop in time; leaving it", ingest.camera.id)
                ended = False
        if self._consumer_thread is not None:
            self._consumer_thread.join(max(0.0, end - time.monotonic()))
            ended = ended and not self._consumer_thread.is_alive()
        self.consumer.stop(max(0.1, end - time.monotonic()))
        for close in self._closers:
            try:
                close()
            except Exception:
                log.exception("closing %s failed", close)
        self._closers = []
        return ended

    def statuses(self, camera_ids: Collection[str] | None = None) -> list[CameraStatus]:
        """Every camera's ingest status in the order they started; with ``camera_ids``,
        those of them that run, in the order given."""
        return [ingest.status() for _, ingest in chosen(self._cameras, camera_ids)]

    def states(self) -> dict[str, CameraState]:
        """Every camera's ingest state, without the rest of its status."""
        return {ingest.camera.id: ingest.state for ingest in list(self._cameras.values())}

    def vision_statuses(self, camera_ids: Collection[str] | None = None) -> dict[str, VisionStatus]:
        """Per camera, what the vision stage did (empty when detection is off; only
        ``camera_ids`` when given)."""
        return {status.camera_id: status for status in self.consumer.statuses(camera_ids)}

    def vision_stage_status(self) -> VisionStageStatus | None:
        """The vision stage node-wide (post-processing queue, detector watchdog); None when
        detection is off."""
        if isinstance(self.consumer, VisionConsumer):
            return self.consumer.stage_status()
        return None

    def _health_tick(self) -> None:
        if self.events is None:
            return
        now = time.time()
        for status in self.statuses():
            if status.state in _SILENT_STATES:
                self.events.tick(status.camera_id, status.state, now)

    def _consume_loop(self) -> None:
        # Fairness: one frame from each camera per round, so a busy camera cannot starve
        # the others. Clear-then-scan order means a put during the scan is never missed.
        next_tick = time.monotonic() + HEALTH_TICK_S
        while not self._stop.is_set():
            self._ready.wait(CONSUMER_WAIT_S)
            self._ready.clear()
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + HEALTH_TICK_S
                self._health_tick()
            took = True
            while took and not self._stop.is_set():
                took = False
                for ingest in self._cameras.values():
                    frame = ingest.queue.get_nowait()
                    if frame is None:
                        continue
                    took = True
                    try:
                        self.consumer.consume(frame)
                    except Exception:
                        log.exception("consumer failed on camera %s", frame.camera_id)
