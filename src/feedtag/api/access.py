"""Who may call what: principals, roles, and the access decision every route declares.

Deny by default: a route is reachable only through one of the dependencies below, each
marked with its :class:`Access` decision. :func:`undecided_routes` lists routes without one
and :func:`~feedtag.api.app.create_app` refuses to build an app that has any; the route
inventory test walks the same list.

Credentials, in order: ``Authorization: Bearer <token>`` (scripts, Prometheus), else the
dashboard's session cookie (HttpOnly, SameSite=Strict). A request authenticated by the
cookie that changes state must also carry the session's CSRF token in ``X-CSRF-Token``.
Object-level checks (:meth:`Principal.sees`) answer 404, never 403, for another camera's
objects, so a restricted token cannot even learn which ids exist.

One route also takes a signed link instead (an event's snapshot,
:mod:`feedtag.store.links`): its caller is :func:`link_principal`, a viewer of that one
object, recorded in the audit log as ``link:<route>``.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Final, Literal

from fastapi import Depends, HTTPException, Request, status
from fastapi.routing import APIRoute
from sqlalchemy import Engine
from starlette.routing import BaseRoute, Mount

from feedtag.api.store_errors import TOKEN_CHECK, store_errors
from feedtag.store.tokens import Role, TokenRecord, hash_token, lookup_token_hash

SESSION_COOKIE: Final = "feedtag_session"
CSRF_HEADER: Final = "X-CSRF-Token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
CONFIG_ADMIN_ID: Final = "config-admin"
#: the attribute that carries a dependency's (or a mount's) access decision
ACCESS_ATTRIBUTE: Final = "__feedtag_access__"
MAX_SESSIONS: Final = 10_000
#: the token id of a signed link's caller in the audit log: ``link:<route>``
LINK_PREFIX: Final = "link:"


@dataclass(frozen=True, slots=True)
class Access:
    """An access decision: ``public`` (anyone, with a reason) or at least ``role``;
    ``every_camera`` also asks for a token not restricted to cameras (for powers that reach
    beyond cameras: tokens, the audit log, adding cameras)."""

    kind: Literal["public", "role"]
    role: Role | None = None
    reason: str = ""
    every_camera: bool = False


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``cameras`` None means every camera."""

    token_id: str
    name: str
    role: Role
    cameras: frozenset[str] | None
    via: Literal["bearer", "session", "link"]
    csrf_token: str | None = None

    def sees(self, camera_id: str) -> bool:
        """Whether this caller may see ``camera_id``'s objects."""
        return self.cameras is None or camera_id in self.cameras

    def visible(self, requested: Iterable[str]) -> list[str] | None:
        """The camera filter of a search: None for "any camera" (unrestricted callers who
        asked for none), else the requested cameras this caller may see (possibly empty)."""
        wanted = list(dict.fromkeys(requested))
        if self.cameras is None:
            return wanted or None
        if not wanted:
            return sorted(self.cameras)
        return [camera for camera in wanted if camera in self.cameras]

    def to_dict(self) -> dict[str, Any]:
        return {
            "token_id": self.token_id,
            "name": self.name,
            "role": self.role.value,
            "cameras": None if self.cameras is None else sorted(self.cameras),
        }


@dataclass
class _Session:
    principal: Principal
    token_hash: str
    expires_at: float


