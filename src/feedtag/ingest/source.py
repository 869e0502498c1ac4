"""Opening a camera with PyAV: protocol whitelist, transport, open and read timeouts, and
the network policy on every connection (:mod:`feedtag.ingest.netpolicy`).

Every PyAV error is translated here into :mod:`feedtag.errors`, with the masked URL only.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import av
import av.container

from feedtag.errors import (
    SourceError,
    SourceInvalidData,
    SourceNotFound,
    SourceRefused,
    SourceRejected,
    SourceTimeout,
    source_error_from_av,
)
from feedtag.ingest.decode import MAX_FRAME_PIXELS
from feedtag.ingest.guard import Gate, guard
from feedtag.ingest.netpolicy import NetworkPolicy, PolicyRefused
from feedtag.urls import CameraUrl, RedactingFilter

log = logging.getLogger(__name__)
log.addFilter(RedactingFilter())

DEFAULT_OPEN_TIMEOUT_S: Final = 10.0
DEFAULT_READ_TIMEOUT_S: Final = 5.0
#: what a camera's status says when its host cannot be reached
UNREACHABLE_REASON: Final = "unreachable"
#: bytes FFmpeg may read while probing the stream format (keeps opens of bad streams short)
PROBE_SIZE: Final = 5_000_000
RTSP_PORTS: Final = {"rtsp": 554, "rtsps": 322}


@dataclass(frozen=True, slots=True)
class OpenOptions:
    """How to open one source. ``policy`` None opens without network checks (a command
    the operator runs on a URL they typed, such as ``feedtag probe``)."""

    open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    rtsp_transport: str = "tcp"
    policy: NetworkPolicy | None = None

    def ffmpeg_options(self, url: CameraUrl) -> dict[str, str]:
        """FFmpeg format and protocol options for ``url``."""
        options = {
            "protocol_whitelist": url.protocol_whitelist,
            "probesize": str(PROBE_SIZE),
            # also reaches the decoders that probe the streams while opening: a header that
            # claims 8192x8192 would otherwise cost 400 MB and seconds before it is refused
            "max_pixels": str(MAX_FRAME_PIXELS),
        }
        read_timeout_us = str(int(self.read_timeout_s * 1_000_000))
        if url.scheme in ("rtsp", "rtsps"):
            options["rtsp_transport"] = self.rtsp_transport
            options["timeout"] = read_timeout_us  # socket I/O timeout, microseconds
        elif url.scheme in ("http", "https"):
            options["rw_timeout"] = read_timeout_us
            # feedtag reconnects itself, with backoff and a budget; FFmpeg's own reconnect
            # would hide outages from camera status.
            options["reconnect"] = "0"
        return options


@contextmanager
def open_source(url: CameraUrl, options: OpenOptions) -> Iterator[av.container.InputContainer]:
    """Open ``url`` for reading; the container is closed on every path.

    Raises a :class:`~feedtag.errors.SourceError` subclass naming the masked URL; a
    connection the network policy refuses, at the first hop or any later one, raises
    :class:`~feedtag.ingest.netpolicy.PolicyRefused`.
    """
    masked = url.masked()
    with _checked_connection(url, options) as (target, ffmpeg_options, gate):
        started = time.monotonic()
        try:
            container = av.open(
                target,
                mode="r",
                options=ffmpeg_options,
                timeout=(options.open_timeout_s, options.read_timeout_s),
            )
        except Exception as exc:  # noqa: BLE001 - every library error is translated
            raise _refusal(gate, masked) or _open_failure(
                exc, masked, options, time.monotonic() - started
            ) from None
        try:
            if not container.streams.video:
                raise SourceNotFound("the source has no video stream", masked)
            yield container
        except SourceError as error:
            # a later hop (an HLS segment on another host) refused: say so, not "403"
            raise _refusal(gate, masked) or error from None
        finally:
            try:
                container.close()
            except Exception:  # noqa: BLE001 - closing a broken container must not mask the cause
                log.debug("closing %s failed", masked)


@contextmanager
def _checked_connection(
    url: CameraUrl, options: OpenOptions
) -> Iterator[tuple[str, dict[str, str], Gate | None]]:
    """What to hand PyAV for ``url`` under the options' network policy: RTSP through a
    relaying gate of the connection guard (:mod:`feedtag.ingest.rtsp_relay`), HTTP(S)
    through a proxying one; each checks every hop on the address it connects to."""
    ffmpeg_options = options.ffmpeg_options(url)
    policy = options.policy
    if policy is None or url.is_file:
        yield url.render(), ffmpeg_options, None
        return
    if url.scheme in ("rtsp", "rtsps"):
        gate = guard().open_rtsp(
            policy, url.host, url.port or RTSP_PORTS[url.scheme], tls=url.scheme == "rtsps"
        )
        try:
            # FFmpeg speaks plain RTSP to the gate; the relay speaks TLS to an rtsps camera
            relayed = dataclasses.replace(url, scheme="rtsp", host="127.0.0.1", port=gate.port)
            yield relayed.render(), ffmpeg_options, gate
        finally:
            guard().close(gate)
        return
    gate = guard().open(policy)
    try:
        yield url.render(), {**ffmpeg_options, "http_proxy": gate.url}, gate
    finally:
        guard().close(gate)


def _refusal(gate: Gate | None, masked: str) -> SourceError | None:
    """What the gate knows of a failed connection: a refused hop, or a host it could not
    reach (FFmpeg itself only saw the gate close the connection)."""
    if gate is None:
        return None
    if gate.refused is not None:
        return PolicyRefused(gate.refused.detail, masked)
    if gate.unreachable is not None:
        return SourceRefused(f"open failed: {gate.unreachable}", masked)
    return None


def _open_failure(
    exc: BaseException, masked: str, options: OpenOptions, waited_s: float
) -> SourceError:
    """Why an open failed. FFmpeg's RTSP demuxer reports an interrupted open as invalid
    data, and also its socket timeout (the read timeout) when a server accepted or answered
    OPTIONS and then fell silent: after that long with nothing to read, it is a timeout."""
    if waited_s >= options.open_timeout_s:
        return SourceTimeout(f"open failed: no answer within {options.open_timeout_s:g} s", masked)
    error = source_error_from_av(exc, masked, "open")
    if waited_s >= options.read_timeout_s and isinstance(error, SourceInvalidData | SourceTimeout):
        return SourceTimeout(f"open failed: no answer within {options.read_timeout_s:g} s", masked)
    return error


def status_reason(error: SourceError) -> str:
    """What a camera's status says about ``error``, for everyone who may see the camera.

    A host the policy refuses, or that cannot be reached (refused, unreachable, does not
    resolve), is told apart no further: which of those a target gave is a map of a network
    the viewer has no business probing. The log keeps the detail for the operator.

    >>> status_reason(SourceRefused("open failed: connection refused", "rtsp://10.0.0.9/s"))
    'unreachable (rtsp://10.0.0.9/s)'
    """
    if isinstance(error, PolicyRefused):
        return str(error)
    if isinstance(error, SourceRefused) or (
        isinstance(error, SourceRejected) and "resolve" in error.message
    ):
        return str(SourceRefused(UNREACHABLE_REASON, error.url))
    return str(error)


def translate_read_error(exc: BaseException, url: CameraUrl) -> SourceError:
    """A demux error, as a :class:`SourceError`."""
    return source_error_from_av(exc, url.masked(), "read")
