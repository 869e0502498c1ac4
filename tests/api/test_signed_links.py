"""Signed snapshot links on the API: a valid link fetches the anonymized snapshot without a
token and is audited as ``link:<route>``; an expired, tampered or malformed link, a link to
another event and a link on any other route answer 401 ``link expired or invalid`` (or the
route's usual 401), never the image; a caller's own token still counts."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from feedtag.api.app import create_app
from feedtag.runtime.local import LocalEngineControl
from feedtag.runtime.node import NodeEngine
from feedtag.store.links import SnapshotLinks, snapshot_links
from feedtag.store.tokens import Role, create_token

from .conftest import CAMERA_A, CAMERA_B, Setup, TestClient, api_config, make_web_dir, seed

LINK_KEY = "api-link-key-do-not-leak-0123456789"
PUBLIC_URL = "https://cams.example.org/feedtag"
REFUSED = "link expired or invalid"


@pytest.fixture
def linked(tmp_path: Path) -> Iterator[Setup]:
    """The API fixture's objects, with links configured (``api.link_key``)."""
    root = tmp_path / "linked"  # beside the API fixture's files, when a test uses both
    root.mkdir()
    admin = secrets.token_urlsafe(32)
    config = api_config(root / "data", admin, link_key=LINK_KEY, public_url=PUBLIC_URL)
    app = create_app(config, LocalEngineControl(NodeEngine(config)), web_dir=None)
    store = app.state.api.store
    tokens: dict[str, str | None] = {"anonymous": None, "config_admin": admin}
    tokens["viewer_b"] = create_token(store, "viewer_b", Role.VIEWER, [CAMERA_B])[0]
    events = seed(store, app)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Setup(client, app, store, root / "data", make_web_dir(root), tokens, events)
    store.dispose()


def links_of(setup: Setup) -> SnapshotLinks:
    links = snapshot_links(setup.app.state.api.config, {})
    assert links is not None
    return links


def local(url: str) -> str:
    """The API path and query of a link under the public URL."""
    parts = urlsplit(url)
    assert url.startswith(PUBLIC_URL + "/api/v1/")
    return parts.path.removeprefix(urlsplit(PUBLIC_URL).path) + "?" + parts.query


def link(setup: Setup, camera: str = CAMERA_A, *, route: str = "ops", **change: Any) -> str:
    now = change.pop("now", time.time())
    return local(links_of(setup).url(setup.events[camera].event_id, route, now=now))


def stored_snapshot(setup: Setup, camera: str) -> bytes:
    relative = setup.events[camera].attributes["snapshot"]
    return bytes(setup.app.state.api.media.resolve(relative).read_bytes())


def audit_entries(setup: Setup, **params: str) -> list[dict[str, Any]]:
    answer = setup.get("config_admin", "/api/v1/audit", params=params)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


def test_a_signed_link_fetches_the_anonymized_snapshot_without_a_token(linked: Setup) -> None:
    answer = linked.get("anonymous", link(linked))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/jpeg"
    assert answer.content == stored_snapshot(linked, CAMERA_A)
    event_id = linked.events[CAMERA_A].event_id
    with_token = linked.get("config_admin", f"/api/v1/events/{event_id}/snapshot.jpg")
    assert with_token.content == answer.content  # the same image the API serves to viewers


def test_each_read_through_a_link_is_audited_as_the_links_route(linked: Setup) -> None:
    for _ in range(2):
        assert linked.get("anonymous", link(linked, route="ops")).status_code == 200
    entries = audit_entries(linked, action="events.snapshot")
    assert len(entries) == 2
    for entry in entries:
        assert entry["token_id"] == "link:ops" and entry["role"] == "viewer"
        assert entry["object_id"] == linked.events[CAMERA_A].event_id
        assert entry["camera_id"] == CAMERA_A and entry["status"] == 200
        assert "sig" not in str(entry["detail"] or "")


def _expired(setup: Setup) -> str:
    return link(setup, now=time.time() - links_of(setup).ttl_s - 1)


def _other_event(setup: Setup) -> str:
    """A link for event A's snapshot, sent to event B's path."""
    path, query = link(setup, CAMERA_A).split("?")
    event_a, event_b = (setup.events[c].event_id for c in (CAMERA_A, CAMERA_B))
    return path.replace(event_a, event_b) + "?" + query


def _tampered(name: str, value: str) -> Any:
    def make(setup: Setup) -> str:
        path, query = link(setup).split("?")
        values = {key: v[0] for key, v in parse_qs(query).items()}
        values[name] = value.format(**values)
        return path + "?" + "&".join(f"{key}={v}" for key, v in values.items())

    return make


BAD_LINKS = [
    ("expired", _expired),
    ("another event", _other_event),
    ("tampered expiry", _tampered("expires", "{expires}0")),
    ("tampered route", _tampered("route", "other")),
    ("tampered signature", _tampered("sig", "0{sig}")),
    ("malformed expiry", _tampered("expires", "tomorrow")),
    ("malformed signature", _tampered("sig", "%00")),
    ("signature only", lambda s: link(s).split("?")[0] + "?sig=" + "0" * 64),
]


@pytest.mark.parametrize(("name", "make"), BAD_LINKS)
def test_a_bad_link_is_refused_like_an_unauthenticated_request(
    linked: Setup, name: str, make: Any
) -> None:
    before = len(audit_entries(linked, action="events.snapshot"))
    answer = linked.get("anonymous", make(linked))
    assert answer.status_code == 401, (name, answer.text)
    assert answer.json() == {"detail": REFUSED}
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.headers["content-type"] == "application/json"
    assert len(audit_entries(linked, action="events.snapshot")) == before  # nothing was read


def test_the_callers_own_token_still_counts_beside_a_bad_link(linked: Setup) -> None:
    answer = linked.get("config_admin", _expired(linked))
    assert answer.status_code == 200 and answer.content == stored_snapshot(linked, CAMERA_A)
    # a token that may not see the camera gets the usual 404, not the link's answer
    assert linked.get("viewer_b", _expired(linked)).status_code == 404


@pytest.mark.parametrize("suffix", ["/clip.mp4", ""])
def test_links_open_nothing_but_the_snapshot(linked: Setup, suffix: str) -> None:
    path, query = link(linked).split("?")
    other = path.removesuffix("/snapshot.jpg") + suffix + "?" + query
    answer = linked.get("anonymous", other)
    assert answer.status_code == 401 and answer.json()["detail"].startswith("authentication")


def test_without_a_key_no_link_is_accepted(setup: Setup, linked: Setup) -> None:
    """The API fixture's app has no link key: a link made with a key is refused there."""
    event_id = setup.events[CAMERA_A].event_id
    url = links_of(linked).url(event_id, "ops", now=time.time())
    answer = setup.get("anonymous", local(url))
    assert answer.status_code == 401 and answer.json() == {"detail": REFUSED}


def test_the_link_parameters_are_documented(linked: Setup) -> None:
    schema = linked.get("anonymous", "/api/v1/openapi.json").json()
    operation = schema["paths"]["/api/v1/events/{event_id}/snapshot.jpg"]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert names == {"event_id", "expires", "route", "sig"}
