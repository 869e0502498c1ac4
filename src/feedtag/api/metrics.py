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
(:class:`~feedtag.runtime.camera_metrics.Samples`), so the series no longer grow with the
cameras; ``sum by (...)`` queries read the same in both. Each shard combines its own cameras
(:meth:`~feedtag.runtime.control.EngineControl.camera_totals`) and the scrape takes a
snapshot of no camera for the node-wide figures, so a scrape in totals does not move every
camera's status to the API.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from feedtag.alerts.dispatcher import AlertStats
from feedtag.core import VisionStageStatus
from feedtag.runtime.bus import EventBus
from feedtag.runtime.camera_metrics import PREFIX, CameraLabels, camera_families
from feedtag.runtime.control import EngineControl, EngineSnapshot, ShardSnapshot, ShardState


class EngineCollector(Collector):
    """Reads an engine's snapshot (and the live-stream bus) on every scrape; with
    ``per_camera`` false, the camera families are totals per shard (``api.metrics``), which
    the engine's shards build from their own cameras."""

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

    def collect(self) -> Iterator[Metric]:
        if self.per_camera:
            snapshot = self.engine.snapshot(self.cameras)
            labels = CameraLabels(sharded=any(c.shard is not None for c in snapshot.cameras))
            yield from camera_families(sorted(snapshot.cameras, key=lambda c: c.camera_id), labels)
        else:
            snapshot = self.engine.snapshot(())  # the node-wide figures only
            yield from self.engine.camera_totals(self.cameras)
        if snapshot.vision_stage is not None:
            yield from stage_metrics(snapshot.vision_stage)
        yield from self._store_and_stream(snapshot)
        if self.cameras is None:  # node-wide: full view only
            if snapshot.alerts is not None:
                yield from alert_metrics(snapshot.alerts)
            yield from shard_metrics(self.engine.shards())

    def _store_and_stream(self, snapshot: EngineSnapshot) -> Iterator[Metric]:
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
