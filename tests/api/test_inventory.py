"""Deny by default: every route of the app (HTTP, SSE, static, media) has an explicit access
decision, the decisions are the ones documented, and every non-public route refuses a caller
without credentials."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Mount

from feedtag.api.access import Access, access_of, flat_routes, public, undecided_routes
from feedtag.store.tokens import Role

from .conftest import CAMERA_A, Setup

PUBLIC = "public"
FULL_ADMIN = "admin for every camera"
#: (method, path) -> who may call it; a new route fails this test until it is added here
EXPECTED = {
    ("GET", "/"): PUBLIC,
    ("MOUNT", "/static"): PUBLIC,
    ("GET", "/health"): PUBLIC,
    ("GET", "/api/v1/openapi.json"): PUBLIC,
    ("GET", "/api/v1/docs"): PUBLIC,
    ("POST", "/api/v1/session"): PUBLIC,
    ("GET", "/api/v1/session"): Role.VIEWER,
    ("DELETE", "/api/v1/session"): Role.VIEWER,
    ("GET", "/api/v1/cameras"): Role.VIEWER,
    ("GET", "/api/v1/cameras/{camera_id}"): Role.VIEWER,
    ("GET", "/api/v1/cameras/{camera_id}/thumbnail.jpg"): Role.VIEWER,
    ("POST", "/api/v1/cameras/{camera_id}/restart"): Role.OPERATOR,
    ("POST", "/api/v1/cameras"): FULL_ADMIN,
    ("PATCH", "/api/v1/cameras/{camera_id}"): Role.ADMIN,
    ("DELETE", "/api/v1/cameras/{camera_id}"): Role.ADMIN,
    ("GET", "/api/v1/events"): Role.VIEWER,
    ("GET", "/api/v1/events/{event_id}"): Role.VIEWER,
    ("GET", "/api/v1/events/{event_id}/snapshot.jpg"): Role.VIEWER,
    ("GET", "/api/v1/events/{event_id}/clip.mp4"): Role.ADMIN,
    ("GET", "/api/v1/tags"): Role.VIEWER,
    ("GET", "/api/v1/stats"): Role.VIEWER,
    ("GET", "/api/v1/stream"): Role.VIEWER,
    ("GET", "/metrics"): Role.VIEWER,
    ("GET", "/api/v1/audit"): FULL_ADMIN,
    ("GET", "/api/v1/alerts"): FULL_ADMIN,
    ("GET", "/api/v1/shards"): FULL_ADMIN,
    ("GET", "/api/v1/tokens"): FULL_ADMIN,
    ("POST", "/api/v1/tokens"): FULL_ADMIN,
    ("DELETE", "/api/v1/tokens/{token_id}"): FULL_ADMIN,
}


def inventory(app: FastAPI) -> dict[tuple[str, str], Access | None]:
    found: dict[tuple[str, str], Access | None] = {}
    for route in flat_routes(app.routes):
        if isinstance(route, Mount):
            found[("MOUNT", route.path)] = access_of(route)
            continue
        methods = getattr(route, "methods", None) or {"GET"}
        for method in methods - {"HEAD"}:
            found[(method, getattr(route, "path", repr(route)))] = access_of(route)
    return found


def test_every_route_has_the_documented_decision(setup: Setup) -> None:
    found = inventory(setup.app)
    assert undecided_routes(setup.app.routes) == []
    assert set(found) == set(EXPECTED), set(found) ^ set(EXPECTED)
    for key, access in found.items():
        assert access is not None, key
        expected = EXPECTED[key]
        if expected == PUBLIC:
            assert access.kind == "public" and access.reason, key
        elif expected == FULL_ADMIN:
            assert (access.kind, access.role, access.every_camera) == ("role", Role.ADMIN, True)
        else:
            assert (access.kind, access.role, access.every_camera) == ("role", expected, False)


def test_the_inventory_catches_a_route_without_a_decision(setup: Setup) -> None:
    app = setup.app

    @app.get("/api/v1/forgotten")
    def forgotten() -> dict[str, str]:
        return {"secret": "yes"}

    @app.get("/api/v1/remembered", dependencies=[public("a test")])
    def remembered() -> dict[str, str]:
        return {}

    assert undecided_routes(app.routes) == ["/api/v1/forgotten"]


def test_create_app_refuses_a_route_without_a_decision(setup: Setup) -> None:
    from feedtag.api import app as app_module
    from feedtag.api import stream

    before = list(stream.router.routes)

    @stream.router.get("/undecided")
    def undecided() -> None:
        return None

    try:
        state = setup.app.state.api
        with pytest.raises(RuntimeError, match="/api/v1/undecided"):
            app_module.create_app(state.config, state.engine, store=state.store)
    finally:
        stream.router.routes[:] = before


def _concrete(path: str, setup: Setup) -> str:
    values = {
        "camera_id": CAMERA_A,
        "event_id": setup.events[CAMERA_A].event_id,
        "token_id": "0123456789abcdef",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


@pytest.mark.parametrize(
    ("method", "path"),
    sorted(key for key, who in EXPECTED.items() if who != PUBLIC and key[0] != "MOUNT"),
)
def test_non_public_routes_refuse_anonymous_callers(setup: Setup, method: str, path: str) -> None:
    answer = setup.client.request(method, _concrete(path, setup), json={})
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json() == {"detail": answer.json()["detail"]}


@pytest.mark.parametrize("token", ["Bearer nope", "Bearer ", "Basic YWRtaW46YWRtaW4=", "bearer"])
def test_bad_credentials_are_refused(setup: Setup, token: str) -> None:
    answer = setup.client.get("/api/v1/cameras", headers={"Authorization": token})
    assert answer.status_code == 401


def test_every_api_route_is_an_apiroute_or_public(setup: Setup) -> None:
    # Starlette routes outside FastAPI's dependency system carry no decision by themselves:
    # there must be none besides the public static mount.
    others = [r for r in flat_routes(setup.app.routes) if not isinstance(r, APIRoute | Mount)]
    assert others == []
