"""MQTT delivery: each event on ``<prefix>/<camera>/events/<kind>`` at QoS 1.

The outbox route ``mqtt`` goes through :class:`MqttPublisher`; a row is delivered once the
broker acknowledged the message (PUBACK), so a broker that is down only delays events.
Availability is ``<prefix>/status``: ``online`` (retained) after each connection, and
``offline`` as the last will, which the broker publishes when feedtag disappears without
saying goodbye (and feedtag publishes when it stops). paho-mqtt's network thread reconnects
by itself, waiting from 1 s doubling up to 60 s between attempts.

With ``home_assistant: true`` every connection also publishes retained Home Assistant
discovery configs: one ``event`` entity per camera and event kind, on the event's topic,
available while ``<prefix>/status`` is ``online``.

The broker is held to the network policy like webhooks: its name is resolved and every
address checked before each (re)connection. A plain ``mqtt://`` connection goes to the
checked address; ``mqtts://`` connects by name, because TLS verifies the certificate against
the name (an address the name later resolves to must present a valid certificate for it).

>>> from feedtag.config.alerts import MqttConfig
>>> from feedtag.core import Event, EventKind
>>> config = MqttConfig.model_validate({"url": "mqtt://broker.example"})
>>> event_topic(config, Event("e1", "gate-1", EventKind.CROWDING, "r", 1.7e9))
'feedtag/gate-1/events/crowding'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import ssl
import threading
from collections.abc import Sequence
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from feedtag.alerts.webhooks import ALLOW_SETTING, DeliveryFailed, event_body
from feedtag.config.alerts import AlertsConfig, MqttConfig
from feedtag.core import Event, EventKind
from feedtag.errors import SourceRejected
from feedtag.ingest.netpolicy import NetworkPolicy, PolicyRefused, Resolver, resolve_host

log = logging.getLogger(__name__)

QOS: Final = 1
RECONNECT_MIN_S: Final = 1
RECONNECT_MAX_S: Final = 60
ONLINE: Final = "online"
OFFLINE: Final = "offline"
DEFAULT_STOP_TIMEOUT_S: Final = 5.0


def event_topic(config: MqttConfig, event: Event) -> str:
    """Where ``event`` is published (camera ids and kinds hold no MQTT wildcards)."""
    return f"{config.topic_prefix}/{event.camera_id}/events/{event.kind.value}"


def status_topic(config: MqttConfig) -> str:
    return f"{config.topic_prefix}/status"


def discovery_object_id(unique_id: str) -> str:
    """The discovery topic's object id: Home Assistant takes only ``[A-Za-z0-9_-]`` there,
    and camera ids may hold dots, so other characters become ``_`` and a short hash of the
    whole id keeps two such ids apart.

    >>> discovery_object_id("feedtag_gate-1_crowding")
    'feedtag_gate-1_crowding'
    >>> discovery_object_id("feedtag_hall.2_crowding")
    'feedtag_hall_2_crowding_1661a8'
    """
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", unique_id)
    if safe == unique_id:
        return unique_id
    return f"{safe}_{hashlib.sha256(unique_id.encode()).hexdigest()[:6]}"


def discovery_messages(config: MqttConfig, cameras: Sequence[str]) -> list[tuple[str, str]]:
    """(topic, JSON payload) of the Home Assistant discovery config of every camera and kind.

    >>> config = MqttConfig.model_validate({"url": "mqtt://b.example", "home_assistant": True})
    >>> topic, payload = discovery_messages(config, ["gate-1"])[0]
    >>> topic, json.loads(payload)["state_topic"]
    ('homeassistant/event/feedtag_gate-1_zone_enter/config', 'feedtag/gate-1/events/zone_enter')
    """
    messages = []
    for camera in cameras:
        for kind in EventKind:
            unique_id = f"{config.client_id}_{camera}_{kind.value}"
            object_id = discovery_object_id(unique_id)
            payload = {
                "name": kind.value.replace("_", " "),
                "unique_id": unique_id,
                "object_id": object_id,
                "state_topic": f"{config.topic_prefix}/{camera}/events/{kind.value}",
                "event_types": [kind.value],
                "value_template": "{{ {'event_type': value_json.kind} | tojson }}",
                "availability_topic": status_topic(config),
                "payload_available": ONLINE,
                "payload_not_available": OFFLINE,
                "device": {
                    "identifiers": [f"{config.client_id}_{camera}"],
                    "name": camera,
                    "manufacturer": "feedtag",
                },
            }
            topic = f"{config.discovery_prefix}/event/{object_id}/config"
            messages.append((topic, json.dumps(payload, separators=(",", ":"))))
    return messages


class MqttPublisher:
    """One MQTT connection for alerts; ``start()`` connects in the background, ``stop()``
    says ``offline`` and disconnects."""

    def __init__(
        self,
        alerts: AlertsConfig,
        cameras: Sequence[str] = (),
        *,
        resolve: Resolver = resolve_host,
    ) -> None:
        if alerts.mqtt is None:
            raise ValueError("alerts.mqtt is not configured")
        self._config = alerts.mqtt
        self._cameras = list(cameras)
        self._timeout_s = alerts.timeout_s
        self._policy = NetworkPolicy.allowing(alerts.allow_networks, allow_setting=ALLOW_SETTING)
        self._resolve = resolve
        self._connected = threading.Event()
        #: why the last connection attempt failed (no secrets), None after a success
        self.last_error: str | None = None
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        config = self._config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=True,
        )
        if config.username is not None:
            password = config.password.get_secret_value() if config.password else None
            client.username_pw_set(config.username, password)
        if config.url.tls:
            client.tls_set_context(ssl.create_default_context())
        client.will_set(status_topic(config), OFFLINE, qos=QOS, retain=True)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_pre_connect = self._on_pre_connect
        return client

    def start(self) -> None:
        """Connect in the background (paho's network thread); returns at once."""
        self._client.connect_async(
            self._config.url.host, self._config.url.port, self._config.keepalive_s
        )
        self._client.loop_start()

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        if self._connected.is_set():
            info = self._client.publish(status_topic(self._config), OFFLINE, qos=QOS, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # the last will says the same
                info.wait_for_publish(timeout)
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def publish(self, event: Event, snapshot_url: str | None = None) -> None:
        """Publish ``event`` (the webhook body, with ``snapshot_url``) at QoS 1 and wait for
        the broker's PUBACK; :class:`DeliveryFailed` when not connected or not acknowledged
        in ``timeout_s``."""
        if not self._connected.is_set():
            raise DeliveryFailed("not connected to the MQTT broker")
        body = event_body(event, snapshot_url)
        info = self._client.publish(event_topic(self._config, event), body, qos=QOS)
        try:
            info.wait_for_publish(self._timeout_s)
        except (RuntimeError, ValueError) as error:
            raise DeliveryFailed(f"MQTT publish failed: {error}") from None
        if not info.is_published():
            raise DeliveryFailed(f"no PUBACK from the MQTT broker within {self._timeout_s:g} s")

    # -- paho callbacks (its network thread) ---------------------------------------------

    def _on_pre_connect(self, client: mqtt.Client, _userdata: Any) -> None:
        """Check the broker's addresses before every (re)connection; pin plain connections
        to the checked address."""
        host = self._config.url.host
        try:
            addresses = self._policy.check(host, self._resolve)
        except PolicyRefused as refused:
            log.warning("MQTT broker: %s", refused.detail)
            self.last_error = f"refused by network policy: {refused.detail}"
            raise OSError(f"refused by network policy: {refused.detail}") from None
        except SourceRejected as error:
            self.last_error = error.message
            raise OSError(error.message) from None
        if not self._config.url.tls:
            client._host = str(addresses[0])  # paho connects to _host next

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("MQTT broker refused the connection: %s", reason)
            self.last_error = f"the broker refused the connection: {reason}"
            return
        self.last_error = None
        client.publish(status_topic(self._config), ONLINE, qos=QOS, retain=True)
        if self._config.home_assistant:
            for topic, payload in discovery_messages(self._config, self._cameras):
                client.publish(topic, payload, qos=QOS, retain=True)
        self._connected.set()
        log.info("MQTT broker connected: %s", self._config.url)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if self._connected.is_set():
            log.warning("MQTT broker disconnected (%s); reconnecting", reason)
        self._connected.clear()
