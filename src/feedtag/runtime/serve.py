"""Serving an ASGI app (the API) with uvicorn in a thread beside the node engine.

The socket is bound here, in the caller's thread, so that a taken port fails ``start`` at
once with a clear error and port 0 gives a free port whose number is known before the first
request. uvicorn runs without touching logging or signals (the CLI owns both) and stops
within ``stop``'s timeout: open streams are told to end first (``before_stop``), then
uvicorn's graceful shutdown is bounded.

This module takes any ASGI app: ``runtime`` does not import ``api`` (nothing does but the
CLI).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import uvicorn

from feedtag.errors import FeedtagError

log = logging.getLogger(__name__)

START_TIMEOUT_S: Final = 10.0
STOP_TIMEOUT_S: Final = 5.0
GRACEFUL_SHUTDOWN_S: Final = 2


class ServeError(FeedtagError):
    """The API server could not be started."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.listen(128)
    return sock


class ApiServer:
    """uvicorn serving ``app`` on ``host:port`` in a daemon thread.

    >>> async def app(scope, receive, send): ...
    >>> server = ApiServer(app, "127.0.0.1", 0); server.start()
    >>> server.url.startswith("http://127.0.0.1:"), server.stop()
    (True, True)
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        before_stop: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._before_stop = before_stop
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        self._socket = bind_socket(self.host, self.port)
        self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(
            self.app, log_config=None, access_log=False, server_header=False, lifespan="off",
            http="h11", ws="none", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        sockets = [self._socket]
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.run(sockets=sockets), name="api-server", daemon=True
        )
        self._thread.start()
        end = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > end:
                self.stop()
                raise ServeError(f"the API server did not start on {self.url}")
            time.sleep(0.02)
        log.info("API listening on %s", self.url)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stop serving; True if the server thread ended within ``timeout``."""
        if self._before_stop is not None:
            try:
                self._before_stop()
            except Exception:
                log.exception("preparing the API server's stop failed")
        ended = True
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            ended = not self._thread.is_alive()
            if not ended:
                log.warning("the API server did not stop within %.0f s", timeout)
        if self._socket is not None:
            self._socket.close()
        self._server, self._thread, self._socket = None, None, None
        return ended
