"""MQTT delivery through the outbox with a real mosquitto broker on 127.0.0.1: QoS 1 events
on their topics, availability and its last will, reconnection, Home Assistant discovery."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
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

from ..conftest import free_port, require_service, wait_for
from .test_dispatcher import all_delivered, make_events, outbox, store_events

MOSQUITTO = "/usr/sbin/mosquitto"
BROKER_PASSWORD = "broker-password-do-not-leak"


class Broker:
    """A throwaway mosquitto: anonymous, no persistence, on 127.0.0.1 only."""

    def __init__(self) -> None:
        self.port = free_port()
        # mosquitto started as root drops to the mosquitto user: its files must be readable.
        self.folder = Path(tempfile.mkdtemp(prefix="feedtag-mqtt-"))
        self.folder.chmod(0o755)
        self.conf = self.folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n",
            encoding="utf-8",
        )
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

    def __init__(self, port: int, *filters: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="feedtag-test-sub")
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
