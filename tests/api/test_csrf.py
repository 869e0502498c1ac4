"""The dashboard's session cookie: HttpOnly, SameSite=Strict; every state change made with
it needs the session's CSRF token (negative tests first); sign-out and revocation end it."""

from __future__ import annotations

import pytest

from .conftest import CAMERA_A, Setup


def sign_in(setup: Setup, who: str = "admin") -> str:
    answer = setup.client.post("/api/v1/session", json={"token": setup.tokens[who]})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["csrf_token"])


def test_sign_in_sets_a_strict_httponly_cookie(setup: Setup) -> None:
    answer = setup.client.post("/api/v1/session", json={"token": setup.tokens["viewer_a"]})
    cookie = answer.headers["set-cookie"].lower()
    assert "feedtag_session=" in cookie
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    body = answer.json()
    assert body["role"] == "viewer" and body["cameras"] == [CAMERA_A] and body["csrf_token"]
    assert setup.tokens["viewer_a"] not in answer.text  # the token is not echoed
    assert setup.client.get("/api/v1/session").json()["csrf_token"] == body["csrf_token"]


def test_a_wrong_token_does_not_sign_in(setup: Setup) -> None:
    answer = setup.client.post("/api/v1/session", json={"token": "ft_wrong"})
    assert answer.status_code == 401
    assert "set-cookie" not in answer.headers


CHANGES = [
    ("PATCH", f"/api/v1/cameras/{CAMERA_A}", {"name": "renamed"}),
    ("DELETE", f"/api/v1/cameras/{CAMERA_A}", None),
    ("POST", "/api/v1/tokens", {"name": "sneaky", "role": "admin"}),
    ("DELETE", "/api/v1/session", None),
]


@pytest.mark.parametrize(("method", "path", "body"), CHANGES)
@pytest.mark.parametrize(
    "csrf_header", [None, "", "not-the-token"], ids=["missing", "empty", "wrong"]
)
def test_cookie_state_changes_without_the_csrf_token_are_refused(
    setup: Setup, method: str, path: str, body: object, csrf_header: str | None
) -> None:
    sign_in(setup)
    headers = {} if csrf_header is None else {"X-CSRF-Token": csrf_header}
    answer = setup.client.request(method, path, json=body, headers=headers)
    assert answer.status_code == 403, answer.text
    assert "X-CSRF-Token" in answer.json()["detail"]
    # nothing changed
    camera = setup.client.get(f"/api/v1/cameras/{CAMERA_A}")
    assert camera.status_code == 200 and camera.json()["name"] == "Camera A"
    tokens = setup.client.get("/api/v1/tokens").json()["items"]
    assert "sneaky" not in {token["name"] for token in tokens}


def test_cross_origin_cookie_change_is_refused_even_with_the_token(setup: Setup) -> None:
    csrf = sign_in(setup)
    answer = setup.client.patch(
        f"/api/v1/cameras/{CAMERA_A}", json={"name": "x"},
        headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"},
    )  # fmt: skip
    assert answer.status_code == 403


def test_cookie_state_change_with_the_csrf_token_works(setup: Setup) -> None:
    csrf = sign_in(setup)
    answer = setup.client.patch(
        f"/api/v1/cameras/{CAMERA_A}", json={"name": "renamed"}, headers={"X-CSRF-Token": csrf}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["name"] == "renamed"


def test_bearer_callers_need_no_csrf_token(setup: Setup) -> None:
    answer = setup.client.patch(
        f"/api/v1/cameras/{CAMERA_A}", json={"name": "renamed"}, headers=setup.headers("admin")
    )
    assert answer.status_code == 200


def test_sign_out_ends_the_session(setup: Setup) -> None:
    csrf = sign_in(setup)
    cookie = setup.client.cookies.get("feedtag_session")
    assert setup.client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    setup.client.cookies.set("feedtag_session", cookie)  # a copy kept by an attacker
    assert setup.client.get("/api/v1/session").status_code == 401


def test_revoking_the_token_ends_its_sessions(setup: Setup) -> None:
    sign_in(setup, "viewer")
    assert setup.client.get("/api/v1/cameras").status_code == 200
    token_id = setup.client.get("/api/v1/session").json()["token_id"]
    revoke = setup.client.delete(f"/api/v1/tokens/{token_id}", headers=setup.headers("admin"))
    assert revoke.status_code == 204
    assert setup.client.get("/api/v1/cameras").status_code == 401


def test_sessions_expire(setup: Setup) -> None:
    from feedtag.api.access import Authenticator

    now = [1000.0]
    auth = Authenticator(setup.store, None, session_ttl_s=60, clock=lambda: now[0])
    found = auth.principal_of_token(str(setup.tokens["viewer"]))
    assert found is not None
    session_id, principal = auth.open_session(*found)
    assert principal.csrf_token and auth.principal_of_session(session_id) == principal
    now[0] += 59
    assert auth.principal_of_session(session_id) == principal
    now[0] += 2
    assert auth.principal_of_session(session_id) is None
    assert auth.principal_of_session("forged") is None
