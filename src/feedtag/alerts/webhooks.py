"""Signed webhook delivery: the body, its signature, and one POST through the network policy.

The body is the event as the API shows it (``feedtag.api.events.event_view``), never with
raw media or a media path: the server-side paths in ``attributes`` are removed, there is no
``clip_url``, and ``snapshot_url`` is an absolute, signed link that expires
(:class:`~feedtag.store.links.SnapshotLinks`; the receiver fetches the anonymized snapshot
with it, no token needed) for an event with a snapshot when links are configured, else null.

Each POST carries ``X-Feedtag-Event-Id`` and ``X-Feedtag-Signature: t=<unix seconds>,
v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the webhook's secret>``. The receiver checks
the HMAC and that ``t`` is recent (:func:`verify_signature`).

Where the request goes is decided here, not by the HTTP client: the host is resolved and
every address checked against the :class:`~feedtag.ingest.netpolicy.NetworkPolicy` built
from ``alerts.allow_networks``, and the request is sent to the checked address itself
(``Host`` header and TLS server name stay the webhook's host, so certificates are verified
against the name). The request is handed to httpx's transport itself, not to an
``httpx.Client``: the transport never follows redirects and never reads proxies from the
environment, and it does not log the request URL, which the client does at INFO (a webhook
URL's path or query is often its credential, as with chat services' incoming webhooks).

>>> body = b'{"event_id":"e1"}'
>>> header = signature_header(b"0123456789abcdef", body, timestamp=1700000000)
>>> header[:15]
't=1700000000,v1'
>>> verify_signature(b"0123456789abcdef", header, body, now=1700000010)
True
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import ssl
from dataclasses import dataclass
from typing import Any, Final

import httpx

from feedtag.config.alerts import AlertsConfig, WebhookConfig
from feedtag.core import Event
from feedtag.errors import FeedtagError, SourceRejected
from feedtag.ingest.netpolicy import NetworkPolicy, PolicyRefused, Resolver, resolve_host
from feedtag.store.links import SnapshotLinks

log = logging.getLogger(__name__)

EVENT_ID_HEADER: Final = "X-Feedtag-Event-Id"
SIGNATURE_HEADER: Final = "X-Feedtag-Signature"
#: attributes that name server-side media files; never sent
MEDIA_ATTRIBUTES: Final = frozenset({"snapshot", "clip"})
DEFAULT_TOLERANCE_S: Final = 300.0
USER_AGENT: Final = "feedtag-webhook/1"
ALLOW_SETTING: Final = "alerts.allow_networks"


class DeliveryFailed(FeedtagError):
    """One delivery attempt failed. The message is safe to store and log: it never holds the
    URL, its query or the secret."""


def event_payload(event: Event, snapshot_url: str | None = None) -> dict[str, Any]:
    """The JSON object POSTed for ``event``: the API's event fields, media paths left out,
    and ``snapshot_url`` (a signed link, :func:`snapshot_link`, or None).

    >>> from feedtag.core import EventKind
    >>> e = Event("e1", "gate", EventKind.DWELL, "r", 1.0e9, attributes={"snapshot": "a.jpg"})
    >>> payload = event_payload(e)
    >>> sorted(payload) == sorted([*e.to_dict(), "snapshot_url"]), payload["attributes"]
    (True, {})
    """
    payload = event.to_dict()
    payload["attributes"] = {
        key: value for key, value in payload["attributes"].items() if key not in MEDIA_ATTRIBUTES
    }
    payload["snapshot_url"] = snapshot_url
    return payload


def event_body(event: Event, snapshot_url: str | None = None) -> bytes:
    """The exact bytes POSTed (and signed) for ``event``."""
    payload = event_payload(event, snapshot_url)
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def snapshot_link(
    links: SnapshotLinks | None, event: Event, route: str, *, now: float
) -> str | None:
    """The signed link to ``event``'s snapshot for the receiver of ``route``; None when
    links are off or the event has no snapshot (clips are never linked)."""
    if links is None or not event.attributes.get("snapshot"):
        return None
    return links.url(event.event_id, route, now=now)


def _digest(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: bytes, body: bytes, *, timestamp: int) -> str:
    """The ``X-Feedtag-Signature`` value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify_signature(
    secret: bytes,
    header: str,
    body: bytes,
    *,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance_s`` of ``now``."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(_digest(secret, timestamp, body), fields.get("v1", ""))


def _failure_of(error: httpx.HTTPError, timeout_s: float) -> str:
    """A stored reason for a transport error: its kind, never its text (httpx puts the
    request URL into some messages)."""
    if _caused_by_tls(error):
        return "TLS handshake failed (certificate not valid for the host, or not trusted)"
    for kind, reason in (
        (httpx.TimeoutException, f"timed out after {timeout_s:g} s"),
        (httpx.ConnectError, "could not connect"),
        (httpx.RemoteProtocolError, "the receiver broke the HTTP protocol"),
        (httpx.ProxyError, "proxy error"),
    ):
        if isinstance(error, kind):
            return reason
    return f"transport error ({type(error).__name__})"


def _caused_by_tls(error: BaseException) -> bool:
    seen: BaseException | None = error
    for _ in range(10):  # a short chain: httpx <- httpcore <- ssl
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@dataclass(frozen=True, slots=True)
class Delivery:
    """A successful delivery: the receiver's status code."""

    status_code: int


class WebhookSender:
    """Sends one event to one webhook per :meth:`send`. Owns an ``httpx.Client``; close it
    with :meth:`close`."""

    def __init__(
        self,
        alerts: AlertsConfig,
        *,
        resolve: Resolver = resolve_host,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._timeout_s = alerts.timeout_s
        self._policy = NetworkPolicy.allowing(alerts.allow_networks, allow_setting=ALLOW_SETTING)
        self._resolve = resolve
        self._transport = transport or httpx.HTTPTransport(retries=0)

    def close(self) -> None:
        self._transport.close()

    def send(
        self, hook: WebhookConfig, event: Event, *, now: float, snapshot_url: str | None = None
    ) -> Delivery:
        """POST ``event`` (with ``snapshot_url``) to ``hook``; :class:`DeliveryFailed` unless
        the answer is 2xx."""
        body = event_body(event, snapshot_url)
        secret = hook.secret.get_secret_value().encode()
        headers = {
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            EVENT_ID_HEADER: event.event_id,
            SIGNATURE_HEADER: signature_header(secret, body, timestamp=int(now)),
        }
        url, extensions, host_header = self._pinned(hook)
        headers["Host"] = host_header
        extensions["timeout"] = httpx.Timeout(self._timeout_s).as_dict()
        request = httpx.Request("POST", url, content=body, headers=headers, extensions=extensions)
        try:
            response = self._transport.handle_request(request)
            status = response.status_code
            response.close()  # the receiver's body is not read
        except httpx.HTTPError as error:
            raise DeliveryFailed(_failure_of(error, self._timeout_s)) from None
        if 200 <= status < 300:
            return Delivery(status)
        if 300 <= status < 400:
            raise DeliveryFailed(f"HTTP {status} (redirects are not followed)")
        raise DeliveryFailed(f"HTTP {status}")

    def _pinned(self, hook: WebhookConfig) -> tuple[httpx.URL, dict[str, Any], str]:
        """The request URL with the host replaced by a checked address, the request
        extensions (TLS server name) and the ``Host`` header."""
        host = hook.url.host
        try:
            address = self._policy.check(host, self._resolve)[0]
        except PolicyRefused as refused:
            log.warning("webhook %s: %s", hook.id, refused.detail)
            raise DeliveryFailed(f"refused by network policy: {refused.detail}") from None
        except SourceRejected as error:
            raise DeliveryFailed(error.message) from None
        url = httpx.URL(hook.url.render())
        host_header = url.netloc.decode("ascii")
        extensions: dict[str, Any] = {}
        if url.scheme == "https":
            extensions["sni_hostname"] = host.strip("[]")
        return url.copy_with(host=str(address)), extensions, host_header
