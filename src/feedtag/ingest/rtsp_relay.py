"""The RTSP relay: every plain RTSP camera connection goes through it, so redirects are refused.

FFmpeg's RTSP client follows a ``3xx`` answer to OPTIONS or DESCRIBE by itself, to any host
the server names, and has no option to stop it; a check of the camera's own address says
nothing about that hop. So FFmpeg is pointed at a gate of the connection guard
(:meth:`~feedtag.ingest.guard.ConnectGuard.open_rtsp`) instead of the camera: the relay
resolves the camera's host at each connection, checks every address against the camera's
network policy, connects to the address it checked, and reads the server's answers while
the session is set up:

- a redirect (any ``3xx`` status) is refused: the connection is closed before FFmpeg sees
  it, the gate records why, and the camera's status says ``refused by network policy``.
  Configure the address the redirect names instead;
- a ``Transport`` header (UDP transport) has its ``source=`` set to the address connected,
  so RTP and RTCP go to the checked camera and never to an address the server chose.

Once media flows (the first interleaved ``$`` frame), the server's bytes are relayed as they
come; FFmpeg follows no redirect after the session is playing. FFmpeg's requests are relayed
unchanged: the server sees the gate's ``127.0.0.1:port`` as the host of the request URIs
(RTSP servers route by path; digest authentication covers the URI FFmpeg sent).

An ``rtsps`` camera is relayed the same way: FFmpeg speaks plain RTSP to the gate on
127.0.0.1 and the relay speaks TLS to the camera, so its answers can be read too. Its
certificate is not verified, as FFmpeg does not by default (``tls_verify`` 0): cameras serve
self-signed certificates.

Python's standard library has no RTSP support and the RTSP packages on PyPI are clients or
servers, not a relay to put between FFmpeg and a camera, so the message framing needed here
(RFC 2326 section 10.12 interleaving, a head and a Content-Length body) is written out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
from typing import TYPE_CHECKING, Final

from feedtag.errors import SourceError
from feedtag.ingest.netpolicy import PolicyRefused, Resolver

if TYPE_CHECKING:
    from feedtag.ingest.guard import Gate

log = logging.getLogger(__name__)

#: longest RTSP message head accepted from a server
MAX_HEAD_BYTES: Final = 64 * 1024
#: longest message body (an SDP) accepted from a server
MAX_BODY_BYTES: Final = 1024 * 1024
CONNECT_TIMEOUT_S: Final = 10.0
#: bytes of media gathered in the kernel before the relay moves them (at 1 Mbit/s, 65 ms)
MEDIA_LOW_WATER: Final = 8 * 1024
_STATUS = re.compile(rb"^RTSP/\d\.\d (\d{3})")
_CONTENT_LENGTH = re.compile(rb"^content-length:\s*(\d+)\s*$", re.IGNORECASE | re.MULTILINE)
_LOCATION = re.compile(rb"^location:\s*(\S+)", re.IGNORECASE | re.MULTILINE)
_TRANSPORT = re.compile(rb"^(transport:[ \t]*)([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
_SOURCE = re.compile(rb";\s*source=[^;,]*", re.IGNORECASE)


class RtspRelay(asyncio.Protocol):
    """One FFmpeg connection to a gate, relayed to the camera at ``host:port`` under the
    gate's policy. Protocols rather than streams: once media flows, each chunk costs one
    callback and one write."""

    def __init__(
        self, gate: Gate, host: str, port: int, resolve: Resolver, *, tls: bool = False
    ) -> None:
        self.gate, self.host, self.port, self.resolve = gate, host, port, resolve
        self.tls = _camera_tls() if tls else None
        self.client: asyncio.Transport | None = None
        self.upstream: _Answers | None = None
        self.early = bytearray()  # what FFmpeg sent before the camera was connected
        self.connecting: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - TCP only
        self.client = transport
        self.connecting = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        gate, host, port = self.gate, self.host, self.port
        loop = asyncio.get_running_loop()
        try:
            addresses = await loop.run_in_executor(None, gate.policy.check, host, self.resolve)
        except PolicyRefused as refused:
            log.warning("rtsp relay: refused %s:%d: %s", host[:80], port, refused.detail)
            gate.refused = refused
            self.close()
            return
        except SourceError as error:
            gate.unreachable = error.message
            self.close()
            return
        for address in addresses:
            if self.client is None or self.client.is_closing():
                return
            answers = _Answers(self, str(address).encode())
            try:
                await asyncio.wait_for(
                    loop.create_connection(
                        lambda a=answers: a,
                        str(address),
                        port,
                        ssl=self.tls,
                        server_hostname=host if self.tls else None,
                    ),
                    CONNECT_TIMEOUT_S,
                )
            except (OSError, TimeoutError):
                continue
            gate.hops.append(f"{host}:{port}")
            self.upstream = answers
            if self.early:
                answers.send(bytes(self.early))
                self.early.clear()
            return
        gate.unreachable = f"no answer from {host[:80]}:{port}"
        self.close()

    def data_received(self, data: bytes) -> None:
        if self.upstream is not None:
            self.upstream.send(data)
        elif len(self.early) + len(data) <= MAX_HEAD_BYTES:
            self.early += data
        else:
            self.close()

    def send(self, data: bytes) -> None:
        if self.client is not None:
            self.client.write(data)

    # the client cannot keep up: hold the camera's side until it can
    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume()

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def close(self) -> None:
        """Close both sides; either side ending ends both (FFmpeg's read timeout bounds a
        silent camera)."""
        client, self.client = self.client, None
        if client is not None:
            client.close()
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.close()


class _Answers(asyncio.Protocol):
    """The camera's side: messages read one by one (redirects refused, ``source=`` pinned)
    until the first interleaved media frame, then relayed as they come."""

    def __init__(self, relay: RtspRelay, connected: bytes) -> None:
        self.relay, self.connected = relay, connected
        self.transport: asyncio.Transport | None = None
        self.playing = False
        self.pending = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - TCP only
        self.transport = transport

    def send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.playing:
            self.relay.send(data)
            return
        self.pending += data
        while self.pending:
            if self.pending[0] == ord("$"):  # media flows: the session is set up
                self.playing = True
                self._batch_reads()
                self.relay.send(bytes(self.pending))
                self.pending.clear()
                return
            message = _message(self.pending)
            if message is None:
                return  # wait for the rest
            if not message:
                self.relay.close()  # too large to be an RTSP answer
                return
            del self.pending[: len(message)]
            status = _STATUS.match(message)
            if status is not None and status.group(1).startswith(b"3"):
                location = _LOCATION.search(message)
                target = location.group(1)[:120].decode("latin-1") if location else "(none)"
                self.relay.gate.refused = PolicyRefused(f"RTSP redirect to {target} refused")
                log.warning("rtsp relay: %s", self.relay.gate.refused.detail)
                self.relay.close()
                return
            self.relay.send(_pin_source(message, self.connected))

    def _batch_reads(self) -> None:
        """Wake up for media only once ``MEDIA_LOW_WATER`` bytes are waiting (the socket's
        receive low-water mark, which epoll honours): media arriving as many small RTP
        packets then costs a few large reads instead of one per packet. The end of the
        stream still wakes it at once."""
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, MEDIA_LOW_WATER)

    def pause(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        if self.relay.client is not None:
            self.relay.client.pause_reading()

    def resume_writing(self) -> None:
        if self.relay.client is not None and not self.relay.client.is_closing():
            self.relay.client.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.relay.close()

    def close(self) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.close()


def _camera_tls() -> ssl.SSLContext:
    """TLS to an ``rtsps`` camera as FFmpeg makes it by default: encrypted, the certificate
    not verified (cameras serve self-signed ones)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _message(buffer: bytearray) -> bytes | None:
    """The first whole RTSP message (head and body) in ``buffer``; None while it is
    incomplete, empty when it is too large to be one.

    >>> _message(bytearray(b"RTSP/1.0 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nv="))
    b'RTSP/1.0 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nv='
    >>> _message(bytearray(b"RTSP/1.0 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nv")) is None
    True
    """
    end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES)
    if end < 0:
        return b"" if len(buffer) > MAX_HEAD_BYTES else None
    head = bytes(buffer[: end + 4])
    length = _CONTENT_LENGTH.search(head)
    size = int(length.group(1)) if length else 0
    if size > MAX_BODY_BYTES:
        return b""
    if len(buffer) < len(head) + size:
        return None
    return head + bytes(buffer[len(head) : len(head) + size])


def _pin_source(message: bytes, connected: bytes) -> bytes:
    """``message`` with every transport's ``source=`` set to the address connected.

    >>> answer = _pin_source(b"RTSP/1.0 200 OK\\r\\nTransport: RTP/AVP;unicast;"
    ...                      b"source=127.0.0.1;server_port=5000-5001\\r\\n\\r\\n", b"192.0.2.7")
    >>> answer.split(b"\\r\\n")[1]
    b'Transport: RTP/AVP;unicast;server_port=5000-5001;source=192.0.2.7'
    """

    def pin(match: re.Match[bytes]) -> bytes:
        specs = [_SOURCE.sub(b"", spec) + b";source=" + connected
                 for spec in match.group(2).split(b",")]  # fmt: skip
        return match.group(1) + b",".join(specs)

    head, separator, body = message.partition(b"\r\n\r\n")
    return _TRANSPORT.sub(pin, head) + separator + body
