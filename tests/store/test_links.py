"""Signed snapshot links: what verifies, what is refused (each tampering on its own), where
the key comes from, and that the signature is compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from feedtag.config import validate_config
from feedtag.store import links as links_module
from feedtag.store.links import (
    MAX_TTL_S,
    LinkSigner,
    SnapshotLinks,
    link_signer,
    links_off_reason,
    snapshot_links,
    snapshot_path,
)
from feedtag.urls import redact

KEY = "link-key-for-tests-0123456789abcdef"
NOW = 1_800_000_000.0
TTL_S = 3600.0


def signed(event_id: str = "e1", route: str = "ops", *, key: str = KEY) -> dict[str, str]:
    """The query values of a link made at NOW."""
    url = SnapshotLinks("https://cams.example.org", LinkSigner.from_secret(key), TTL_S).url(
        event_id, route, now=NOW
    )
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def flip(hex_text: str) -> str:
    return ("1" if hex_text[0] == "0" else "0") + hex_text[1:]


SIGNATURE_CHANGES: dict[str, Callable[[str], str | None]] = {
    "flip": flip,
    "upper": str.upper,
    "empty": lambda _: "",
    "none": lambda _: None,
}


@pytest.mark.parametrize(
    ("change", "valid"),
    [
        ({}, True),
        ({"now": NOW + TTL_S - 1}, True),
        ({"now": NOW + TTL_S}, False),  # expired at the second it names
        ({"now": NOW + 86_400}, False),
        ({"path": snapshot_path("e2")}, False),  # a link for e1 does not open e2
        ({"path": "/api/v1/events/e1/clip.mp4"}, False),  # nor the clip of e1
        ({"route": "other"}, False),
        ({"expires": str(int(NOW + TTL_S) + 1)}, False),  # tampered expiry
        ({"expires": str(int(NOW + TTL_S)) + ".0"}, False),
        ({"expires": " " + str(int(NOW + TTL_S))}, False),
        ({"expires": "-1"}, False),
        ({"sig": "flip"}, False),
        ({"sig": "upper"}, False),
        ({"sig": "empty"}, False),
        ({"sig": "none"}, False),
        ({"expires": None}, False),
        ({"route": None}, False),
        ({"key": "another-link-key-0123456789abcdef"}, False),  # wrong key
    ],
)
def test_verification(change: dict[str, Any], valid: bool) -> None:
    values = signed()
    sig = SIGNATURE_CHANGES[change["sig"]](values["sig"]) if "sig" in change else values["sig"]
    signer = LinkSigner.from_secret(change.get("key", KEY))
    result = signer.verify(
        change.get("path", snapshot_path("e1")),
        change.get("route", values["route"]),
        change.get("expires", values["expires"]),
        sig,
        now=change.get("now", NOW),
    )
    assert result is valid


def test_an_expiry_beyond_the_longest_lifetime_is_refused_even_when_signed() -> None:
    signer = LinkSigner.from_secret(KEY)
    path = snapshot_path("e1")
    far = int(NOW + MAX_TTL_S + 60)
    assert not signer.verify(path, "ops", str(far), signer.signature(path, "ops", far), now=NOW)
    near = int(NOW + MAX_TTL_S)
    assert signer.verify(path, "ops", str(near), signer.signature(path, "ops", near), now=NOW)


def test_the_signature_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[str, str]] = []
    constant_time = hmac.compare_digest

    def compare(a: str, b: str) -> bool:
        compared.append((a, b))
        return constant_time(a, b)

    monkeypatch.setattr(links_module.hmac, "compare_digest", compare)
    values = signed()
    signer = LinkSigner.from_secret(KEY)
    assert signer.verify(snapshot_path("e1"), "ops", values["expires"], values["sig"], now=NOW)
    assert compared == [(values["sig"], values["sig"])]


def test_the_url_is_absolute_under_the_public_url_and_names_the_route() -> None:
    links = SnapshotLinks("https://cams.example.org/feedtag", LinkSigner.from_secret(KEY), TTL_S)
    url = urlsplit(links.url("e1", "ops", now=NOW))
    assert (url.scheme, url.netloc) == ("https", "cams.example.org")
    assert url.path == "/feedtag/api/v1/events/e1/snapshot.jpg"
    query = parse_qs(url.query)
    assert query["expires"] == [str(int(NOW + TTL_S))] and query["route"] == ["ops"]
    assert len(query["sig"][0]) == 64


def test_the_log_redaction_masks_the_signature() -> None:
    links = SnapshotLinks("https://cams.example.org", LinkSigner.from_secret(KEY), TTL_S)
    url = links.url("e1", "ops", now=NOW)
    masked = redact(f"GET {url} failed")
    assert signed()["sig"] not in masked and "route=ops" in masked


def test_keys_are_derived_so_the_secret_itself_is_not_the_hmac_key() -> None:
    path, expires = snapshot_path("e1"), int(NOW + TTL_S)
    raw = LinkSigner(KEY.encode()).signature(path, "ops", expires)
    assert LinkSigner.from_secret(KEY).signature(path, "ops", expires) != raw
    assert "link-key" not in repr(LinkSigner.from_secret(KEY))
    with pytest.raises(ValueError, match="32 bytes"):
        LinkSigner(b"short")


def config(**api: Any) -> Any:
    data = {"api": api, "alerts": {"link_ttl_s": TTL_S}}
    return validate_config(data, source="test")


@pytest.mark.parametrize(
    ("api", "environ", "on", "reason"),
    [
        ({"public_url": "https://c.example", "link_key": KEY}, {}, True, None),
        ({"public_url": "https://c.example"}, {"FEEDTAG_SECRET_KEY": "fernet-key"}, True, None),
        ({"public_url": "https://c.example"}, {}, False, "api.link_key or FEEDTAG_SECRET_KEY"),
        ({"link_key": KEY}, {}, False, "api.public_url"),
        ({}, {"FEEDTAG_SECRET_KEY": "k"}, False, "api.public_url"),
        ({}, {}, False, "api.public_url (where receivers reach the API, https://...) and"),
    ],
)
def test_links_are_on_only_with_a_public_url_and_a_key(
    api: dict[str, Any], environ: dict[str, str], on: bool, reason: str | None
) -> None:
    settings = config(**api)
    links = snapshot_links(settings, environ)
    assert (links is not None) is on
    explained = links_off_reason(settings, environ)
    assert explained is None if reason is None else reason in (explained or "")
    if links is not None:
        assert links.ttl_s == TTL_S and links.base_url == "https://c.example"


def test_the_config_key_wins_over_the_environment_and_each_gives_its_own_signer() -> None:
    path, expires = snapshot_path("e1"), int(NOW + TTL_S)
    environ = {"FEEDTAG_SECRET_KEY": "fernet-key-of-this-server"}
    from_config = link_signer(config(link_key=KEY), environ)
    from_environ = link_signer(config(), environ)
    assert from_config is not None and from_environ is not None
    assert from_config.signature(path, "ops", expires) == signed()["sig"]
    assert from_environ.signature(path, "ops", expires) != signed()["sig"]
