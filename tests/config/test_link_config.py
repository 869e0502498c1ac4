"""The settings of signed snapshot links: ``api.public_url`` (validated strictly),
``api.link_key``, ``alerts.link_ttl_s``; the schema describes them, and ``feedtag check``
says how to turn links on when alerts are configured without them (no error)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from feedtag.cli import main
from feedtag.config import config_json_schema, parse_config
from feedtag.errors import ConfigError

LINK_KEY = "link-key-do-not-leak-0123456789abcdef"

ACCEPTED = [
    ("https://cams.example.org", "https://cams.example.org"),
    ("https://Cams.Example.org:8443/", "https://cams.example.org:8443"),
    ("https://cams.example.org/feedtag/", "https://cams.example.org/feedtag"),
    ("https://203.0.113.9/a-b_c.d~e", "https://203.0.113.9/a-b_c.d~e"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),  # a receiver on this machine
    ("http://[::1]:8080", "http://[::1]:8080"),
    ("http://localhost:8080", "http://localhost:8080"),
]

REFUSED = [
    ("http://cams.example.org", "use https://"),
    ("http://192.168.1.5:8080", "use https://"),
    ("ftp://cams.example.org", "expected https://host"),
    ("cams.example.org", "expected https://host"),
    ("https://", "expected https://host"),
    ("https://user:pw@cams.example.org", "user:password@"),
    ("https://cams.example.org/?a=1", "no ?query"),
    ("https://cams.example.org/#x", "#fragment"),
    ("https://cams.example.org/a%2Fb", "the path may hold only"),
    ("https://cams.example.org/../x", "the path may hold only"),
    ("https://cams.example.org/a b", "the path may hold only"),
    ("https://cams.example.org:99999", "malformed URL"),
    ("https://cams.example.org/\nx", "control characters"),
    (" https://cams.example.org", "white space"),
    ("https://cams..example.org", "host"),
]


def parsed(api: dict[str, Any] | None = None, **alerts: Any) -> Any:
    return parse_config(json.dumps({"api": api or {}, "alerts": alerts}), environ={})


@pytest.mark.parametrize(("url", "normalized"), ACCEPTED)
def test_public_urls_accepted(url: str, normalized: str) -> None:
    assert parsed({"public_url": url}).api.public_url == normalized


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_public_urls_refused_naming_the_field(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parsed({"public_url": url})
    text = "\n".join(f"{path}: {message}" for path, message in caught.value.problems)
    assert "api.public_url" in text and reason in text, text
    assert "pw@" not in text


@pytest.mark.parametrize(
    ("api", "alerts", "field", "reason"),
    [
        ({"link_key": "short"}, {}, "api.link_key", "at least 32"),
        ({}, {"link_ttl_s": 59}, "alerts.link_ttl_s", "greater than or equal to 60"),
        ({}, {"link_ttl_s": 7 * 86_400 + 1}, "alerts.link_ttl_s", "less than or equal"),
    ],
)
def test_link_key_and_lifetime_are_bounded(
    api: dict[str, Any], alerts: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parsed(api, **alerts)
    text = "\n".join(f"{path}: {message}" for path, message in caught.value.problems)
    assert field in text and reason in text, text


def test_defaults_and_the_key_is_a_secret() -> None:
    config = parsed({"link_key": LINK_KEY})
    assert config.api.public_url is None and config.alerts.link_ttl_s == 86_400
    assert LINK_KEY not in repr(config) and LINK_KEY not in config.model_dump_json()


def test_the_schema_describes_the_link_settings() -> None:
    schema = json.loads(config_json_schema())
    api = schema["$defs"]["ApiConfig"]["properties"]
    alerts = schema["$defs"]["AlertsConfig"]["properties"]
    for prop in (api["public_url"], api["link_key"], alerts["link_ttl_s"]):
        assert "signed" in prop["description"] or "link" in prop["description"]
    assert alerts["link_ttl_s"]["maximum"] == 7 * 86_400


def _check(
    tmp_path: Path, data: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    path = tmp_path / "feedtag.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    code = main(["check", str(path)])
    return code, capsys.readouterr().out


MQTT = {"mqtt": {"url": "mqtt://broker.example"}}


@pytest.mark.parametrize(
    ("api", "alerts", "environ", "note"),
    [
        (
            {},
            MQTT,
            {},
            "set api.public_url (where receivers reach the API, https://...) and "
            "api.link_key or FEEDTAG_SECRET_KEY",
        ),
        ({"public_url": "https://c.example"}, MQTT, {}, "set api.link_key or FEEDTAG_SECRET_KEY"),
        ({"link_key": LINK_KEY}, MQTT, {}, "set api.public_url"),
        ({"public_url": "https://c.example"}, MQTT, {"FEEDTAG_SECRET_KEY": "k"}, None),
        ({"public_url": "https://c.example", "link_key": LINK_KEY}, MQTT, {}, None),
        ({}, {}, {}, None),  # no alerts: nothing to say
    ],
)
def test_feedtag_check_explains_how_to_turn_links_on(  # noqa: PLR0917 - a table row plus fixtures
    api: dict[str, Any],
    alerts: dict[str, Any],
    environ: dict[str, str],
    note: str | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FEEDTAG_SECRET_KEY", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    code, out = _check(tmp_path, {"api": api, "alerts": alerts}, capsys)
    assert code == 0, out
    if note is None:
        assert "snapshot_url" not in out
    else:
        assert "note: alert payloads carry snapshot_url: null" in out and note in out, out
    assert LINK_KEY not in out
