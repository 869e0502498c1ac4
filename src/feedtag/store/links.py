"""Signed, expiring links to an event's stored snapshot, for receivers without a token.

A webhook or MQTT payload carries ``snapshot_url``: the API's snapshot route under
``api.public_url`` with three query values, ``expires`` (Unix seconds), ``route`` (the
outbox route the link was made for: a webhook id, or ``mqtt``) and ``sig``, the hex
HMAC-SHA256 of the canonical text ``feedtag-link-v1\\n<path>\\n<route>\\n<expires>``, where
``<path>`` is the API path (``/api/v1/events/<id>/snapshot.jpg``, without any prefix of the
public URL). The text does not depend on the HTTP method; only the snapshot route accepts
links, and only for GET: clips are never linked.

The HMAC key is derived with HKDF-SHA256 (label :data:`KEY_LABEL`) from ``api.link_key`` or,
when that is unset, from ``FEEDTAG_SECRET_KEY``, so the same secret never keys two things.
Without either there are no links: payloads carry ``snapshot_url: null``.

The query string is a credential for one image until it expires: it is never logged above
DEBUG (the API server's access log is off), and the API records each read through a link in
the audit log as ``link:<route>``.

>>> signer = LinkSigner.from_secret("a link key of at least thirty-two characters")
>>> links = SnapshotLinks("https://cams.example.org/feedtag", signer, ttl_s=3600)
>>> url = links.url("e1", "ops", now=1_800_000_000)
>>> url.split("?")[0]
'https://cams.example.org/feedtag/api/v1/events/e1/snapshot.jpg'
>>> query = dict(part.split("=") for part in url.split("?")[1].split("&"))
>>> query["expires"], query["route"]
('1800003600', 'ops')
>>> signer.verify(snapshot_path("e1"), "ops", query["expires"], query["sig"], now=1_800_000_000)
True
>>> signer.verify(snapshot_path("e2"), "ops", query["expires"], query["sig"], now=1_800_000_000)
False
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from feedtag.config.alerts import MAX_LINK_TTL_S, ROUTE_ID_PATTERN
from feedtag.config.models import FeedtagConfig
from feedtag.store.sealing import SECRET_KEY_VARIABLE

#: HKDF ``info``: keys derived for links never equal a key derived for anything else
KEY_LABEL: Final = b"feedtag snapshot links v1"
CANONICAL_PREFIX: Final = "feedtag-link-v1"
#: the API route that accepts links, relative to the API's root
SNAPSHOT_PATH: Final = "/api/v1/events/{event_id}/snapshot.jpg"
#: a link claiming an expiry further ahead than the longest ``alerts.link_ttl_s`` is refused,
#: even with a valid signature
MAX_TTL_S: Final = MAX_LINK_TTL_S
#: an expiry after the year 5138 is no expiry
_EXPIRES: Final = re.compile(r"[0-9]{1,11}")
_SIGNATURE: Final = re.compile(r"[0-9a-f]{64}")
_ROUTE: Final = re.compile(ROUTE_ID_PATTERN.removeprefix("^").removesuffix("$"))


def snapshot_path(event_id: str) -> str:
    """The API path of ``event_id``'s snapshot, as links sign it.

    >>> snapshot_path("e1")
    '/api/v1/events/e1/snapshot.jpg'
    """
    return SNAPSHOT_PATH.format(event_id=quote(event_id, safe=""))


class LinkSigner:
    """Signs and verifies link parameters with a key derived from a secret; keeps no state."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a link key has at least 32 bytes")
        self._key = key

    def __repr__(self) -> str:
        return "LinkSigner(<key>)"

    @classmethod
    def from_secret(cls, secret: str) -> LinkSigner:
        """A signer keyed with HKDF-SHA256(``secret``, info=:data:`KEY_LABEL`)."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_LABEL)
        return cls(hkdf.derive(secret.encode("utf-8")))

    def signature(self, path: str, route: str, expires: int) -> str:
        """The hex HMAC-SHA256 of the canonical text of (``path``, ``route``, ``expires``)."""
        text = f"{CANONICAL_PREFIX}\n{path}\n{route}\n{expires}".encode()
        return hmac.new(self._key, text, hashlib.sha256).hexdigest()

    def verify(
        self, path: str, route: str | None, expires: str | None, sig: str | None, *, now: float
    ) -> bool:
        """Whether the query values ``route``, ``expires`` and ``sig`` (as received, unparsed)
        sign ``path`` and have not expired at ``now``. Malformed values, an expiry further
        than :data:`MAX_TTL_S` ahead and a wrong signature are all just False; the signature
        is compared in constant time."""
        if route is None or expires is None or sig is None:
            return False
        if not (
            _ROUTE.fullmatch(route) and _EXPIRES.fullmatch(expires) and _SIGNATURE.fullmatch(sig)
        ):
            return False
        expiry = int(expires)
        if not now < expiry <= now + MAX_TTL_S:
            return False
        return hmac.compare_digest(self.signature(path, route, expiry), sig)


@dataclass(frozen=True, slots=True)
class SnapshotLinks:
    """Makes absolute signed snapshot links under ``base_url`` (``api.public_url``, without
    a trailing slash) that expire ``ttl_s`` after they are made."""

    base_url: str
    signer: LinkSigner
    ttl_s: float

    def url(self, event_id: str, route: str, *, now: float) -> str:
        """The link to ``event_id``'s snapshot for the receiver of ``route``."""
        path = snapshot_path(event_id)
        expires = int(now + self.ttl_s)
        query = urlencode(
            {"expires": expires, "route": route, "sig": self.signer.signature(path, route, expires)}
        )
        return f"{self.base_url}{path}?{query}"


def link_secret(config: FeedtagConfig, environ: Mapping[str, str]) -> str | None:
    """The secret link keys are derived from: ``api.link_key``, else ``FEEDTAG_SECRET_KEY``."""
    if config.api.link_key is not None:
        return config.api.link_key.get_secret_value()
    return environ.get(SECRET_KEY_VARIABLE) or None


def link_signer(config: FeedtagConfig, environ: Mapping[str, str]) -> LinkSigner | None:
    """The signer the API verifies links with, or None when no key is configured."""
    secret = link_secret(config, environ)
    return None if secret is None else LinkSigner.from_secret(secret)


def snapshot_links(config: FeedtagConfig, environ: Mapping[str, str]) -> SnapshotLinks | None:
    """What alert payloads make links with, or None when links are off (no public URL or
    no key; :func:`links_off_reason` says which)."""
    signer = link_signer(config, environ)
    if signer is None or config.api.public_url is None:
        return None
    return SnapshotLinks(config.api.public_url, signer, config.alerts.link_ttl_s)


def links_off_reason(config: FeedtagConfig, environ: Mapping[str, str]) -> str | None:
    """Why alert payloads carry ``snapshot_url: null``, with how to change it; None when
    links are on."""
    missing = []
    if config.api.public_url is None:
        missing.append("api.public_url (where receivers reach the API, https://...)")
    if link_secret(config, environ) is None:
        missing.append(f"api.link_key or {SECRET_KEY_VARIABLE} (the key that signs links)")
    if not missing:
        return None
    return (
        "alert payloads carry snapshot_url: null; to send signed, expiring snapshot links, "
        f"set {' and '.join(missing)}"
    )
