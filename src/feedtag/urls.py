"""Camera URLs as values: parsed and validated once, credentials held as secrets.

A :class:`CameraUrl` is what config validation produces and what ingest opens. Its ``str``
and ``repr`` are the *masked* form; the real URL exists only as the return value of
:meth:`CameraUrl.render`, called at the moment PyAV opens the stream.

:func:`redact` is the one redaction function for free text (log lines, error messages):
it finds URL-like words and masks their userinfo password and secret-looking query values.
It is built on :mod:`urllib.parse`, not on a regex over the whole text.

This module sits beside ``core`` (not inside ``ingest``) because both ``config`` and
``ingest`` need it and ``config`` must not import a data-flow layer.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

from feedtag.errors import SourceRejected

MASK: Final = "***"

#: schemes feedtag opens; everything else FFmpeg understands (concat, subfile, pipe, data,
#: tcp, udp, rtmp, ...) is refused before anything is opened.
NETWORK_SCHEMES: Final = frozenset({"rtsp", "rtsps", "http", "https"})
ALLOWED_SCHEMES: Final = NETWORK_SCHEMES | {"file"}

#: FFmpeg protocol whitelist per scheme: what the demuxer may open *after* the first URL
#: (RTSP opens RTP/UDP; HLS opens segment URLs; nothing may reach file or pipe from a
#: network stream).
PROTOCOL_WHITELIST: Final = {
    "rtsp": "rtsp,rtp,srtp,tcp,udp",
    "rtsps": "rtsps,rtsp,rtp,srtp,tcp,udp,tls",
    "http": "http,https,tcp,tls,crypto,httpproxy",
    "https": "http,https,tcp,tls,crypto,httpproxy",
    "file": "file,crypto",
}

#: query keys whose values are secrets (compared lower-case, without "_" and "-").
SECRET_QUERY_KEYS: Final = frozenset(
    {
        "password", "passwd", "pass", "pwd", "token", "accesstoken", "authtoken", "auth",
        "key", "apikey", "secret", "clientsecret", "signature", "sig", "credential",
        "credentials", "session", "sessionid",
    }
)  # fmt: skip

_URL_WORD = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


def _is_secret_key(key: str) -> bool:
    return key.lower().replace("_", "").replace("-", "") in SECRET_QUERY_KEYS


@dataclass(frozen=True, slots=True)
class CameraUrl:
    """A validated camera URL. ``password`` and secret query values never leave unmasked.

    >>> url = CameraUrl.parse("rtsp://admin:p%40ss@cam.example:554/live?token=abc&ch=1")
    >>> str(url)
    'rtsp://admin:***@cam.example:554/live?token=***&ch=1'
    >>> url.render()
    'rtsp://admin:p%40ss@cam.example:554/live?token=abc&ch=1'
    """

    scheme: str
    host: str
    port: int | None
    path: str
    query: tuple[tuple[str, SecretStr | str], ...]
    username: str | None
    password: SecretStr | None
    file_path: Path | None = None

    @classmethod
    def parse(
        cls,
        raw: str,
        *,
        media_root: Path | None = None,
        username: str | None = None,
        password: SecretStr | None = None,
    ) -> CameraUrl:
        """Parse and validate ``raw``; raise :class:`SourceRejected` with a reason.

        A string without a scheme is a local file path. Local files must resolve (symlinks
        followed) inside ``media_root``; without a media root, files are refused.
        """
        if not isinstance(raw, str):
            raise SourceRejected("empty URL")
        problem = url_text_problem(raw)
        if problem is not None:
            raise SourceRejected(problem)
        scheme = scheme_of(raw)
        if scheme is None or scheme == "file":
            return cls._parse_file(raw, scheme, media_root)
        if scheme not in NETWORK_SCHEMES:
            allowed = ", ".join(sorted(ALLOWED_SCHEMES))
            raise SourceRejected(f"scheme {scheme!r} is not allowed (allowed: {allowed})")
        return cls._parse_network(raw, scheme, username, password)

    @classmethod
    def _parse_network(
        cls, raw: str, scheme: str, username: str | None, password: SecretStr | None
    ) -> CameraUrl:
        try:
            parts = urlsplit(raw)
            port = parts.port
        except ValueError as exc:
            raise SourceRejected(f"malformed URL: {_safe_reason(exc)}") from None
        host = parts.hostname or ""
        if not host:
            raise SourceRejected("URL has no host")
        if not _valid_host(host):
            raise SourceRejected(f"invalid host name {_shortened(host)!r}")
        if parts.fragment:
            raise SourceRejected("URL must not have a #fragment")
        url_user = unquote(parts.username) if parts.username else None
        url_password = unquote(parts.password) if parts.password is not None else None
        if username is not None and url_user is not None:
            raise SourceRejected("username given both in the URL and as a field")
        if password is not None and url_password is not None:
            raise SourceRejected("password given both in the URL and as a field")
        secret = password if password is not None else _secret_or_none(url_password)
        user = username if username is not None else url_user
        if secret is not None and user is None:
            raise SourceRejected("a password needs a username")
        query = tuple(
            (key, SecretStr(value) if _is_secret_key(key) else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        )
        return cls(scheme, host, port, parts.path or "/", query, user, secret)

    @classmethod
    def _parse_file(cls, raw: str, scheme: str | None, media_root: Path | None) -> CameraUrl:
        if scheme == "file":
            parts = urlsplit(raw)
            if parts.netloc not in ("", "localhost"):
                raise SourceRejected("file URLs must not name a host")
            if parts.query or parts.fragment:
                raise SourceRejected("file URLs must not have a query or fragment")
            raw_path = unquote(parts.path)
        else:
            raw_path = raw
        if ":" in raw_path.split("/", 1)[0]:
            # "concat:a|b", "subfile:...": FFmpeg reads the part before ':' as a protocol.
            protocol = raw_path.split(":", 1)[0]
            raise SourceRejected(f"{_shortened(protocol)!r} looks like an FFmpeg protocol")
        if media_root is None:
            raise SourceRejected("local files are only allowed under a configured media_root")
        root = Path(os.path.realpath(media_root))
        candidate = Path(raw_path)
        if not candidate.is_absolute():
            candidate = root / candidate
        resolved = Path(os.path.realpath(candidate))
        if not resolved.is_relative_to(root):
            # Not naming the root nor the resolved path: API callers must not learn server
            # paths from a refusal (the operator knows media_root from the config).
            raise SourceRejected("path is outside the media root")
        return cls("file", "", None, str(resolved), (), None, None, file_path=resolved)

    @property
    def is_file(self) -> bool:
        return self.scheme == "file"

    @property
    def protocol_whitelist(self) -> str:
        return PROTOCOL_WHITELIST[self.scheme]

    def render(self) -> str:
        """The real URL, credentials included. Call only to hand it to PyAV."""
        if self.file_path is not None:
            return f"file:{self.file_path}"
        return self._build(reveal=True)

    def masked(self) -> str:
        """The URL with the password and secret query values replaced by ``***``."""
        if self.file_path is not None:
            return str(self.file_path)
        return self._build(reveal=False)

    def _build(self, *, reveal: bool) -> str:
        netloc = self.host if ":" not in self.host else f"[{self.host}]"
        if self.port is not None:
            netloc = f"{netloc}:{self.port}"
        if self.username is not None:
            userinfo = quote(self.username, safe="")
            if self.password is not None:
                secret = self.password.get_secret_value() if reveal else MASK
                userinfo += ":" + (quote(secret, safe="") if reveal else secret)
            netloc = f"{userinfo}@{netloc}"
        pairs = []
        for key, value in self.query:
            if isinstance(value, SecretStr):
                pairs.append((key, value.get_secret_value() if reveal else MASK))
            else:
                pairs.append((key, value))
        query = urlencode(pairs, safe="*" if not reveal else "")
        return urlunsplit((self.scheme, netloc, self.path, query, ""))

    def __str__(self) -> str:
        return self.masked()

    def __repr__(self) -> str:
        return f"CameraUrl({self.masked()!r})"


def redact(text: str) -> str:
    """Mask credentials in every URL-like word of ``text``.

    >>> redact("open failed for rtsp://u:secret@10.0.0.5/s?pwd=x&ch=2, retrying")
    'open failed for rtsp://u:***@10.0.0.5/s?pwd=***&ch=2, retrying'
    """
    return _URL_WORD.sub(lambda match: _redact_url_word(match.group(0)), text)


class RedactingFilter(logging.Filter):
    """Masks credentials in a log record's message and traceback, whoever logged it.

    feedtag itself logs only masked URLs; this catches what a library or a traceback adds
    (PyAV's exception texts contain the raw URL). Attached to feedtag's ingest loggers and to
    the CLI's handler.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:  # redacted once, whether formatted here or by another handler
            record.exc_text = redact(record.exc_text)
        return True


def _redact_url_word(word: str) -> str:
    # Trailing punctuation belongs to the sentence, not the URL.
    stripped = word.rstrip(".,;:!?)]}")
    tail = word[len(stripped) :]
    try:
        parts = urlsplit(stripped)
    except ValueError:
        return stripped.split("://", 1)[0] + "://" + MASK + tail
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if has_password else f"{user}@{hostport}"
    # Mask values in place, so the rest of the text reads exactly as it was written.
    fields = []
    for field in parts.query.split("&") if parts.query else []:
        key, has_value, _ = field.partition("=")
        fields.append(f"{key}={MASK}" if has_value and _is_secret_key(unquote(key)) else field)
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(fields), parts.fragment)) + tail


