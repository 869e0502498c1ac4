"""Opening a camera with PyAV: protocol whitelist, transport, open and read timeouts.

Every PyAV error is translated here into :mod:`feedtag.errors`, with the masked URL only.
"""

from __future__ import annotations

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
    SourceTimeout,
    source_error_from_av,
)
from feedtag.urls import CameraUrl, RedactingFilter

log = logging.getLogger(__name__)
log.addFilter(RedactingFilter())

DEFAULT_OPEN_TIMEOUT_S: Final = 10.0
DEFAULT_READ_TIMEOUT_S: Final = 5.0
#: bytes FFmpeg may read while probing the stream format (keeps opens of bad streams short)
PROBE_SIZE: Final = 5_000_000


@dataclass(frozen=True, slots=True)
class OpenOptions:
    """How to open one source."""

    open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    rtsp_transport: str = "tcp"

    def ffmpeg_options(self, url: CameraUrl) -> dict[str, str]:
        """FFmpeg format and protocol options for ``url``."""
        options = {
            "protocol_whitelist": url.protocol_whitelist,
            "probesize": str(PROBE_SIZE),
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

    Raises a :class:`~feedtag.errors.SourceError` subclass naming the masked URL.
    """
    masked = url.masked()
    started = time.monotonic()
    try:
        container = av.open(
            url.render(),
            mode="r",
            options=options.ffmpeg_options(url),
            timeout=(options.open_timeout_s, options.read_timeout_s),
        )
    except Exception as exc:  # noqa: BLE001 - every library error is translated
        raise _open_failure(exc, masked, options, time.monotonic() - started) from None
    try:
        if not container.streams.video:
            raise SourceNotFound("the source has no video stream", masked)
        yield container
    finally:
        try:
            container.close()
        except Exception:  # noqa: BLE001 - closing a broken container must not mask the cause
            log.debug("closing %s failed", masked)


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


def translate_read_error(exc: BaseException, url: CameraUrl) -> SourceError:
    """A demux error, as a :class:`SourceError`."""
    return source_error_from_av(exc, url.masked(), "read")
