"""Store failures as HTTP answers: each route's status and JSON body, from the one table in
``feedtag.api.store_errors``. The store call a route makes is replaced (at the name the route
module imported) by one that raises; everything else is the real app."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from feedtag.api import access, admin, events, state
from feedtag.errors import StoreError, StoreUnavailable

from .conftest import CAMERA_A, Setup

AUDIT_DETAIL = "the audit log cannot be written, so the read is refused; try again later"
OUTAGE = StoreUnavailable("connection refused")
REFUSAL = StoreError("token name: already taken")

# (case, module, name, error, who, method, path, json body, status, detail)
CASES: list[tuple[str, Any, str, Exception, str, str, str, Any, int, str]] = [
    ("token check, outage", access, "lookup_token_hash", OUTAGE, "viewer", "GET",
     "/api/v1/cameras", None, 503, "the token store is unavailable"),
    ("token check, refusal", access, "lookup_token_hash", REFUSAL, "viewer", "GET",
     "/api/v1/cameras", None, 503, "the token store is unavailable"),
    ("sign in, outage", access, "lookup_token_hash", OUTAGE, "anonymous", "POST",
     "/api/v1/session", {"token": "viewer"}, 503, "token store unavailable"),
    ("audit write", state, "write_audit", OUTAGE, "viewer", "GET",
     "/api/v1/events", None, 503, AUDIT_DETAIL),
    ("audit write, refusal", state, "write_audit", REFUSAL, "viewer", "GET",
     "/api/v1/events", None, 503, AUDIT_DETAIL),
    ("list tokens, outage", admin, "list_tokens", OUTAGE, "config_admin", "GET",
     "/api/v1/tokens", None, 503, "store unavailable"),
    ("list tokens, refusal", admin, "list_tokens", REFUSAL, "config_admin", "GET",
     "/api/v1/tokens", None, 503, "store unavailable"),
    ("revoke token, refusal", admin, "revoke_token", REFUSAL, "config_admin", "DELETE",
     "/api/v1/tokens/abc", None, 503, "store unavailable"),
    ("new token, outage", admin, "create_token", OUTAGE, "config_admin", "POST",
     "/api/v1/tokens", {"name": "n", "role": "viewer"}, 503, "store unavailable"),
    ("new token, refusal", admin, "create_token", REFUSAL, "config_admin", "POST",
     "/api/v1/tokens", {"name": "n", "role": "viewer"}, 422, str(REFUSAL)),
    ("audit search, outage", admin, "search_audit", OUTAGE, "config_admin", "GET",
     "/api/v1/audit", None, 503, "store unavailable"),
    ("audit search, refusal", admin, "search_audit", REFUSAL, "config_admin", "GET",
     "/api/v1/audit", None, 422, str(REFUSAL)),
    ("event search, outage", events, "search_events", OUTAGE, "viewer", "GET",
     "/api/v1/events", None, 503, "the store is unavailable"),
    ("event search, refusal", events, "search_events", REFUSAL, "viewer", "GET",
     "/api/v1/events", None, 422, str(REFUSAL)),
]  # fmt: skip


class Case(NamedTuple):
    module: Any
    name: str
    error: Exception
    who: str
    method: str
    path: str
    body: Any
    code: int
    detail: str


@pytest.mark.parametrize("case", [pytest.param(Case(*row[1:]), id=row[0]) for row in CASES])
def test_store_errors_answer_as_the_table_says(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, case: Case
) -> None:
    body = case.body
    if body == {"token": "viewer"}:
        body = {"token": setup.tokens["viewer"]}

    def failing(*args: object, **kwargs: object) -> None:
        raise case.error

    monkeypatch.setattr(case.module, case.name, failing)
    headers = {**setup.headers(case.who), "Origin": str(setup.client.base_url)}
    answer = setup.client.request(case.method, case.path, headers=headers, json=body)
    assert (answer.status_code, answer.json()) == (case.code, {"detail": case.detail})
    assert answer.headers["content-type"] == "application/json"


def test_the_same_routes_answer_normally_when_the_store_answers(setup: Setup) -> None:
    headers = setup.headers("config_admin")
    for path in ("/api/v1/tokens", "/api/v1/audit", f"/api/v1/events?camera={CAMERA_A}"):
        assert setup.client.get(path, headers=headers).status_code == 200, path
