"""Web hardening in front of every route: security headers, request size limits, and JSON
errors that never carry a stack trace or the input that caused them.

The limits are pure ASGI middleware so that they act before any body is read: a declared
``Content-Length`` above the limit is refused at once with 413, and a chunked body is
counted as it arrives and cut off at the limit. A URL longer than the limit gets 414.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

#: the dashboard needs no inline script or style, and nothing from elsewhere
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
#: API answers hold camera data: never kept by a browser or a proxy
NO_STORE: Final = (b"cache-control", b"no-store")


class SecurityHeaders:
    """Adds the security headers to every HTTP response (and no-store to API answers)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = str(scope.get("path", "")).startswith(("/api/", "/metrics"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                extra = [*SECURITY_HEADERS, *([NO_STORE] if api else [])]
                headers += [(name, value) for name, value in extra if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestLimits:
    """413 for bodies above ``max_body_bytes`` (before reading them), 414 for URLs above
    ``max_url_chars``."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_url_chars: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_url_chars = max_url_chars

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        url_chars = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        if url_chars > self.max_url_chars:
            await _refuse(send, 414, f"URL longer than {self.max_url_chars} characters")
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _refuse(send, 413, f"request body larger than {self.max_body_bytes} bytes")
            return
        await self._counted(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count a body without a (trusted) length as it arrives; past the limit, answer 413
        and tell the app the client left (its own answer, if any, is dropped)."""
        received = 0
        started = False
        refused = False
        too_large = f"request body larger than {self.max_body_bytes} bytes"

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    refused = True
                    if not started:
                        await _refuse(send, 413, too_large)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out already
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:
                raise
            # the app failed on the cut-off body: expected, and already answered


class InternalErrors:
    """An unexpected exception becomes ``500 {"detail": "internal error"}`` here, inside the
    security headers (Starlette's own error page would be sent from outside them). The
    cause goes to the log, not to the caller."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            if started:
                raise
            await _refuse(send, 500, "internal error")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *SECURITY_HEADERS,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _validation_errors(error: RequestValidationError) -> list[dict[str, Any]]:
    # Only where and what: pydantic's "input" and "ctx" would echo what was sent (a camera
    # password, a hostile string) back into the answer.
    return [
        {"loc": list(item.get("loc", ())), "msg": str(item.get("msg", "")),
         "type": str(item.get("type", ""))}
        for item in error.errors()
    ]  # fmt: skip


def install_error_handlers(app: FastAPI) -> None:
    """JSON errors everywhere: ``{"detail": ...}``; 500s say nothing about the cause."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": error.detail}, status_code=error.status_code, headers=error.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_errors(error)}, status_code=422)
