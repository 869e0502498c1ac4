"""Strict models of alert delivery: signed webhooks fed by the store's outbox.

A webhook URL is parsed here into a :class:`~feedtag.urls.CameraUrl` (the one URL value type,
whose ``str`` masks secret query values) and refused when it is hostile: a scheme other than
http(s), userinfo (``user:pass@``; the receiver authenticates feedtag by the signature, not
the other way round), control characters, a fragment. A literal address that the network
policy refuses (loopback, link-local, cloud metadata, in any spelling) and ``localhost`` are
refused unless ``alerts.allow_networks`` contains them; names are resolved and checked again
on every connection (:mod:`feedtag.alerts.webhooks`), since validation does no I/O.

>>> alerts = AlertsConfig.model_validate({
...     "allow_networks": ["127.0.0.0/8"],
...     "webhooks": [{"id": "ops", "url": "http://127.0.0.1:9000/hook",
...                   "secret": "0123456789abcdef", "kinds": ["camera_health"]}],
... })
>>> alerts.webhooks[0].event_kinds()[:2]
['camera_offline', 'camera_frozen']
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from dataclasses import dataclass
from typing import Annotated, Any, Final, Self
from urllib.parse import urlsplit

from pydantic import (
    Field,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from feedtag.addresses import refusal
from feedtag.config.base import StrictModel
from feedtag.core import EventKind
from feedtag.errors import SourceRejected
from feedtag.urls import CameraUrl, scheme_of, url_text_problem

ROUTE_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
WEBHOOK_SCHEMES: Final = frozenset({"http", "https"})
#: a kind name that stands for every camera-health kind
CAMERA_HEALTH: Final = "camera_health"
CAMERA_HEALTH_KINDS: Final = (
    EventKind.CAMERA_OFFLINE,
    EventKind.CAMERA_FROZEN,
    EventKind.CAMERA_COVERED,
    EventKind.CAMERA_MOVED,
)
ALERT_KINDS: Final = (*(kind.value for kind in EventKind), CAMERA_HEALTH)
MIN_SECRET_CHARS: Final = 16
DEFAULT_LINK_TTL_S: Final = 86_400
MAX_LINK_TTL_S: Final = 7 * 86_400
LOOPBACK_NAME: Final = "a loopback name"


def parse_webhook_url(value: Any) -> CameraUrl:
    """A webhook URL as a value, or ``ValueError`` saying why it is refused.

    >>> parse_webhook_url("ftp://hooks.example.org/x")
    Traceback (most recent call last):
    ...
    ValueError: scheme 'ftp' is not allowed for webhooks (allowed: http, https)
    """
    if isinstance(value, CameraUrl):
        return value
    _scheme(value, WEBHOOK_SCHEMES, "is not allowed for webhooks (allowed: http, https)")
    try:
        has_userinfo = "@" in urlsplit(value).netloc
    except ValueError:
        has_userinfo = False  # CameraUrl.parse names the problem
    if has_userinfo:
        # Not echoing the URL: the userinfo is likely a password.
        raise ValueError("webhook URLs must not contain user:password@; receivers check the "
                         "X-Feedtag-Signature header instead")  # fmt: skip
    try:
        return CameraUrl.parse(value)
    except SourceRejected as exc:
        raise ValueError(str(exc)) from None


WebhookUrlField = Annotated[
    CameraUrl,
    PlainValidator(parse_webhook_url),
    PlainSerializer(lambda url: url.masked(), return_type=str),
    WithJsonSchema({"type": "string", "description": "http:// or https:// URL of the receiver"}),
]


def literal_refusal(host: str) -> str | None:
    """Why a host written as an address (or ``localhost``) is refused by default, or None
    for a name (names are checked when they are resolved, at each connection).

    >>> literal_refusal("169.254.169.254"), literal_refusal("hooks.example.org")
    ('a cloud metadata address', None)
    """
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return LOOPBACK_NAME
    try:
        return refusal(ipaddress.ip_address(name.split("%", 1)[0]))
    except ValueError:
        return None


class WebhookConfig(StrictModel):
    """One webhook receiver and which events it is sent."""

    id: str = Field(
        pattern=ROUTE_ID_PATTERN,
        description="Unique route id (letters, digits, '_', '.', '-'); kept in the outbox.",
    )
    url: WebhookUrlField = Field(description="Where events are POSTed (http or https).")
    secret: SecretStr = Field(
        min_length=MIN_SECRET_CHARS,
        max_length=1024,
        description="HMAC-SHA256 key of the X-Feedtag-Signature header, e.g. "
        "${FEEDTAG_OPS_WEBHOOK_SECRET}; at least 16 characters. Never logged or stored.",
    )
    kinds: list[str] | None = Field(
        default=None,
        max_length=len(ALERT_KINDS),
        description="Event kinds to send (camera_health: every camera_* kind); default: all.",
    )
    cameras: list[str] | None = Field(
        default=None, max_length=10_000, description="Camera ids to send; default: all."
    )
    labels: list[str] | None = Field(
        default=None,
        max_length=1000,
        description="Send only events with one of these labels; default: any (or none).",
    )
    zones: list[str] | None = Field(
        default=None,
        max_length=1000,
        description="Send only events in one of these zones; default: any (or none).",
    )
    cooldown_s: float = Field(
        default=0,
        ge=0,
        le=86_400,
        description="After an event is queued for this webhook, later events of the same "
        "camera, kind and zone starting within this many seconds are not sent.",
    )

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str] | None) -> list[str] | None:
        for index, kind in enumerate(kinds or []):
            if kind not in ALERT_KINDS:
                raise ValueError(
                    f"kinds[{index}]: unknown event kind {kind[:40]!r} "
                    f"(known: {', '.join(ALERT_KINDS)})"
                )
        return kinds

    def event_kinds(self) -> list[str] | None:
        """The event kinds this webhook is sent (``camera_health`` expanded), None: all."""
        if self.kinds is None:
            return None
        expanded: list[str] = []
        for kind in self.kinds:
            names = [k.value for k in CAMERA_HEALTH_KINDS] if kind == CAMERA_HEALTH else [kind]
            expanded += [name for name in names if name not in expanded]
        return expanded


MQTT_SCHEMES: Final = {"mqtt": 1883, "mqtts": 8883}
#: the outbox route id of MQTT; no webhook may take it
MQTT_ROUTE: Final = "mqtt"
TOPIC_PATTERN: Final = r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$"


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """An MQTT broker: ``mqtt://host[:port]`` or ``mqtts://host[:port]`` (TLS)."""

    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def _scheme(value: Any, allowed: Collection[str], refusal: str) -> str:
    """The scheme of ``value``, URL text feedtag accepts with one of the ``allowed``
    schemes; ``ValueError`` otherwise (``refusal`` follows the scheme in the message)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a URL string, got {type(value).__name__}")
    problem = url_text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    scheme = scheme_of(value)
    if scheme is None or scheme not in allowed:
        raise ValueError(f"scheme {(scheme or '')[:20]!r} {refusal}")
    return scheme


def parse_broker_url(value: Any) -> BrokerAddress:
    """A broker URL as a value, or ``ValueError`` saying why it is refused.

    >>> str(parse_broker_url("mqtts://broker.example"))
    'mqtts://broker.example:8883'
    """
    if isinstance(value, BrokerAddress):
        return value
    scheme = _scheme(value, MQTT_SCHEMES, "is not allowed (allowed: mqtt, mqtts)")
    try:
        parts = urlsplit(value)
        port = parts.port or MQTT_SCHEMES[scheme]
    except ValueError:
        raise ValueError("malformed URL") from None
    if "@" in parts.netloc:
        raise ValueError("put the credentials in username and password, not in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("a broker URL is mqtt(s)://host[:port], without a path or query")
    try:
        # CameraUrl validates the host name the same way for every URL feedtag opens.
        host = CameraUrl.parse(f"http://{parts.netloc}/").host
    except SourceRejected as exc:
        raise ValueError(str(exc)) from None
    return BrokerAddress(host, port, scheme == "mqtts")


BrokerUrlField = Annotated[
    BrokerAddress,
    PlainValidator(parse_broker_url),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "description": "mqtt://host[:port] or mqtts://host[:port]"}),
]


class MqttConfig(StrictModel):
    """Events published to an MQTT broker (QoS 1), with Home Assistant discovery."""

    url: BrokerUrlField = Field(description="mqtt://host[:port], or mqtts:// for TLS.")
    username: str | None = Field(
        default=None, max_length=256, description="User name for the broker."
    )
    password: SecretStr | None = Field(
        default=None, max_length=1024, description="Password for the broker. Never logged."
    )
    topic_prefix: str = Field(
        default="feedtag",
        max_length=200,
        pattern=TOPIC_PATTERN,
        description="Events go to <prefix>/<camera>/events/<kind>; availability to "
        "<prefix>/status (online, or offline as the last will).",
    )
    client_id: str = Field(
        default="feedtag", pattern=ROUTE_ID_PATTERN, description="MQTT client id."
    )
    home_assistant: bool = Field(
        default=False,
        description="Publish Home Assistant discovery (an event entity per camera and kind).",
    )
    discovery_prefix: str = Field(
        default="homeassistant",
        max_length=200,
        pattern=TOPIC_PATTERN,
        description="Home Assistant's discovery prefix.",
    )
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keepalive.")

    @model_validator(mode="after")
    def _check_credentials(self) -> Self:
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        return self


class AlertsConfig(StrictModel):
    """Alert delivery: events queued in the store's outbox and sent to webhooks."""

    allow_networks: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="CIDRs that receivers may be on although they are loopback, link-local or "
        "metadata addresses (refused by default), e.g. [127.0.0.0/8].",
    )
    max_attempts: int = Field(
        default=10, ge=1, le=1000, description="Attempts per event and route; then it is dead."
    )
    timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="Give up one delivery attempt after this long."
    )
    initial_backoff_s: float = Field(
        default=2.0, gt=0, le=3600, description="Wait after the first failed attempt."
    )
    max_backoff_s: float = Field(
        default=600.0, gt=0, le=86_400, description="Longest wait between attempts."
    )
    webhooks: list[WebhookConfig] = Field(
        default_factory=list, max_length=100, description="Webhook receivers."
    )
    mqtt: MqttConfig | None = Field(
        default=None, description="An MQTT broker every event is published to (route 'mqtt')."
    )
    link_ttl_s: float = Field(
        default=DEFAULT_LINK_TTL_S,
        ge=60,
        le=MAX_LINK_TTL_S,
        description="How long the signed snapshot_url of an alert payload stays valid (needs "
        "api.public_url and api.link_key or FEEDTAG_SECRET_KEY; else snapshot_url is null).",
    )

    @field_validator("allow_networks")
    @classmethod
    def _check_networks(cls, networks: list[str]) -> list[str]:
        for index, network in enumerate(networks):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(
                    f"allow_networks[{index}]: {network[:60]!r} is not a CIDR like 127.0.0.0/8"
                ) from None
        return networks

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("max_backoff_s must be at least initial_backoff_s")
        seen: dict[str, int] = {}
        for index, hook in enumerate(self.webhooks):
            if hook.id == MQTT_ROUTE:
                raise ValueError(f"webhooks[{index}].id: {MQTT_ROUTE!r} is the MQTT route's id")
            if hook.id in seen:
                first = seen[hook.id]
                raise ValueError(
                    f"webhooks[{index}].id: {hook.id!r} is already used by webhooks[{first}]"
                )
            seen[hook.id] = index
        return self

    def refused_urls(self) -> list[str]:
        """Problems of webhook URLs written as addresses the network policy refuses, outside
        ``allow_networks``, each naming its field; the whole config refuses them (so that the
        message can name the full path).

        >>> alerts = AlertsConfig.model_validate({"webhooks": [{"id": "ops",
        ...     "url": "http://[::1]/", "secret": "0123456789abcdef"}]})
        >>> alerts.refused_urls()
        ["webhooks[0].url: host '::1' is a loopback address, outside alerts.allow_networks"]
        """
        networks = [ipaddress.ip_network(net, strict=False) for net in self.allow_networks]
        problems = []
        hosts = [
            (f"webhooks[{index}].url", hook.url.host) for index, hook in enumerate(self.webhooks)
        ]
        if self.mqtt is not None:
            hosts.append(("mqtt.url", self.mqtt.url.host))
        for field, host in hosts:
            reason = literal_refusal(host)
            if reason is None:
                continue
            name = host.strip("[]").split("%", 1)[0]
            address = ipaddress.ip_address("127.0.0.1" if reason == LOOPBACK_NAME else name)
            if not any(address in network for network in networks):
                problems.append(
                    f"{field}: host {host[:80]!r} is {reason}, outside alerts.allow_networks"
                )
        return problems

    def route_ids(self) -> list[str]:
        return [hook.id for hook in self.webhooks]
