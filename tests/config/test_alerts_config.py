"""The ``alerts:`` section: what is accepted, and what ``feedtag check`` refuses with the
field named (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from feedtag.cli import main
from feedtag.config import config_json_schema, parse_config
from feedtag.errors import ConfigError

SECRET = "s3cret-webhook-key-0123456789"
ENV = {"FEEDTAG_OPS_WEBHOOK_SECRET": SECRET}


def config_with(hook: dict[str, Any], **alerts: Any) -> dict[str, Any]:
    webhook = {"id": "ops", "url": "https://hooks.example.org/feedtag",
               "secret": "${FEEDTAG_OPS_WEBHOOK_SECRET}", **hook}  # fmt: skip
    return {
        "cameras": [{"id": "gate-1", "url": "rtsp://cam.example/live"}],
        "alerts": {"webhooks": [webhook], **alerts},
    }


ACCEPTED = [
    ({}, {}),
    ({"url": "http://127.0.0.1:8123/hook"}, {"allow_networks": ["127.0.0.0/8"]}),
    ({"url": "http://[::1]:8123/hook"}, {"allow_networks": ["::1/128"]}),
    ({"url": "http://localhost:8123/hook"}, {"allow_networks": ["127.0.0.0/8"]}),
    ({"url": "http://192.168.1.20/hook"}, {}),  # LAN receivers need no allowance
    ({"kinds": ["stopped_vehicle", "crowding", "camera_health"], "cameras": ["gate-1"]}, {}),
    ({"labels": ["car", "truck"], "zones": ["carriageway"], "cooldown_s": 30}, {}),
]

REFUSED = [
    ({"url": "http://169.254.169.254/latest"}, {}, "alerts.webhooks[0].url", "metadata"),
    ({"url": "http://127.0.0.1:8123/"}, {}, "alerts.webhooks[0].url", "loopback"),
    ({"url": "http://[::ffff:127.0.0.1]/"}, {}, "alerts.webhooks[0].url", "loopback"),
    ({"url": "http://localhost/"}, {}, "alerts.webhooks[0].url", "loopback name"),
    ({"url": "http://[fe80::1]/"}, {"allow_networks": ["127.0.0.0/8"]}, "webhooks[0].url",
     "link-local"),
    ({"url": "ftp://hooks.example.org/x"}, {}, "alerts.webhooks[0].url", "scheme 'ftp'"),
    ({"url": "file:///etc/passwd"}, {}, "alerts.webhooks[0].url", "scheme 'file'"),
    ({"url": "https://user:pw@hooks.example.org/"}, {}, "alerts.webhooks[0].url",
     "user:password@"),
    ({"url": "https://hooks.example.org/\nx"}, {}, "alerts.webhooks[0].url", "control"),
    ({"url": "https://hooks.example.org/#frag"}, {}, "alerts.webhooks[0].url", "fragment"),
    ({"secret": "${FEEDTAG_UNSET_SECRET}"}, {}, "alerts.webhooks[0].secret", "is not set"),
    ({"secret": "short"}, {}, "alerts.webhooks[0].secret", "at least 16"),
    ({"kinds": ["crowding", "explosion"]}, {}, "alerts.webhooks[0].kinds", "'explosion'"),
    ({"cameras": ["gate-9"]}, {}, "alerts.webhooks[0].cameras[0]", "'gate-9'"),
    ({"cooldown_s": -1}, {}, "alerts.webhooks[0].cooldown_s", "greater than or equal"),
    ({"bogus": 1}, {}, "alerts.webhooks[0].bogus", "Extra inputs"),
    ({}, {"max_attempts": 0}, "alerts.max_attempts", "greater than or equal"),
    ({}, {"allow_networks": ["not-a-net"]}, "alerts.allow_networks", "allow_networks[0]"),
]  # fmt: skip


@pytest.mark.parametrize(("hook", "alerts"), ACCEPTED)
def test_accepted(hook: dict[str, Any], alerts: dict[str, Any]) -> None:
    config = parse_config(json.dumps(config_with(hook, **alerts)), environ=ENV)
    webhook = config.alerts.webhooks[0]
    assert webhook.secret.get_secret_value() == SECRET
    assert SECRET not in repr(config) and SECRET not in config.model_dump_json()


def _problem_text(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(json.dumps(config), environ=ENV)
    return "\n".join(f"{path}: {message}" for path, message in caught.value.problems)


@pytest.mark.parametrize(("hook", "alerts", "field", "reason"), REFUSED)
def test_refused_naming_the_field(
    hook: dict[str, Any], alerts: dict[str, Any], field: str, reason: str
) -> None:
    text = _problem_text(config_with(hook, **alerts))
    assert field in text and reason in text, text
    assert "pw@" not in text and SECRET not in text


MQTT_REFUSED = [
    ({"url": "tcp://broker.example:1883"}, {}, "alerts.mqtt.url", "scheme 'tcp'"),
    ({"url": "mqtt://u:p@broker.example"}, {}, "alerts.mqtt.url", "username and password"),
    ({"url": "mqtt://broker.example/x"}, {}, "alerts.mqtt.url", "without a path"),
    ({"url": "mqtt://127.0.0.1"}, {}, "alerts.mqtt.url", "loopback"),
    ({"url": "mqtts://169.254.169.254"}, {}, "alerts.mqtt.url", "metadata"),
    ({"url": "mqtt://b.example", "password": "x"}, {}, "alerts.mqtt", "needs a username"),
    ({"url": "mqtt://b.example", "topic_prefix": "a/#"}, {}, "alerts.mqtt.topic_prefix",
     "should match"),
]  # fmt: skip


@pytest.mark.parametrize(("mqtt", "alerts", "field", "reason"), MQTT_REFUSED)
def test_mqtt_refused_naming_the_field(
    mqtt: dict[str, Any], alerts: dict[str, Any], field: str, reason: str
) -> None:
    config = {"alerts": {"mqtt": mqtt, **alerts}}
    text = _problem_text(config)
    assert field in text and reason in text, text


def test_mqtt_accepted_on_an_allowed_network() -> None:
    config = parse_config(
        json.dumps({"alerts": {"allow_networks": ["127.0.0.0/8"],
                               "mqtt": {"url": "mqtt://127.0.0.1:1884", "username": "u",
                                        "password": SECRET, "home_assistant": True}}})
    )  # fmt: skip
    assert config.alerts.mqtt is not None
    assert str(config.alerts.mqtt.url) == "mqtt://127.0.0.1:1884"
    assert SECRET not in repr(config) and SECRET not in config.model_dump_json()


def test_no_webhook_may_take_the_mqtt_route_id() -> None:
    assert "'mqtt' is the MQTT route's id" in _problem_text(config_with({"id": "mqtt"}))


def test_camera_health_stands_for_every_camera_kind() -> None:
    config = parse_config(
        json.dumps(config_with({"kinds": ["crowding", "camera_health"]})), environ=ENV
    )
    assert config.alerts.webhooks[0].event_kinds() == [
        "crowding", "camera_offline", "camera_frozen", "camera_covered", "camera_moved",
    ]  # fmt: skip


def test_duplicate_webhook_ids_are_refused() -> None:
    config = config_with({})
    config["alerts"]["webhooks"].append(dict(config["alerts"]["webhooks"][0]))
    assert "webhooks[1].id: 'ops' is already used by webhooks[0]" in _problem_text(config)


@pytest.mark.parametrize(("hook", "alerts", "field", "reason"), REFUSED[:4] + REFUSED[10:11])
def test_feedtag_check_exits_2_naming_the_field(  # noqa: PLR0917 - parametrized plus fixtures
    hook: dict[str, Any],
    alerts: dict[str, Any],
    field: str,
    reason: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEEDTAG_OPS_WEBHOOK_SECRET", SECRET)
    monkeypatch.delenv("FEEDTAG_UNSET_SECRET", raising=False)
    path = tmp_path / "feedtag.yaml"
    path.write_text(yaml.safe_dump(config_with(hook, **alerts)), encoding="utf-8")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert field in err and reason in err, err


def test_the_schema_describes_alerts() -> None:
    schema = json.loads(config_json_schema())
    webhook = schema["$defs"]["WebhookConfig"]
    assert set(webhook["required"]) == {"id", "url", "secret"}
    assert all("description" in prop for prop in webhook["properties"].values())
    assert "alerts" in schema["properties"]
