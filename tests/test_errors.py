from __future__ import annotations

import errno
import importlib
import pkgutil
import re
import sys

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


def _package_modules() -> list[str]:
    """Every module of the package that imports in the project's environment:
    ``bench/rtsp_server.py`` runs under the system Python (GStreamer), and the OpenVINO
    backend needs its optional extra."""
    import feedtag

    names = []
    for info in pkgutil.walk_packages(feedtag.__path__, "feedtag."):
        if info.name == "feedtag.bench.rtsp_server" or info.name.endswith(".__main__"):
            continue  # a script for the system Python; an entry point that runs on import
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            assert exc.name == "openvino", (info.name, exc)  # only the optional extra may miss
            continue
        names.append(info.name)
    return names


#: exceptions that may stay outside the tree, with the reason (see errors.py)
OUTSIDE_THE_TREE = {"feedtag.config.loading._LimitExceeded": "raised inside PyYAML's composer"}


def test_every_exception_class_is_in_the_tree_and_its_drawing() -> None:
    modules = _package_modules()
    assert "feedtag.vision.tracker" in modules and "feedtag.api.app" in modules
    found: list[str] = []
    for name in modules:
        for value in vars(sys.modules[name]).values():
            if not (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == name
            ):
                continue
            qualified = f"{name}.{value.__name__}"
            found.append(qualified)
            if qualified in OUTSIDE_THE_TREE:
                continue
            assert issubclass(value, errors.FeedtagError), f"{qualified} is not a FeedtagError"
            drawn = re.search(rf"(── | ){value.__name__}\s", errors.__doc__ or "")
            assert drawn, f"{qualified} is missing from the drawing in errors.py"
    assert "feedtag.errors.StoreUnavailable" in found and "feedtag.ingest.ring.ClipError" in found