def url_text_problem(raw: str) -> str | None:
    """Why ``raw`` is no camera URL whatever it names, or None: the checks on the text that
    :meth:`CameraUrl.parse` makes first.

    >>> url_text_problem("-i x.mp4")
    "URL must not start with '-' (it would read as an option)"
    """
    if not raw.strip():
        return "empty URL"
    if raw != raw.strip():
        return "URL has leading or trailing white space"
    if raw.startswith("-"):
        return "URL must not start with '-' (it would read as an option)"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        return "URL contains control characters"
    return None


def scheme_of(raw: str) -> str | None:
    """The lower-case scheme of ``raw``, or None when :meth:`CameraUrl.parse` reads it as a
    local file path.

    >>> scheme_of("RTSP://cam/x"), scheme_of("clips/a:b.mp4"), scheme_of("concat:a|b")
    ('rtsp', None, 'concat')
    """
    head, sep, _ = raw.partition(":")
    if not sep or not head:
        return None
    if len(head) == 1 and head.isalpha():
        return None  # a Windows drive letter, not a scheme
    if "/" in head:
        return None  # "dir/file:name.mp4" is a path
    return head.lower()


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    if len(host) > 253:
        return False
    labels = host.rstrip(".").split(".")
    return all(
        re.fullmatch(r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?", lb) for lb in labels
    )


def _shortened(text: str, limit: int = 40) -> str:
    """The caller's own input, echoed in an error, at most ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _secret_or_none(value: str | None) -> SecretStr | None:
    return None if value is None else SecretStr(value)


def _safe_reason(exc: ValueError) -> str:
    # urllib's messages quote the offending part, which may hold the password: keep only
    # the first clause.
    return str(exc).split(":", 1)[0]