@dataclass
class Authenticator:
    """Finds the principal of a request: the config's admin token, stored tokens, sessions."""

    store: Engine
    admin_token_hash: str | None
    session_ttl_s: float
    clock: Callable[[], float] = time.time
    _sessions: dict[str, _Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def principal_of_token(self, token: str) -> tuple[Principal, str] | None:
        """The principal a bearer token stands for (and the token's hash), or None."""
        digest = hash_token(token)
        if self.admin_token_hash is not None and hmac.compare_digest(digest, self.admin_token_hash):
            return Principal(CONFIG_ADMIN_ID, "admin (config)", Role.ADMIN, None, "bearer"), digest
        record = lookup_token_hash(self.store, digest)
        return None if record is None else (_principal(record), digest)

    def open_session(self, principal: Principal, token_hash: str) -> tuple[str, Principal]:
        """A new session for ``principal``; returns the cookie value and the session's
        principal (which carries the CSRF token)."""
        session_id = secrets.token_urlsafe(32)
        session = replace(principal, via="session", csrf_token=secrets.token_urlsafe(32))
        with self._lock:
            self._expire()
            if len(self._sessions) >= MAX_SESSIONS:
                oldest = min(self._sessions, key=lambda key: self._sessions[key].expires_at)
                del self._sessions[oldest]
            self._sessions[hash_token(session_id)] = _Session(
                session, token_hash, self.clock() + self.session_ttl_s
            )
        return session_id, session

    def close_session(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(hash_token(session_id), None)

    def principal_of_session(self, session_id: str) -> Principal | None:
        """The principal of a live session whose token is still valid, or None."""
        key = hash_token(session_id)
        with self._lock:
            session = self._sessions.get(key)
        if session is None or session.expires_at <= self.clock():
            return None
        if not self._token_live(session):
            with self._lock:
                self._sessions.pop(key, None)
            return None
        return session.principal

    def _token_live(self, session: _Session) -> bool:
        # A revoked token ends its sessions at once: the token is looked up again.
        if session.principal.token_id == CONFIG_ADMIN_ID:
            return session.token_hash == self.admin_token_hash
        return lookup_token_hash(self.store, session.token_hash) is not None

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[key]


def _principal(record: TokenRecord) -> Principal:
    return Principal(record.token_id, record.name, record.role, record.cameras, "bearer")


def link_principal(route: str) -> Principal:
    """The caller of a request with a valid signed link made for the receiver of ``route``.
    The link names one object, so the principal is not restricted to cameras; the route
    checks that the object is the one the link was signed for."""
    return Principal(f"{LINK_PREFIX}{route}", f"signed link ({route})", Role.VIEWER, None, "link")


def _unauthorized() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "authentication required: send Authorization: Bearer <token> or sign in",
        headers={"WWW-Authenticate": "Bearer"},
    )


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized()
    return token.strip()


def authenticate(request: Request) -> Principal:
    """The request's principal; 401 without valid credentials, 403 for a cookie-signed
    state change without the session's CSRF token."""
    authenticator: Authenticator = request.app.state.api.auth
    with store_errors(TOKEN_CHECK):
        token = bearer_token(request)
        if token is not None:
            found = authenticator.principal_of_token(token)
            if found is None:
                raise _unauthorized()
            return found[0]
        session_id = request.cookies.get(SESSION_COOKIE)
        principal = authenticator.principal_of_session(session_id) if session_id else None
    if principal is None:
        raise _unauthorized()
    if request.method not in SAFE_METHODS:
        check_csrf(request, principal)
    return principal


def check_csrf(request: Request, principal: Principal) -> None:
    """A cookie-authenticated state change needs the session's CSRF token in a header
    (a cross-site form cannot set one) and, when the browser sends Origin, the same origin."""
    sent = request.headers.get(CSRF_HEADER, "")
    expected = principal.csrf_token or ""
    if not (sent and expected and hmac.compare_digest(sent, expected)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"missing or wrong {CSRF_HEADER} header")
    origin = request.headers.get("origin")
    if origin is not None and origin != _own_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-origin request refused")


def _own_origin(request: Request) -> str:
    host = request.headers.get("host", "")
    return f"{request.url.scheme}://{host}"


def _decided(access: Access) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        setattr(function, ACCESS_ATTRIBUTE, access)
        return function

    return mark


def decided(access: Access) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Marks a dependency that authenticates by other means than :func:`authenticate` alone
    (a signed link) with its access decision."""
    return _decided(access)


def _role_dependency(role: Role, every_camera: bool = False) -> Callable[[Request], Principal]:
    @_decided(Access("role", role, every_camera=every_camera))
    def dependency(request: Request) -> Principal:
        principal = authenticate(request)
        if not principal.role.allows(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"needs the {role.value} role")
        if every_camera and principal.cameras is not None:
            # else a camera-restricted admin could mint itself an unrestricted token
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"needs a {role.value} token for every camera"
            )
        return principal

    dependency.__name__ = f"require_{role.value}{'_every_camera' if every_camera else ''}"
    return dependency


require_viewer = _role_dependency(Role.VIEWER)
require_operator = _role_dependency(Role.OPERATOR)
require_admin = _role_dependency(Role.ADMIN)
require_full_admin = _role_dependency(Role.ADMIN, every_camera=True)

Viewer = Annotated[Principal, Depends(require_viewer)]
Operator = Annotated[Principal, Depends(require_operator)]
Admin = Annotated[Principal, Depends(require_admin)]
#: an admin whose token is not restricted to cameras
FullAdmin = Annotated[Principal, Depends(require_full_admin)]


def public(reason: str) -> Any:
    """A dependency that lets anyone in; ``reason`` says why that is safe."""

    @_decided(Access("public", None, reason))
    def dependency() -> None:
        return None

    return Depends(dependency)


def access_of(route: BaseRoute) -> Access | None:
    """The access decision of a route or mount, or None when it has none."""
    if isinstance(route, APIRoute):
        for call in _dependency_calls(route.dependant):
            access = getattr(call, ACCESS_ATTRIBUTE, None)
            if isinstance(access, Access):
                return access
        return None
    if isinstance(route, Mount):
        target = route.app
        access = getattr(target, ACCESS_ATTRIBUTE, None)
        return access if isinstance(access, Access) else None
    endpoint = getattr(route, "endpoint", None)
    access = getattr(endpoint, ACCESS_ATTRIBUTE, None)
    return access if isinstance(access, Access) else None


def _dependency_calls(dependant: Any) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _dependency_calls(dependency)


def flat_routes(routes: Iterable[BaseRoute]) -> list[BaseRoute]:
    """Every route of an app, with included routers expanded (FastAPI >= 0.160 keeps an
    included router as one entry of ``app.routes``; older versions copy its routes)."""
    flat: list[BaseRoute] = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            flat += flat_routes(included.routes)
        else:
            flat.append(route)
    return flat


def undecided_routes(routes: Iterable[BaseRoute]) -> list[str]:
    """The paths of routes (included routers expanded) without an access decision."""
    return [
        getattr(route, "path", repr(route))
        for route in flat_routes(routes)
        if access_of(route) is None
    ]
