from __future__ import annotations

import errno

import av.error
import pytest

from feedtag import errors
from feedtag.errors import source_error_from_av

RAW_URL = "rtsp://admin:hunter2@cam/x"


def av_error(name: str, code: int, message: str) -> Exception:
    klass = getattr(av.error, name)
    return klass(code, message, RAW_URL)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("exc", "kind", "text"),
    [
        (av_error("HTTPUnauthorizedError", -825242872, "401"), errors.SourceUnauthorized, "401"),
        (av_error("HTTPForbiddenError", -858797304, "403"), errors.SourceUnauthorized, "403"),
        (av_error("HTTPNotFoundError", -875574520, "404"), errors.SourceNotFound, "404"),
        (av_error("InvalidDataError", -1094995529, "bad"), errors.SourceInvalidData, "not a stream"),
        (av_error("ExitError", -1414092869, "exit"), errors.SourceTimeout, "timeout"),
        (av_error("ConnectionRefusedError", errno.ECONNREFUSED, "r"), errors.SourceRefused, "refused"),
        (av_error("FileNotFoundError", errno.ENOENT, "n"), errors.SourceNotFound, "no such"),
        (av_error("TimeoutError", errno.ETIMEDOUT, "t"), errors.SourceTimeout, "timeout"),
        (av_error("ConnectionResetError", errno.ECONNRESET, "x"), errors.SourceEnded, "reset"),
        (RuntimeError("odd"), errors.SourceError, "RuntimeError"),
    ],
)  # fmt: skip
def test_av_errors_are_translated_without_their_text(
    exc: Exception, kind: type[errors.SourceError], text: str
) -> None:
    assert "hunter2" in str(exc) or isinstance(exc, RuntimeError)
    translated = source_error_from_av(exc, "rtsp://admin:***@cam/x", "open")
    assert type(translated) is kind
    assert text in str(translated)
    assert "hunter2" not in str(translated)
    assert translated.url == "rtsp://admin:***@cam/x"


def test_tree() -> None:
    for klass in (errors.ConfigError, errors.SourceError, errors.DecodeError, errors.StoreError):
        assert issubclass(klass, errors.FeedtagError)
    assert issubclass(errors.SourceStalled, errors.SourceError)
