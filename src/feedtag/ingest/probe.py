"""``feedtag probe``: what a camera sends, measured from its first seconds."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Final

from feedtag.errors import SourceError
from feedtag.ingest.decode import KeyframeIntervalMeter
from feedtag.ingest.source import OpenOptions, open_source, translate_read_error
from feedtag.urls import CameraUrl

DEFAULT_PROBE_SECONDS: Final = 5.0
#: keyframes to see before the interval is trusted
PROBE_KEYFRAMES: Final = 3


@dataclass(frozen=True, slots=True)
class ProbeResult:
    url: str
    format: str
    codec: str
    width: int
    height: int
    fps: float | None
    keyframe_interval_s: float | None
    bitrate_kbps: float | None
    probed_stream_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe(
    url: CameraUrl, options: OpenOptions, max_seconds: float = DEFAULT_PROBE_SECONDS
) -> ProbeResult:
    """Open ``url`` and read up to ``max_seconds`` of wall time (or until enough keyframes)."""
    with open_source(url, options) as container:
        stream = container.streams.video[0]
        time_base = float(stream.time_base) if stream.time_base else 1 / 90_000
        meter = KeyframeIntervalMeter()
        keyframes, size, first, last = 0, 0, None, None
        deadline = time.monotonic() + max_seconds
        try:
            for packet in container.demux(stream):
                stamp = packet.dts if packet.dts is not None else packet.pts
                if stamp is None or not packet.size:
                    continue
                t_s = stamp * time_base
                first = t_s if first is None else first
                last = t_s
                size += packet.size
                if packet.is_keyframe:
                    meter.observe_keyframe(t_s)
                    keyframes += 1
                if keyframes > PROBE_KEYFRAMES or time.monotonic() > deadline:
                    break
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated at the boundary
            raise translate_read_error(exc, url) from None
        span = (last - first) if first is not None and last is not None else 0.0
        rate = stream.average_rate or stream.guessed_rate
        return ProbeResult(
            url=url.masked(),
            format=container.format.name,
            codec=stream.codec_context.name,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=round(float(rate), 3) if rate else None,
            keyframe_interval_s=meter.interval_s,
            bitrate_kbps=round(size * 8 / span / 1000, 1) if span > 0 else None,
            probed_stream_s=round(span, 3),
        )
