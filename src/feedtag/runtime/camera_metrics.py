"""The per-camera families of ``/metrics``, built from camera snapshots wherever the cameras
run: the API builds them from the engine's snapshot (series per camera), and in totals
(``api.metrics: totals``) each shard builds its own from its cameras, so that a scrape moves
a few hundred series per shard instead of every camera's status
(:meth:`~feedtag.runtime.control.EngineControl.camera_totals`).

Labels are camera ids, kinds, drop reasons, decode modes, analysis levels and shard ids only:
never a URL, so never a credential.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from feedtag.ingest.camera import DECODE_ERROR
from feedtag.ingest.handoff import QUEUE_FULL
from feedtag.runtime.control import CameraSnapshot, EngineSnapshot
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


def _ingest(cameras: Sequence[CameraSnapshot], labels: CameraLabels) -> Iterator[Metric]:
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
                family.add(labels.values(this_camera, each.value), 1.0 if current is each else 0.0)
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


def _vision(cameras: Sequence[CameraSnapshot], labels: CameraLabels) -> Iterator[Metric]:
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


def camera_families(cameras: Sequence[CameraSnapshot], labels: CameraLabels) -> list[Metric]:
    """Every per-camera family (state, rates, drops, vision, events) of ``cameras``, per
    camera or in totals as ``labels`` say."""
    return [*_ingest(cameras, labels), *_vision(cameras, labels), _events(cameras, labels)]


def camera_totals(snapshot: EngineSnapshot, *, sharded: bool) -> list[Metric]:
    """The per-camera families in totals over ``snapshot``'s cameras: one series set per
    shard when ``sharded``, else one in all."""
    shown = sorted(snapshot.cameras, key=lambda c: c.camera_id)
    return camera_families(shown, CameraLabels(sharded=sharded, per_camera=False))


def merge_families(parts: Sequence[Sequence[Metric]]) -> list[Metric]:
    """Families of the same names from several shards as one list: each family's samples
    side by side (their ``shard`` labels keep them apart), in the order first seen."""
    merged: dict[str, Metric] = {}
    for part in parts:
        for family in part:
            found = merged.get(family.name)
            if found is None:
                found = merged[family.name] = Metric(family.name, family.documentation, family.type)
            found.samples.extend(family.samples)
    return list(merged.values())


def _events(cameras: Sequence[CameraSnapshot], labels: CameraLabels) -> Metric:
    events = counter("events", "Events since start, by kind.", labels.names("kind"))
    for camera_snapshot in cameras:
        for kind, count in sorted(camera_snapshot.event_counts.items()):
            events.add(labels.values(camera_snapshot, kind), count)
    return events.done()
