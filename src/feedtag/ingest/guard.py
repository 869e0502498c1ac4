"""The connection guard: every HTTP(S) connection of a camera goes through it and is checked.

FFmpeg's HTTP client follows redirects, and its HLS demuxer opens whatever playlists and
segments a playlist names, each on a host of the server's choosing. A check of the camera's
own host when it is added says nothing about those, nor about a name that resolves elsewhere
later (DNS rebinding). So every HTTP(S) camera is opened with FFmpeg's ``http_proxy`` option
pointing at a :class:`Gate`: a forward proxy on 127.0.0.1 that takes FFmpeg's requests
(``GET http://host/...`` for HTTP, ``CONNECT host:443`` for HTTPS, whose TLS then runs end
to end through the tunnel), resolves the host itself, checks every address against the
camera's :class:`~feedtag.ingest.netpolicy.NetworkPolicy`, and connects to the address it
checked, never to a name. A refused hop gets ``403`` and the gate remembers why, so the
camera's status can say ``refused by network policy`` instead of FFmpeg's generic error.

One gate per open camera connection (a listening socket on an ephemeral port), so that each
hop is judged by its own camera's policy and refusals are told to the right camera; all gates
share one asyncio loop on one thread. Python's standard library has no forward proxy, and the
proxy packages on PyPI are servers to run, not a per-connection policy hook to embed, so the
small part needed here (request head, CONNECT, byte relay) is written out.

FFmpeg bypasses a proxy for hosts listed in the ``no_proxy`` environment variable; the guard
removes that variable from the process when it starts (and says so in the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from feedtag.errors import FeedtagError, SourceError
from feedtag.ingest.netpolicy import (
    IpAddress,
    NetworkPolicy,
    PolicyRefused,
    Resolver,
    resolve_host,
)
from feedtag.ingest.rtsp_relay import RtspRelay

log = logging.getLogger(__name__)

#: longest request head accepted from FFmpeg
MAX_HEAD_BYTES: Final = 16 * 1024
HEAD_TIMEOUT_S: Final = 10.0
CONNECT_TIMEOUT_S: Final = 10.0
RELAY_CHUNK: Final = 64 * 1024
START_TIMEOUT_S: Final = 5.0
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


@dataclass
class Gate:
    """One camera connection's proxy: ``url`` for FFmpeg's ``http_proxy`` (or, for an RTSP
    gate, the host and port FFmpeg connects to instead of the camera's); ``refused`` and
    ``unreachable`` say what happened to the hops it refused or could not reach."""

    policy: NetworkPolicy
    url: str = ""
    port: int = 0
    refused: PolicyRefused | None = None
    unreachable: str | None = None
    hops: list[str] = field(default_factory=list)  # host:port of every hop connected
    _server: asyncio.base_events.Server | None = None


class ConnectGuard:
    """The loop that serves every :class:`Gate`; :func:`guard` gives the process's one."""

    def __init__(self, resolve: Resolver = resolve_host) -> None:
        self._resolve = resolve
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="connect-guard", daemon=True)
        self._started = threading.Event()
        if os.environ.pop("no_proxy", None) is not None:
            log.warning("no_proxy is ignored: every camera connection goes through the guard")
        self._thread.start()
        if not self._started.wait(START_TIMEOUT_S):
            raise FeedtagError("the connection guard did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._started.set)
        self._loop.run_forever()

    def open(self, policy: NetworkPolicy) -> Gate:
        """A new gate for one camera connection; close it when the connection ends."""
        gate = Gate(policy)
        future = asyncio.run_coroutine_threadsafe(self._listen(gate), self._loop)
        future.result(START_TIMEOUT_S)
        return gate

    def open_rtsp(self, policy: NetworkPolicy, host: str, port: int, *, tls: bool = False) -> Gate:
        """A new RTSP gate that relays FFmpeg's plain connections to ``host:port`` (over TLS
        for an ``rtsps`` camera; :mod:`feedtag.ingest.rtsp_relay`); close it when the
        connection ends."""
        gate = Gate(policy)

        async def listen() -> None:
            server = await self._loop.create_server(
                lambda: RtspRelay(gate, host, port, self._resolve, tls=tls), "127.0.0.1", 0
            )
            gate._server = server
            gate.port = server.sockets[0].getsockname()[1]
            gate.url = f"rtsp://127.0.0.1:{gate.port}"

        asyncio.run_coroutine_threadsafe(listen(), self._loop).result(START_TIMEOUT_S)
        return gate

    def close(self, gate: Gate) -> None:
        server = gate._server
        if server is not None:
            gate._server = None
            self._loop.call_soon_threadsafe(server.close)

    async def _listen(self, gate: Gate) -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(gate, reader, writer)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        gate._server = server
        gate.url = f"http://127.0.0.1:{port}"

    async def _serve(
        self, gate: Gate, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.close()
            return
        try:
            await self._forward(gate, head, reader, writer)
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    async def _forward(
        self,
        gate: Gate,
        head: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        request = _parse_head(head)
        if request is None:
            await _answer(writer, 400, "Bad Request")
            return
        method, host, port, rest = request
        try:
            addresses = await asyncio.get_running_loop().run_in_executor(
                None, gate.policy.check, host, self._resolve
            )
        except PolicyRefused as refused:
            log.warning("connection guard: refused %s:%d: %s", host[:80], port, refused.detail)
            gate.refused = refused
            await _answer(writer, 403, "Forbidden")
            return
        except SourceError as error:
            gate.unreachable = error.message
            await _answer(writer, 502, "Bad Gateway")
            return
        upstream = await _connect(addresses, port)
        if upstream is None:
            gate.unreachable = f"no answer from {host[:80]}:{port}"
            await _answer(writer, 502, "Bad Gateway")
            return
        gate.hops.append(f"{host}:{port}")
        up_reader, up_writer = upstream
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            up_writer.write(rest)
        await _relay(reader, writer, up_reader, up_writer)


def _parse_head(head: bytes) -> tuple[str, str, int, bytes] | None:
    """``(method, host, port, request to send upstream)`` from a proxy request head, or
    None when it is not one feedtag's FFmpeg sends (CONNECT, or an absolute http URL)."""
    try:
        line, _, headers = head.decode("latin-1").partition("\r\n")
        method, target, version = line.split(" ")
    except ValueError:
        return None
    if method == "CONNECT":
        host, _, port_text = target.rpartition(":")
        if not host or not port_text.isdigit():
            return None
        return method, host.strip("[]"), int(port_text), b""
    parts = urllib.parse.urlsplit(target)
    if parts.scheme != "http" or not parts.hostname:
        return None
    try:
        port = parts.port or _DEFAULT_PORTS["http"]
    except ValueError:
        return None
    path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    upstream = f"{method} {path} {version}\r\n{headers}".encode("latin-1")
    return method, parts.hostname, port, upstream


async def _connect(
    addresses: Sequence[IpAddress], port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    for address in addresses:
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(str(address), port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            continue
    return None


async def _answer(writer: asyncio.StreamWriter, code: int, text: str) -> None:
    writer.write(
        f"HTTP/1.1 {code} {text}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
    )
    with contextlib.suppress(OSError):
        await writer.drain()


async def _relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(RELAY_CHUNK):
                sink.write(chunk)
                await sink.drain()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.close()

    # either side ending ends both: FFmpeg's own read timeout bounds a silent server
    tasks = [
        asyncio.ensure_future(pipe(reader, up_writer)),
        asyncio.ensure_future(pipe(up_reader, writer)),
    ]
    _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    with contextlib.suppress(OSError):
        up_writer.close()


_guards: list[ConnectGuard] = []
_guard_lock = threading.Lock()


def guard() -> ConnectGuard:
    """The process's connection guard, started on first use."""
    with _guard_lock:
        if not _guards:
            _guards.append(ConnectGuard())
        return _guards[0]
