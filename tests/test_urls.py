from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from pydantic import SecretStr

from feedtag.errors import SourceRejected
from feedtag.urls import CameraUrl, RedactingFilter, redact

PASSWORD = "p@ss:w%21rd"
# every form the password could leak in: raw, percent-encoded (both ways), half-decoded
PASSWORD_FORMS = {PASSWORD, quote(PASSWORD, safe=""), quote_plus(PASSWORD), "p%40ss%3Aw%21rd"}


def assert_no_password(text: str) -> None:
    for form in PASSWORD_FORMS:
        assert form not in text, f"password form {form!r} leaked in {text!r}"


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("concat:/a.mp4|/b.mp4", "scheme 'concat' is not allowed"),
        ("subfile:,,start,0,end,0,,:/etc/passwd", "scheme 'subfile' is not allowed"),
        ("pipe:0", "scheme 'pipe' is not allowed"),
        ("exec:/bin/sh", "scheme 'exec' is not allowed"),
        ("data:video/mp4;base64,AAAA", "scheme 'data' is not allowed"),
        ("tcp://127.0.0.1:9000", "scheme 'tcp' is not allowed"),
        ("udp://0.0.0.0:5000", "scheme 'udp' is not allowed"),
        ("rtmp://host/live", "scheme 'rtmp' is not allowed"),
        ("gopher://host/", "scheme 'gopher' is not allowed"),
        ("CONCAT:/a.mp4", "scheme 'concat' is not allowed"),
        ("-i /etc/passwd", "must not start with '-'"),
        ("-f lavfi", "must not start with '-'"),
        ("", "empty URL"),
        (" rtsp://cam/x", "white space"),
        ("rtsp://cam/x\nexec", "control characters"),
        ("rtsp:///nohost", "no host"),
        ("rtsp://bad host/x", "invalid host"),
        ("rtsp://cam:99999/x", "malformed URL"),
        ("rtsp://cam/x#frag", "fragment"),
        ("http://:secret@cam/x", "needs a username"),
        ("/etc/passwd", "outside the media root"),
        ("../../etc/passwd", "outside the media root"),
        ("file:///etc/passwd", "outside the media root"),
        ("file://otherhost/x.mp4", "must not name a host"),
        ("a:b.mp4", "looks like an FFmpeg protocol"),
    ],
)
def test_hostile_urls_are_rejected(url: str, error: str, tmp_path: Path) -> None:
    with pytest.raises(SourceRejected, match=error):
        CameraUrl.parse(url, media_root=tmp_path)


def test_files_need_a_media_root() -> None:
    with pytest.raises(SourceRejected, match="media_root"):
        CameraUrl.parse("clip.mp4")


def test_symlink_out_of_the_media_root_is_rejected(tmp_path: Path) -> None:
    root = tmp_path / "media"
    root.mkdir()
    (root / "escape.mp4").symlink_to("/etc/hostname")
    with pytest.raises(SourceRejected, match="outside the media root"):
        CameraUrl.parse("escape.mp4", media_root=root)


@pytest.mark.parametrize(
    ("raw", "scheme", "masked"),
    [
        ("rtsp://cam.local:554/Streaming/101", "rtsp", "rtsp://cam.local:554/Streaming/101"),
        ("rtsps://10.1.2.3/live", "rtsps", "rtsps://10.1.2.3/live"),
        ("http://cam/mjpg/video.mjpg", "http", "http://cam/mjpg/video.mjpg"),
        ("https://cdn.example/live/index.m3u8", "https", "https://cdn.example/live/index.m3u8"),
        ("rtsp://[::1]:8554/x", "rtsp", "rtsp://[::1]:8554/x"),
        ("rtsp://u:pw@cam/x?ch=1&pwd=z", "rtsp", "rtsp://u:***@cam/x?ch=1&pwd=***"),
    ],
)
def test_allowed_urls(raw: str, scheme: str, masked: str) -> None:
    url = CameraUrl.parse(raw)
    assert url.scheme == scheme
    assert str(url) == masked
    assert repr(url) == f"CameraUrl({masked!r})"


def test_local_file_inside_media_root(tmp_path: Path) -> None:
    (tmp_path / "clip.mp4").write_bytes(b"")
    url = CameraUrl.parse("clip.mp4", media_root=tmp_path)
    assert url.is_file
    assert url.render() == f"file:{tmp_path.resolve() / 'clip.mp4'}"
    assert url.protocol_whitelist == "file,crypto"


def test_password_in_userinfo_and_query_renders_only_on_demand() -> None:
    encoded = quote(PASSWORD, safe="")
    url = CameraUrl.parse(f"rtsp://admin:{encoded}@cam:554/live?password={encoded}&ch=2")
    assert url.password is not None and url.password.get_secret_value() == PASSWORD
    assert_no_password(str(url))
    assert_no_password(repr(url))
    rendered = url.render()
    assert CameraUrl.parse(rendered).password == url.password
    assert f"password={encoded}" in rendered


def test_password_as_field() -> None:
    url = CameraUrl.parse("rtsp://cam/x", username="admin", password=SecretStr(PASSWORD))
    assert url.render() == f"rtsp://admin:{quote(PASSWORD, safe='')}@cam/x"
    assert_no_password(str(url))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"password": SecretStr("x")}, "needs a username"),
        ({"username": "a"}, "username given both"),
    ],
)
def test_credential_fields_conflict(kwargs: dict[str, object], error: str) -> None:
    raw = "rtsp://cam/x" if "username" not in kwargs else "rtsp://b@cam/x"
    with pytest.raises(SourceRejected, match=error):
        CameraUrl.parse(raw, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        f"failed: rtsp://admin:{quote(PASSWORD, safe='')}@10.0.0.5/s",
        f"'http://cam/x?token={quote(PASSWORD, safe='')}&ch=1' refused",
        f"rtsp://admin:{quote_plus(PASSWORD)}@h/x and https://u:{quote(PASSWORD, safe='')}@h/",
    ],
)
def test_redact_masks_free_text(text: str) -> None:
    out = redact(text)
    assert_no_password(out)
    assert "***" in out


@pytest.mark.parametrize(
    "text",
    [
        f"failed: rtsp://admin:{quote(PASSWORD, safe='')}@10.0.0.5/s",
        f"'http://cam/x?token={quote(PASSWORD, safe='')}&ch=1' refused",
    ],
)
def test_redact_is_idempotent(text: str) -> None:
    # RedactingFilter redacts a traceback text that another handler may have redacted already
    once = redact(text)
    assert redact(once) == once


def test_redact_leaves_plain_text_alone() -> None:
    text = "camera door: online (receiving frames) at http://cam/x?ch=1"
    assert redact(text) == text


def test_redacting_filter_masks_message_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("feedtag.tests.redaction")
    logger.addFilter(RedactingFilter())
    encoded = quote(PASSWORD, safe="")
    try:
        raise ValueError(f"could not open 'rtsp://admin:{encoded}@cam/x?token={encoded}'")
    except ValueError:
        logger.exception("camera rtsp://admin:%s@cam/x failed", encoded)
    assert caplog.records and "***" in caplog.text
    assert_no_password(caplog.text)
