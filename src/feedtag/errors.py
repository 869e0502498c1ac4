"""One exception tree for feedtag.

::

    FeedtagError
     ├── ConfigError              bad configuration (every problem, each with its field path)
     ├── SourceError              a camera could not be opened or read
     │    ├── SourceRejected      the URL failed validation; nothing was opened
     │    │    └── PolicyRefused  the network policy refuses the address (ingest.netpolicy)
     │    ├── SourceTimeout       open or read gave no answer within the bound
     │    ├── SourceRefused       connection refused or host unreachable
     │    ├── SourceNotFound      wrong path, 404, no such stream
     │    ├── SourceUnauthorized  401/403: credentials missing or wrong
     │    ├── SourceInvalidData   the bytes are not a stream FFmpeg understands
     │    ├── SourceEnded         a live source closed its stream
     │    └── SourceStalled       bytes may arrive, but no frame was decoded for too long
     ├── DecodeError              a packet or frame could not be decoded
     ├── ClipError                a clip could not be written from the packet ring (ingest.ring)
     ├── DetectorError            inference failed (vision layer)
     │    ├── ModelError          a model could not be built, found, read or verified
     │    └── DetectorHangError   a detect() call did not return within the watchdog's bound
     ├── CameraError              a run-time camera change named the wrong camera
     │    ├── CameraExists        the id is already running
     │    └── CameraNotFound      no running camera has the id
     ├── StoreError               the store could not be written or read
     │    ├── StoreUnavailable    the database did not answer (down, refused, timed out)
     │    └── SpoolFull           the outage spool reached its bound; the record was dropped
     ├── DeliveryFailed           one alert delivery attempt failed (alerts.webhooks)
     ├── ServeError               the API server could not be started (runtime.serve)
     ├── FootageMissing           a sample clip is not installed (samples)
     ├── RtspServerError          the sample RTSP server did not start (bench.demo)
     └── BenchError               a benchmark step did not finish (bench.control_plane)

Classes named with a module are defined there, beside the only code that raises them;
``tests/test_errors.py`` checks that every exception class in the package is in this tree
and in this drawing. The one exception outside it, ``config.loading._LimitExceeded``, is a
``yaml.YAMLError`` by necessity (it is raised inside PyYAML's composer) and never leaves
the YAML parsing of :mod:`feedtag.config.loading`: it becomes a :class:`ConfigError`.

Library errors are translated where they enter feedtag (see :func:`source_error_from_av`).
Messages never carry credentials: callers pass the *masked* URL, and the original PyAV
exception, whose text includes the raw URL, is never chained.
"""

from __future__ import annotations

import errno as errno_codes
from typing import Any


class FeedtagError(Exception):
    """Base of every error feedtag raises on purpose."""


