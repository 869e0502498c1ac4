"""MQTT delivery through the outbox with a real mosquitto broker on 127.0.0.1: QoS 1 events
on their topics, availability and its last will, reconnection, Home Assistant discovery."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine

from feedtag.alerts.dispatcher import AlertDispatcher
from feedtag.alerts.mqtt import MqttPublisher
from feedtag.config.alerts import AlertsConfig
from feedtag.core import Event, EventKind

from ..conftest import free_port, require_service, wait_for
from .test_dispatcher import T0, all_delivered, make_events, outbox, store_events

MOSQUITTO = "/usr/sbin/mosquitto"
BROKER_PASSWORD = "broker-password-do-not-leak"


class Broker:
    """A throwaway mosquitto: anonymous, no persistence, on 127.0.0.1 only."""

    def __init__(self, persistent: bool = False) -> None:
        self.port = free_port()
        # mosquitto started as root drops to the mosquitto user: its files must be readable.
        self.folder = Path(tempfile.mkdtemp(prefix="feedtag-mqtt-"))
        self.folder.chmod(0o755)
        self.conf = self.folder / "mosquitto.conf"
        settings = f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
        if persistent:  # sessions and their queued messages outlive a restart
            data = self.folder / "data"
            data.mkdir()
            data.chmod(0o777)
            settings += f"persistence true\npersistence_location {data}/\n"
        else:
            settings += "persistence false\n"
        self.conf.write_text(settings, encoding="utf-8")
        self.conf.chmod(0o644)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self._listening, 10, what="mosquitto listening")

    def _listening(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def broker() -> Iterator[Broker]:
    require_service(
        os.path.exists(MOSQUITTO), "mosquitto not installed (apt-get install mosquitto)"
    )
    made = Broker()
    yield made
    made.destroy()


class Subscriber:
    """A test client that records every message under the given topic filters."""

    def __init__(self, port: int, *filters: str, clean: bool = True) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        # clean=False: the broker keeps the subscription, and QoS 1 messages for it, while
        # this client is away (and across a restart of a persistent broker)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="feedtag-test-sub", clean_session=clean
        )
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda client, *_: [client.subscribe(f, qos=1) for f in filters]
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload, bool(message.retain)))

    def payloads(self, topic: str) -> list[bytes]:
        with self.lock:
            return [payload for name, payload, _ in self.messages if name == topic]

    def topics(self, prefix: str) -> list[str]:
        with self.lock:
            return [name for name, _, _ in self.messages if name.startswith(prefix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def alerts_for(port: int, **mqtt_options: Any) -> AlertsConfig:
    return AlertsConfig.model_validate({
        "allow_networks": ["127.0.0.0/8"],
        "max_attempts": 100,
        "timeout_s": 2,
        "initial_backoff_s": 0.1,
        "max_backoff_s": 0.5,
        "mqtt": {"url": f"mqtt://127.0.0.1:{port}", **mqtt_options},
    })  # fmt: skip


@pytest.mark.system
def test_events_published_at_qos1_after_the_broker_comes_up(
    engine: Engine, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alerts = alerts_for(
        broker.port, home_assistant=True, username="feedtag", password=BROKER_PASSWORD
    )
    items = make_events(4)
    store_events(engine, alerts, items)
    assert {row["route_id"] for row in outbox(engine)} == {"mqtt"}
    with AlertDispatcher(engine, alerts, cameras=["gate-1"], poll_interval_s=0.05) as dispatcher:
        wait_for(
            lambda: all(row["last_error"] for row in outbox(engine)), 10, what="attempts while down"
        )
        assert {row["last_error"] for row in outbox(engine)} == {"not connected to the MQTT broker"}
        broker.start()
        subscriber = Subscriber(broker.port, "feedtag/#", "homeassistant/#")
        try:
            wait_for(lambda: all_delivered(engine, len(items)), 20, what="every event published")
            assert dispatcher.stats().delivered == len(items)
            topic = "feedtag/gate-1/events/stopped_vehicle"
            wait_for(lambda: len(subscriber.payloads(topic)) >= len(items), 10, what="messages")
            received = {json.loads(p)["event_id"] for p in subscriber.payloads(topic)}
            assert received == {item.event_id for item in items}
            assert subscriber.payloads("feedtag/status")[-1] == b"online"
            discovery = subscriber.topics("homeassistant/event/")
            assert "homeassistant/event/feedtag_gate-1_stopped_vehicle/config" in discovery
            config = json.loads(
                subscriber.payloads("homeassistant/event/feedtag_gate-1_stopped_vehicle/config")[0]
            )
            assert config["state_topic"] == topic
            assert config["availability_topic"] == "feedtag/status"
        finally:
            subscriber.close()
    for text in [*caplog.messages, *(str(row) for row in outbox(engine))]:
        assert BROKER_PASSWORD not in text


@pytest.mark.system
def test_the_last_will_says_offline_and_the_publisher_reconnects(broker: Broker) -> None:
    broker.start()
    subscriber = Subscriber(broker.port, "feedtag/status")
    publisher = MqttPublisher(alerts_for(broker.port))
    publisher.start()
    try:
        wait_for(lambda: publisher.connected, 10, what="connected")
        wait_for(lambda: b"online" in subscriber.payloads("feedtag/status"), 10, what="online")
        # Cut the TCP connection without a DISCONNECT packet: the broker sends the will.
        sock = publisher._client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        wait_for(lambda: b"offline" in subscriber.payloads("feedtag/status"), 10, what="will")
        wait_for(
            lambda: subscriber.payloads("feedtag/status")[-1] == b"online", 15, what="reconnect"
        )
        publisher.publish(make_events(1)[0])  # PUBACK received, or this raises
    finally:
        publisher.stop()
        wait_for(lambda: subscriber.payloads("feedtag/status")[-1] == b"offline", 10)
        subscriber.close()


@pytest.mark.system
def test_a_broker_on_a_refused_address_is_never_connected(broker: Broker) -> None:
    broker.start()
    alerts = AlertsConfig.model_validate(
        {"mqtt": {"url": f"mqtt://broker.example.org:{broker.port}"}}
    )
    import ipaddress

    publisher = MqttPublisher(alerts, resolve=lambda host: [ipaddress.ip_address("127.0.0.1")])
    publisher.start()
    try:
        import time

        wait_for(lambda: publisher.last_error, 10, what="a refused connection")
        time.sleep(1.5)
        assert not publisher.connected
        assert publisher.last_error is not None
        assert publisher.last_error.startswith("refused by network policy")
        assert "alerts.allow_networks" in publisher.last_error
    finally:
        publisher.stop()


@pytest.mark.system
@pytest.mark.parametrize("restart_feedtag", [False, True], ids=["dispatcher-runs", "restarted"])
def test_nothing_is_lost_while_the_broker_restarts(engine: Engine, restart_feedtag: bool) -> None:
    """Events stored while the broker is down stay pending and are published once it is
    back: by the dispatcher that kept running, or by a new one (feedtag restarted in the
    meantime with a pending outbox). Every event reaches the subscriber, with its id: at least
    once (a QoS 1 message in flight when the broker stopped may come again after it)."""
    require_service(os.path.exists(MOSQUITTO), "mosquitto not installed")
    broker = Broker(persistent=True)
    alerts = alerts_for(broker.port)
    batches = [
        [Event(f"b{batch}-{i}", "gate-1", EventKind.CROWDING, "r", T0 + 10 * batch + i)
         for i in range(3)]
        for batch in range(3)
    ]  # fmt: skip
    topic = "feedtag/gate-1/events/crowding"
    broker.start()
    subscriber = Subscriber(broker.port, "feedtag/gate-1/#", clean=False)
    dispatcher = AlertDispatcher(engine, alerts, cameras=["gate-1"], poll_interval_s=0.05)
    dispatcher.start()
    try:
        wait_for(lambda: dispatcher.stats().pending == 0 and _connected(dispatcher), 10)
        store_events(engine, alerts, batches[0])
        wait_for(lambda: all_delivered(engine, 3), 10, what="the first batch")
        broker.stop()
        store_events(engine, alerts, batches[1])  # while the broker is down
        wait_for(lambda: _pending_errors(engine) == 3, 10, what="attempts while down")
        assert dispatcher.stats().pending == 3
        if restart_feedtag:
            dispatcher.stop()
            dispatcher = AlertDispatcher(engine, alerts, cameras=["gate-1"], poll_interval_s=0.05)
            dispatcher.start()
        broker.start()
        store_events(engine, alerts, batches[2])
        wait_for(lambda: all_delivered(engine, 9), 30, what="every event after the restart")
        wait_for(lambda: len(subscriber.payloads(topic)) >= 9, 15, what="the subscriber")
        received = Counter(json.loads(p)["event_id"] for p in subscriber.payloads(topic))
        assert set(received) == {item.event_id for batch in batches for item in batch}
        # and the outbox holds nothing back
        assert all(row["state"] == "delivered" for row in outbox(engine))
    finally:
        dispatcher.stop()
        subscriber.close()
        broker.destroy()


def _connected(dispatcher: AlertDispatcher) -> bool:
    mqtt_publisher = dispatcher._mqtt
    return mqtt_publisher is not None and mqtt_publisher.connected


def _pending_errors(engine: Engine) -> int:
    return sum(
        1 for row in outbox(engine) if row["state"] == "pending" and row["last_error"] is not None
    )


#: Home Assistant MQTT discovery, `event` platform (home-assistant.io/integrations/event.mqtt
#: and /integrations/mqtt, "Discovery"): each field feedtag sends, whether HA requires it,
#: and the type HA's schema takes. HA refuses a config without a required field, and
#: puts an entity in a device only when it has a unique_id and the device an identifier.
HA_EVENT_FIELDS: list[tuple[str, bool, type | tuple[type, ...]]] = [
    ("state_topic", True, str),
    ("event_types", True, list),
    ("name", False, (str, type(None))),
    ("unique_id", False, str),
    ("object_id", False, str),
    ("value_template", False, str),
    ("availability_topic", False, str),
    ("payload_available", False, str),
    ("payload_not_available", False, str),
    ("device", False, dict),
]
#: the `device` map: identifiers (or connections) is what groups the entities
HA_DEVICE_FIELDS: list[tuple[str, bool, type | tuple[type, ...]]] = [
    ("identifiers", True, (list, str)),
    ("name", False, str),
    ("manufacturer", False, str),
]
#: <discovery_prefix>/<component>/[<node_id>/]<object_id>/config
HA_DISCOVERY_TOPIC = re.compile(r"^[^/#+]+/event/(?:[A-Za-z0-9_-]+/)?[A-Za-z0-9_-]+/config$")


def _check_fields(payload: dict[str, Any], table: list[Any], where: str) -> None:
    known = {name for name, _, _ in table}
    assert set(payload) <= known, f"{where}: fields HA does not document: {set(payload) - known}"
    for name, required, kind in table:
        if required:
            assert name in payload, f"{where}: {name} is required"
        if name in payload:
            assert isinstance(payload[name], kind), f"{where}: {name} is {payload[name]!r}"


@pytest.mark.parametrize("camera", ["gate-1", "hall.2", "Lobby_3"])
def test_home_assistant_discovery_configs_follow_the_documented_schema(camera: str) -> None:
    from feedtag.alerts.mqtt import discovery_messages
    from feedtag.config.alerts import MqttConfig

    config = MqttConfig.model_validate(
        {"url": "mqtt://broker.example", "home_assistant": True, "topic_prefix": "site/a"}
    )
    messages = discovery_messages(config, [camera])
    assert len(messages) == len(EventKind)
    unique_ids = set()
    for topic, text in messages:
        assert HA_DISCOVERY_TOPIC.match(topic), topic
        payload = json.loads(text)
        _check_fields(payload, HA_EVENT_FIELDS, topic)
        _check_fields(payload["device"], HA_DEVICE_FIELDS, f"{topic} device")
        kind = payload["event_types"][0]
        assert payload["state_topic"] == f"site/a/{camera}/events/{kind}"
        assert payload["availability_topic"] == "site/a/status"
        assert (payload["payload_available"], payload["payload_not_available"]) == (
            "online", "offline",
        )  # fmt: skip
        assert topic.split("/")[-2] == payload["object_id"]
        unique_ids.add(payload["unique_id"])
        # the template HA renders with the message: the event's kind as the event type
        assert "value_json.kind" in payload["value_template"]
        assert "event_type" in payload["value_template"]
    assert len(unique_ids) == len(messages)  # one entity per kind, never merged
