"""``/metrics`` in the Prometheus text format, read live from the engine at scrape time.

A custom collector (no counters kept on the side): every scrape takes one
:class:`~feedtag.runtime.control.EngineSnapshot` (camera statuses, vision statuses, event
counts, queue depths and the store writer's stats), so the numbers are exactly what
``feedtag run`` prints. Labels are camera ids, kinds, drop
reasons, decode modes, analysis levels and shard ids only: never a URL, so never a credential.

On a sharded engine (the Ray engine: cameras carry a shard) every per-camera series also has
a ``shard`` label (empty for a camera held offline on no shard); the full view adds one series
set per shard (:func:`shard_metrics`).

A camera has 37 series (its one-hot states and drop reasons included) and one per kind of
event it has had: 3.7 to 4.9 million at 100,000 cameras. With ``api.metrics: totals`` the
same families come without the camera label, combined over the cameras of each shard
(:class:`Samples`), so the series no longer grow with the cameras; ``sum by (...)`` queries
read the same in both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from feedtag.alerts.dispatcher import AlertStats
from feedtag.core import VisionStageStatus
from feedtag.ingest.camera import DECODE_ERROR
from feedtag.ingest.handoff import QUEUE_FULL
from feedtag.runtime.bus import EventBus
from feedtag.runtime.control import (
    CameraSnapshot,
    EngineControl,
    EngineSnapshot,
    ShardSnapshot,
    ShardState,
)
from feedtag.runtime.vision import DETECTOR_BUSY

PREFIX: Final = "feedtag"
#: reported as 0 until they happen, so that rate() and alerts work from the first scrape
KNOWN_DROP_REASONS: Final = frozenset({QUEUE_FULL, DECODE_ERROR})


@dataclass(frozen=True, slots=True)
class CameraLabels:
    """The labels of every per-camera series: the camera, the family's own labels, and the
    camera's shard when the engine is sharded. Without ``per_camera`` (``api.metrics:
    totals``) the camera label is left out, so that the cameras of a shard share each series.

    >>> CameraLabels(sharded=True).names("kind")
    ['camera', 'kind', 'shard']
    >>> CameraLabels(sharded=True, per_camera=False).names("kind")
    ['kind', 'shard']
    """

    sharded: bool
    per_camera: bool = True

    def names(self, *own: str) -> list[str]:
        camera = ["camera"] if self.per_camera else []
        return [*camera, *own, *(["shard"] if self.sharded else [])]

    def values(self, camera: CameraSnapshot, *own: str) -> tuple[str, ...]:
        ids = (camera.camera_id,) if self.per_camera else ()
        return (*ids, *own, *((camera.shard or "",) if self.sharded else ()))


Combine = Literal["sum", "max", "mean"]


class Samples:
    """One metric family's samples by label values. Per camera every key is one camera's; in
    totals the cameras of a key (a shard, or the whole process) are combined: summed (counts,
    rates, and one-hot states, which sum to how many cameras are in each), or their largest
    or mean value where a sum means nothing (a latency, a ratio)."""

    def __init__(
        self, family: GaugeMetricFamily | CounterMetricFamily, combine: Combine = "sum"
    ) -> None:
        self.family = family
        self._combine = combine
        self._values: dict[tuple[str, ...], float] = {}
        self._counts: dict[tuple[str, ...], int] = {}

    def add(self, key: tuple[str, ...], value: float) -> None:
        seen = self._counts.get(key, 0)
        if seen == 0:
            self._values[key] = value
        elif self._combine == "max":
            self._values[key] = max(self._values[key], value)
        else:  # a mean is a sum until done()
            self._values[key] += value
        self._counts[key] = seen + 1

    def done(self) -> Metric:
        for key, value in self._values.items():
            mean = self._combine == "mean"
            self.family.add_metric(list(key), value / self._counts[key] if mean else value)
        return self.family


def gauge(name: str, text: str, labels: list[str], combine: Combine = "sum") -> Samples:
    return Samples(GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=labels), combine)


def counter(name: str, text: str, labels: list[str]) -> Samples:
    return Samples(CounterMetricFamily(f"{PREFIX}_{name}", text, labels=labels))


class EngineCollector(Collector):
    """Reads an engine's snapshot (and the live-stream bus) on every scrape; with
    ``per_camera`` false, the camera families are totals per shard (``api.metrics``)."""

    def __init__(
        self,
        engine: EngineControl,
        bus: EventBus,
        cameras: frozenset[str] | None = None,
        per_camera: bool = True,
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.cameras = cameras  # None: every camera
        self.per_camera = per_camera

    def _shown(self, camera_id: str) -> bool:
        return self.cameras is None or camera_id in self.cameras

    def collect(self) -> Iterator[Metric]:
        snapshot = self.engine.snapshot()
        labels = CameraLabels(
            sharded=any(c.shard is not None for c in snapshot.cameras), per_camera=self.per_camera
        )
        shown = sorted(
            (c for c in snapshot.cameras if self._shown(c.camera_id)), key=lambda c: c.camera_id
        )
        yield from self._cameras(shown, labels)
        yield from self._vision(shown, labels)
        if snapshot.vision_stage is not None:
            yield from stage_metrics(snapshot.vision_stage)
        yield from self._events_and_store(snapshot, shown, labels)
        if self.cameras is None:  # node-wide: full view only
            if snapshot.alerts is not None:
                yield from alert_metrics(snapshot.alerts)
            yield from shard_metrics(self.engine.shards())

    def _cameras(self, cameras: list[CameraSnapshot], labels: CameraLabels) -> Iterator[Metric]:
        camera = labels.names()
        fps = gauge("camera_analysed_fps", "Frames analysed per second.", camera)
        target = gauge(
            "camera_analysis_fps", "Frames per second analysis asks for now (adaptive).", camera
        )
        level = gauge(
            "camera_analysis_level",
            "1 for the camera's current analysis rate level (in totals: cameras at it).",
            labels.names("level"),
        )
        packet_gate = gauge(
            "camera_packet_gate",
            "1 for whether the camera's packet sizes are believed now (docs/ingest.md, the "
            "packet gate; in totals: cameras in each state).",
            labels.names("state"),
        )
        decoded = gauge("camera_decoded_fps", "Frames decoded per second.", camera)
        mode = gauge(
            "camera_decode_mode",
            "1 for the camera's current decode mode (in totals: cameras in it).",
            labels.names("mode"),
        )
        state = gauge(
            "camera_state",
            "1 for the camera's current state (in totals: cameras in it).",
            labels.names("state"),
        )
        drops = counter(
            "camera_frames_dropped", "Decoded frames dropped, by reason.", labels.names("reason")
        )
        analysed = counter("camera_frames_analysed", "Frames handed to analysis.", camera)
        reconnects = counter("camera_reconnects", "Reconnects.", camera)
        stalls = counter("camera_stalls", "Watchdog stalls (no decoded frame in time).", camera)
        unchanged = counter(
            "camera_keyframes_unchanged", "Keyframes the packet gate left undecoded.", camera
        )
        queue = gauge("camera_queue_depth", "Decoded frames waiting for analysis.", camera)
        ingest_cpu = counter(
            "camera_ingest_cpu_seconds",
            "CPU seconds of the camera's ingest thread (reading, decoding, converting frames).",
            camera,
        )
        for this_camera in cameras:
            status, key = this_camera.ingest, labels.values(this_camera)
            fps.add(key, status.analysed_fps)
            decoded.add(key, status.decoded_fps)
            if status.target_fps is not None:
                target.add(key, status.target_fps)
            for family, current in (
                (level, status.analysis_level),
                (packet_gate, status.packet_gate),
                (mode, status.mode),
                (state, status.state),
            ):
                for each in type(current):  # 1 for the current member, 0 for the others
                    family.add(
                        labels.values(this_camera, each.value), 1.0 if current is each else 0.0
                    )
            dropped = dict(status.counters.frames_dropped)
            seen = this_camera.vision
            if seen is not None:  # frames the batch scheduler dropped, counted by the vision stage
                dropped[DETECTOR_BUSY] = seen.dropped
            for reason in sorted(KNOWN_DROP_REASONS | set(dropped)):
                drops.add(labels.values(this_camera, reason), dropped.get(reason, 0))
            analysed.add(key, status.counters.frames_analysed)
            reconnects.add(key, status.counters.reconnects)
            stalls.add(key, status.counters.stalls)
            unchanged.add(key, status.counters.keyframes_unchanged)
            queue.add(key, this_camera.queue_depth)
            ingest_cpu.add(key, status.counters.cpu_s)
        for samples in (fps, target, level, packet_gate, decoded, mode, state, drops, analysed,
                        reconnects, stalls, unchanged, queue, ingest_cpu):  # fmt: skip
            yield samples.done()

    def _vision(self, cameras: list[CameraSnapshot], labels: CameraLabels) -> Iterator[Metric]:
        camera = labels.names()
        gate = gauge(
            "camera_gate_ratio",
            "Fraction of frames the gate let pass without the detector (in totals: the mean).",
            camera,
            "mean",
        )
        latency = gauge(
            "camera_detector_latency_seconds",
            "Latest detector latency per frame (in totals: the largest).",
            camera,
            "max",
        )
        detected = counter("camera_frames_detected", "Frames the detector ran on.", camera)
        tracks = gauge("camera_tracks", "Active anonymous tracks.", camera)
        hung = counter("camera_frames_hung", "Frames failed in a detect() call that hung.", camera)
        cropped = counter(
            "camera_frames_cropped",
            "Detector runs on an active region of the frame (part of frames_detected; the rest "
            "were whole frames).",
            camera,
        )
        detector_s = counter(
            "camera_detector_seconds",
            "Seconds of detect() calls, the camera's share (each call's time divided among "
            "its frames).",
            camera,
        )
        analysis_cpu = counter(
            "camera_analysis_cpu_seconds",
            "CPU seconds of the camera's frames outside the detector (gate, tracker, rules).",
            camera,
        )
        media = counter(
            "camera_media_cpu_seconds",
            "CPU seconds of the camera's snapshots, thumbnails and clips (anonymizing, "
            "encoding, remuxing, writing).",
            camera,
        )
        for camera_snapshot in cameras:
            seen = camera_snapshot.vision
            if seen is None:
                continue
            values = labels.values(camera_snapshot)
            gate.add(values, seen.gate_ratio)
            if seen.latency_ms is not None:
                latency.add(values, seen.latency_ms / 1000.0)
            detected.add(values, seen.detected)
            tracks.add(values, seen.tracks)
            hung.add(values, seen.hung)
            cropped.add(values, seen.cropped)
            detector_s.add(values, seen.detector_s)
            analysis_cpu.add(values, seen.analysis_cpu_s)
            media.add(values, camera_snapshot.media_cpu_s)
        for samples in (gate, latency, detected, tracks, hung, cropped, detector_s, analysis_cpu,
                        media):  # fmt: skip
            yield samples.done()

    def _events_and_store(
        self, snapshot: EngineSnapshot, cameras: list[CameraSnapshot], labels: CameraLabels
    ) -> Iterator[Metric]:
        events = counter("events", "Events since start, by kind.", labels.names("kind"))
        for camera_snapshot in cameras:
            for kind, count in sorted(camera_snapshot.event_counts.items()):
                events.add(labels.values(camera_snapshot, kind), count)
        yield events.done()
        if snapshot.store is not None:
            stats = snapshot.store
            yield GaugeMetricFamily(f"{PREFIX}_spool_bytes", "Bytes spooled during store outages.",
                                    value=stats.spool_bytes)  # fmt: skip
            yield GaugeMetricFamily(f"{PREFIX}_spool_records", "Records waiting in the spool.",
                                    value=stats.spool_records)  # fmt: skip
            yield CounterMetricFamily(f"{PREFIX}_store_written", "Records written to the store.",
                                      value=stats.written)  # fmt: skip
            yield CounterMetricFamily(f"{PREFIX}_store_dropped",
                                      "Records dropped (spool full).",
                                      value=stats.dropped)  # fmt: skip
            yield GaugeMetricFamily(f"{PREFIX}_store_available", "1 while the store answers.",
                                    value=1.0 if stats.available else 0.0)  # fmt: skip
        yield GaugeMetricFamily(f"{PREFIX}_stream_subscribers", "Open live-stream connections.",
                                value=self.bus.subscribers)  # fmt: skip
        yield CounterMetricFamily(f"{PREFIX}_stream_published", "Events offered to the stream.",
                                  value=self.bus.published)  # fmt: skip


def alert_metrics(stats: AlertStats) -> Iterator[Metric]:
    """Alert delivery: the outbox by state (while the store answers) and this process's
    deliveries, failed attempts and delivery latency."""
    outbox = GaugeMetricFamily(f"{PREFIX}_alerts_outbox", "Alert outbox rows, by state.",
                               labels=["state"])  # fmt: skip
    for state, count in (("pending", stats.pending), ("delivered", stats.delivered_total),
                         ("dead", stats.dead_total)):  # fmt: skip
        if count is not None:
            outbox.add_metric([state], count)
    yield outbox
    yield CounterMetricFamily(f"{PREFIX}_alerts_delivered", "Alerts delivered since start.",
                              value=stats.delivered)  # fmt: skip
    yield CounterMetricFamily(f"{PREFIX}_alerts_failed",
                              "Failed delivery attempts since start (retried or dead).",
                              value=stats.failed)  # fmt: skip
    yield CounterMetricFamily(f"{PREFIX}_alerts_dead", "Alerts given up on since start.",
                              value=stats.dead)  # fmt: skip
    if stats.latency_last_s is not None:
        yield GaugeMetricFamily(f"{PREFIX}_alerts_latency_seconds",
                                "From an event's outbox row to its delivery: the latest.",
                                value=stats.latency_last_s)  # fmt: skip
    if stats.latency_max_s is not None:
        yield GaugeMetricFamily(f"{PREFIX}_alerts_latency_max_seconds",
                                "From an event's outbox row to its delivery: the longest.",
                                value=stats.latency_max_s)  # fmt: skip


def shard_metrics(shards: list[ShardSnapshot]) -> Iterator[Metric]:
    """Every shard of the engine (one, ``local``, in one process): its state, cameras, CPU
    and memory (the figures only of shards that answered)."""
    state = GaugeMetricFamily(f"{PREFIX}_shard_state", "1 for the shard's current state.",
                              labels=["shard", "state"])  # fmt: skip
    cameras = GaugeMetricFamily(f"{PREFIX}_shard_cameras", "Cameras the shard runs.",
                                labels=["shard"])  # fmt: skip
    cpu = GaugeMetricFamily(f"{PREFIX}_shard_cpu_percent",
                            "CPU of the shard's process, in percent of one core.",
                            labels=["shard"])  # fmt: skip
    rss = GaugeMetricFamily(f"{PREFIX}_shard_rss_bytes", "Resident memory of the shard's process.",
                            labels=["shard"])  # fmt: skip
    for shard in shards:
        for each in ShardState:
            state.add_metric([shard.shard_id, each.value], 1.0 if shard.state is each else 0.0)
        cameras.add_metric([shard.shard_id], len(shard.cameras))
        if shard.cpu_percent is not None:
            cpu.add_metric([shard.shard_id], shard.cpu_percent)
        if shard.rss_bytes is not None:
            rss.add_metric([shard.shard_id], shard.rss_bytes)
    yield from (state, cameras, cpu, rss)


def stage_metrics(stage: VisionStageStatus) -> Iterator[Metric]:
    """The vision stage node-wide: post-processing queue, detector watchdog."""
    yield GaugeMetricFamily(f"{PREFIX}_postprocess_queue_depth",
                            "Results waiting for post-processing (rules, media, store).",
                            value=stage.postprocess_depth)  # fmt: skip
    yield GaugeMetricFamily(f"{PREFIX}_postprocess_queue_capacity",
                            "Bound of the post-processing queue.",
                            value=stage.postprocess_capacity)  # fmt: skip
    yield CounterMetricFamily(f"{PREFIX}_postprocess_dropped",
                              "Results dropped before post-processing (queue full, or stop).",
                              value=stage.postprocess_dropped)  # fmt: skip
    yield CounterMetricFamily(f"{PREFIX}_detector_hangs",
                              "detect() calls the watchdog gave up on.",
                              value=stage.detector_hangs)  # fmt: skip
    yield CounterMetricFamily(f"{PREFIX}_detector_restarts", "Hung detector workers replaced.",
                              value=stage.detector_restarts)  # fmt: skip
    yield GaugeMetricFamily(f"{PREFIX}_detector_workers", "Detector workers serving now.",
                            value=stage.detector_workers)  # fmt: skip


def engine_registry(
    engine: EngineControl,
    bus: EventBus,
    cameras: frozenset[str] | None = None,
    per_camera: bool = True,
) -> CollectorRegistry:
    """A registry of its own (not the global one, so that many apps can live in a process)
    showing ``cameras`` only (None: every camera), per camera or in totals."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(engine, bus, cameras, per_camera))
    return registry