class ConfigError(FeedtagError):
    """The configuration is invalid. ``problems`` lists ``(field_path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "config") -> None:
        self.problems = problems
        self.source = source
        lines = [f"{path}: {message}" if path else message for path, message in problems]
        super().__init__(f"{source} is invalid:\n  " + "\n  ".join(lines))


class SourceError(FeedtagError):
    """A camera source failed. ``url`` is always the masked form."""

    #: a short machine-readable reason, shown in camera status
    reason = "source error"

    def __init__(self, message: str, url: str = "") -> None:
        self.message = message  # without the URL, for a caller that names the source itself
        self.url = url
        super().__init__(f"{message} ({url})" if url else message)


class SourceRejected(SourceError):
    reason = "rejected"


class SourceTimeout(SourceError):
    reason = "timeout"


class SourceRefused(SourceError):
    reason = "refused"


class SourceNotFound(SourceError):
    reason = "not found"


class SourceUnauthorized(SourceError):
    reason = "unauthorized"


class SourceInvalidData(SourceError):
    reason = "invalid data"


class SourceEnded(SourceError):
    reason = "ended"


class SourceStalled(SourceError):
    reason = "stalled"


class DecodeError(FeedtagError):
    """A packet or frame could not be decoded."""


class DetectorError(FeedtagError):
    """Inference failed."""


class DetectorHangError(DetectorError):
    """A ``detect()`` call did not return within the watchdog's bound; its frames are failed
    with this and its late result is discarded."""


class ModelError(DetectorError):
    """A detector model could not be built, found, read or verified; the message says what
    to do (which package to install, which file is corrupt)."""


class CameraError(FeedtagError):
    """A camera added, changed, restarted or removed at run time could not be, because of
    which cameras are running. ``camera_id`` names the camera."""

    def __init__(self, camera_id: str, message: str) -> None:
        self.camera_id = camera_id
        super().__init__(f"camera {camera_id!r}: {message}")


class CameraExists(CameraError):
    """A camera with this id is already running."""

    def __init__(self, camera_id: str) -> None:
        super().__init__(camera_id, "a camera with this id is already running")


class CameraNotFound(CameraError):
    """No running camera has this id."""

    def __init__(self, camera_id: str) -> None:
        super().__init__(camera_id, "no running camera has this id")


class StoreError(FeedtagError):
    """The store could not be written or read."""


class StoreUnavailable(StoreError):
    """The database did not answer: down, refusing connections, or timed out. Transient:
    the writer spools and retries."""


class SpoolFull(StoreError):
    """The outage spool is at its size bound; what was offered to it was not stored."""


# FFmpeg reports HTTP and RTSP status codes as its own tagged error codes; PyAV maps them to
# classes named after them. Table: (PyAV class name, feedtag class, message).
_AV_CLASS_TABLE: dict[str, tuple[type[SourceError], str]] = {
    "HTTPUnauthorizedError": (SourceUnauthorized, "server answered 401 Unauthorized"),
    "HTTPForbiddenError": (SourceUnauthorized, "server answered 403 Forbidden"),
    "HTTPNotFoundError": (SourceNotFound, "server answered 404 Not Found"),
    "HTTPBadRequestError": (SourceNotFound, "server answered 400 Bad Request"),
    "HTTPOtherClientError": (SourceNotFound, "server answered with a 4xx error"),
    "HTTPServerError": (SourceError, "server answered with a 5xx error"),
    "InvalidDataError": (SourceInvalidData, "not a stream FFmpeg can read"),
    "ProtocolNotFoundError": (SourceRejected, "protocol not allowed"),
    "StreamNotFoundError": (SourceNotFound, "no such stream"),
    "DemuxerNotFoundError": (SourceInvalidData, "unknown container format"),
    "EOFError": (SourceEnded, "stream ended"),
    "ExitError": (SourceTimeout, "no answer within the timeout"),
}

# By errno, for the OS-level errors PyAV raises as OSError subclasses.
_ERRNO_TABLE: dict[int, tuple[type[SourceError], str]] = {
    errno_codes.ECONNREFUSED: (SourceRefused, "connection refused"),
    errno_codes.EHOSTUNREACH: (SourceRefused, "host unreachable"),
    errno_codes.ENETUNREACH: (SourceRefused, "network unreachable"),
    errno_codes.ECONNRESET: (SourceEnded, "connection reset by peer"),
    errno_codes.EPIPE: (SourceEnded, "connection closed"),
    errno_codes.ETIMEDOUT: (SourceTimeout, "no answer within the timeout"),
    errno_codes.ENOENT: (SourceNotFound, "no such file or stream"),
    errno_codes.EACCES: (SourceUnauthorized, "permission denied"),
    errno_codes.EIO: (SourceError, "input/output error"),
}


def source_error_from_av(exc: BaseException, masked_url: str, action: str) -> SourceError:
    """Translate a PyAV/OS error into a :class:`SourceError` without leaking its text.

    PyAV's messages embed the filename, that is the raw URL with its password, so only the
    error's class and errno are used. ``action`` says what was being done ("open", "read").

    >>> import errno
    >>> source_error_from_av(ConnectionRefusedError(errno.ECONNREFUSED, "x"), "rtsp://cam", "open")
    SourceRefused('open failed: connection refused (rtsp://cam)')
    """
    if isinstance(exc, SourceError):
        return exc
    for klass in type(exc).__mro__:
        entry = _AV_CLASS_TABLE.get(klass.__name__)
        if entry is not None:
            kind, text = entry
            return kind(f"{action} failed: {text}", masked_url)
    code: Any = getattr(exc, "errno", None)
    if isinstance(code, int) and code in _ERRNO_TABLE:
        kind, text = _ERRNO_TABLE[code]
        return kind(f"{action} failed: {text}", masked_url)
    if isinstance(exc, TimeoutError):
        return SourceTimeout(f"{action} failed: no answer within the timeout", masked_url)
    strerror = getattr(exc, "strerror", None)
    detail = strerror if isinstance(strerror, str) and strerror else type(exc).__name__
    return SourceError(f"{action} failed: {detail}", masked_url)
