"""Signing in (the dashboard's session cookie), the audit log, tokens, metrics and health."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from feedtag.api.access import SESSION_COOKIE, FullAdmin, Principal, Viewer, public
from feedtag.api.events import MAX_FILTER_VALUES, Cursor, Limit, Since, Until
from feedtag.api.metrics import engine_registry
from feedtag.api.state import api_state
from feedtag.api.store_errors import ADMIN_QUERY, ADMIN_READ, SIGN_IN, store_errors
from feedtag.runtime.control import ShardSnapshot
from feedtag.store.audit import AuditQuery, search_audit
from feedtag.store.outbox import list_outbox, outbox_counts
from feedtag.store.tokens import Role, create_token, list_tokens, revoke_token

router = APIRouter(tags=["admin"])


class SignIn(BaseModel):
    """A token, exchanged for a session cookie."""

    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=512)


class NewToken(BaseModel):
    """A token to create."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    role: Role
    cameras: list[str] | None = Field(default=None, max_length=10_000)


def _session_answer(principal: Principal) -> dict[str, Any]:
    return {**principal.to_dict(), "csrf_token": principal.csrf_token}


@router.post(
    "/api/v1/session",
    summary="Sign in with a token: sets an HttpOnly session cookie, returns the CSRF token",
    dependencies=[public("signing in is how a caller gets a session")],
)
def sign_in(request: Request, body: SignIn) -> JSONResponse:
    state = api_state(request)
    with store_errors(SIGN_IN):
        found = state.auth.principal_of_token(body.token)
    if found is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown or revoked token")
    session_id, principal = state.auth.open_session(*found)
    ttl = int(state.config.api.session_ttl_s)
    answer = JSONResponse(_session_answer(principal))
    answer.set_cookie(
        SESSION_COOKIE, session_id, max_age=ttl, path="/", httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )  # fmt: skip
    return answer


@router.get("/api/v1/session", summary="Who is signed in, with the session's CSRF token")
def whoami(principal: Viewer) -> dict[str, Any]:
    return _session_answer(principal)


@router.delete("/api/v1/session", status_code=status.HTTP_204_NO_CONTENT, summary="Sign out")
def sign_out(request: Request, principal: Viewer) -> Response:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id and principal.via == "session":
        api_state(request).auth.close_session(session_id)
    answer = Response(status_code=status.HTTP_204_NO_CONTENT)
    answer.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return answer


@router.get("/api/v1/audit", summary="The audit log, newest first (admins)")
def get_audit(
    request: Request,
    principal: FullAdmin,
    *,
    who: Annotated[
        str | None,
        Query(alias="principal", max_length=200, description="A token id or token name."),
    ] = None,
    actions: Annotated[list[str], Query(alias="action", max_length=MAX_FILTER_VALUES)] = [],  # noqa: B006
    cameras: Annotated[list[str], Query(alias="camera", max_length=MAX_FILTER_VALUES)] = [],  # noqa: B006
    since: Since = None,
    until: Until = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    who_filter = () if who is None else (who,)
    query = AuditQuery(who_filter, actions, cameras, since, until, limit, cursor)
    with store_errors(ADMIN_QUERY):
        page = search_audit(api_state(request).store, query)
    return {"items": [entry.to_dict() for entry in page.items], "next_cursor": page.next_cursor}


@router.get("/api/v1/alerts", summary="The alert outbox, newest first (admins)")
def get_alerts(
    request: Request,
    principal: FullAdmin,
    *,
    state: Annotated[
        Literal["pending", "delivered", "dead"] | None,
        Query(description="Only rows in this state."),
    ] = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    """Which alerts are owed, sent or given up, with the last error; never a secret or a
    receiver's URL (rows name the route id)."""
    with store_errors(ADMIN_READ):
        database = api_state(request).store
        rows = list_outbox(database, state=state, limit=limit)
        counts = outbox_counts(database)
    return {"items": [row.to_dict() for row in rows], "counts": counts}


@router.get("/api/v1/tokens", summary="Live API tokens (admins); never the tokens themselves")
def get_tokens(request: Request, principal: FullAdmin) -> dict[str, Any]:
    with store_errors(ADMIN_READ):
        records = list_tokens(api_state(request).store)
    return {"items": [record.to_dict() for record in records]}


@router.post(
    "/api/v1/tokens",
    status_code=status.HTTP_201_CREATED,
    summary="Create a token (admins); the token is in this answer only",
)
def post_token(request: Request, principal: FullAdmin, body: NewToken) -> dict[str, Any]:
    with store_errors(ADMIN_QUERY):
        token, record = create_token(api_state(request).store, body.name, body.role, body.cameras)
    return {**record.to_dict(), "token": token}


@router.delete(
    "/api/v1/tokens/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a token (admins); its sessions end at once",
)
def delete_token(request: Request, principal: FullAdmin, token_id: str) -> Response:
    with store_errors(ADMIN_READ):
        revoked = revoke_token(api_state(request).store, token_id)
    if not revoked:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such live token")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/api/v1/shards",
    summary="The engine's shards: process, machine, state, cameras, CPU, memory (admins)",
)
def get_shards(request: Request, principal: FullAdmin) -> dict[str, Any]:
    """One item per shard (one, ``local``, for an engine in one process); a shard that does
    not answer in time is listed with its state and no figures."""
    return {"items": [shard_view(shard) for shard in api_state(request).engine.shards()]}


def shard_view(shard: ShardSnapshot) -> dict[str, Any]:
    """What the API says about one shard: CPU in percent of one core, memory in MiB."""
    rss = shard.rss_bytes
    return {
        "id": shard.shard_id, "node": shard.node, "pid": shard.pid, "state": shard.state.value,
        "cameras": list(shard.cameras), "cpu": shard.cpu_percent,
        "rss_mb": None if rss is None else round(rss / 2**20, 1),
    }  # fmt: skip


@router.get(
    "/metrics",
    summary="Prometheus metrics of the cameras this token may see (scrape with a bearer token)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(request: Request, principal: Viewer) -> Response:
    state = api_state(request)
    per_camera = state.config.api.metrics == "per_camera"
    registry = engine_registry(state.engine, state.bus, principal.cameras, per_camera)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/health",
    summary="Liveness: whether the server answers and the store is reachable",
    dependencies=[public("load balancers and supervisors probe it; it says nothing private")],
)
def health(request: Request) -> JSONResponse:
    state = api_state(request)
    store = state.engine.snapshot(()).store  # no camera: only the store figures
    store_ok = store is None or store.available
    return JSONResponse({"status": "ok" if store_ok else "degraded"})
