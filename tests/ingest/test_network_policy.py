"""The network policy on the address actually connected: refused spellings of refused
addresses, redirects and HLS segments that lead to loopback, DNS rebinding, and the status a
viewer sees. Real FFmpeg, real HTTP servers on loopback; the "allowed camera host" is
127.0.0.2 (allowed by ``allow_networks``), the "internal service" is on 127.0.0.1 (refused),
and a counting listener proves that nothing ever connects to it."""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import av
import pytest

from feedtag.config import validate_config
from feedtag.core import CameraState
from feedtag.errors import SourceError, SourceRefused, SourceRejected
from feedtag.ingest.guard import ConnectGuard
from feedtag.ingest.netpolicy import (
    REFUSED_REASON,
    NetworkPolicy,
    PolicyRefused,
    own_addresses,
    refusal,
)
from feedtag.ingest.source import OpenOptions, open_source
from feedtag.runtime.node import NodeEngine
from feedtag.urls import CameraUrl

from ..conftest import RtspServer, free_port, wait_for

ALLOWED_HOST = "127.0.0.2"
ALLOW = [f"{ALLOWED_HOST}/32"]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::127.0.0.1", "loopback"),  # IPv4-compatible
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 well-known prefix
        ("64:ff9b:1::7f00:1", "loopback"),  # NAT64 local-use prefix
        ("2002:7f00:1::1", "loopback"),  # 6to4
        ("169.254.169.254", "metadata"),
        ("64:ff9b::a9fe:a9fe", "metadata"),
        ("::169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("169.254.7.7", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
    ],
)
def test_refused_addresses_in_every_spelling(address: str, why: str) -> None:
    reason = refusal(_address(address))
    assert reason is not None and why in reason


@pytest.mark.parametrize(
    "address",
    ["10.1.2.3", "192.168.1.20", "172.16.0.9", "8.8.8.8", "2001:db8::7", "::ffff:10.0.0.5"],
)
def test_camera_networks_are_accepted(address: str) -> None:
    assert refusal(_address(address)) is None


def test_the_hosts_own_addresses_are_refused() -> None:
    own = [a for a in own_addresses() if not a.is_loopback and not a.is_link_local]
    if not own:
        pytest.skip("this machine has no non-loopback interface address")
    policy = NetworkPolicy()
    with pytest.raises(PolicyRefused, match=REFUSED_REASON) as caught:
        policy.check(str(own[0]))
    assert "an address of this host" in caught.value.detail
    assert NetworkPolicy.allowing([f"{own[0]}/128" if own[0].version == 6 else f"{own[0]}/32"]
                                  ).check(str(own[0])) == [own[0]]  # fmt: skip


def test_a_config_cameras_own_host_is_trusted_but_nothing_else() -> None:
    policy = NetworkPolicy.allowing([], trusted_host="LocalHost")
    assert policy.check("localhost")  # the operator wrote it
    with pytest.raises(PolicyRefused):
        policy.check("127.0.0.1")  # a different host it might be led to


def test_dns_rebinding_is_checked_on_every_resolution() -> None:
    answers = iter(["203.0.113.7", "127.0.0.1"])

    def rebinding(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return [_address(next(answers))]

    policy = NetworkPolicy()
    assert policy.check("cam.example", rebinding) == [_address("203.0.113.7")]
    with pytest.raises(PolicyRefused):
        policy.check("cam.example", rebinding)  # the same name, later: loopback now


# -- real connections ------------------------------------------------------------------------


class CountingListener:
    """The internal service an attacker wants reached: counts every connection accepted
    (and answers it with ``handle``)."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_server((host, port))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            with contextlib.suppress(OSError), conn:
                conn.settimeout(5)
                self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def internal() -> Iterator[CountingListener]:
    listener = CountingListener()
    yield listener
    listener.close()


def serve(root: Path, routes: dict[str, str]) -> Callable[[], None]:
    """An HTTP server on the allowed host: static files from ``root``, and a 302 for each
    path in ``routes`` to its target."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            target = routes.get(self.path)
            if target is None:
                super().do_GET()
                return
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(
        (ALLOWED_HOST, 0), partial(Handler, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    serve.port = server.server_address[1]  # type: ignore[attr-defined]

    def close() -> None:
        server.shutdown()
        server.server_close()

    return close


@pytest.fixture
def allowed_server(
    tmp_path: Path, vtest_ts_clip: Path, internal: CountingListener
) -> Iterator[str]:
    (tmp_path / "seg0.ts").write_bytes(vtest_ts_clip.read_bytes())
    head = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
    (tmp_path / "ok.m3u8").write_text(head + "#EXTINF:2.0,\nseg0.ts\n#EXT-X-ENDLIST\n")
    (tmp_path / "evil.m3u8").write_text(
        head + f"#EXTINF:2.0,\nhttp://127.0.0.1:{internal.port}/seg.ts\n#EXT-X-ENDLIST\n"
    )
    inside = f"http://127.0.0.1:{internal.port}/admin"
    close = serve(
        tmp_path,
        {
            "/cam": inside,
            "/metadata": "http://169.254.169.254/latest/meta-data/",
            "/nat64": f"http://[64:ff9b::7f00:1]:{internal.port}/",
            "/compat": f"http://[::127.0.0.1]:{internal.port}/",
            "/tls": f"https://127.0.0.1:{internal.port}/",
            "/fine": "/ok.m3u8",
        },
    )
    yield f"http://{ALLOWED_HOST}:{serve.port}"  # type: ignore[attr-defined]
    close()


def options(allow: list[str]) -> OpenOptions:
    return OpenOptions(5, 5, policy=NetworkPolicy.allowing(allow))


@pytest.mark.parametrize("path", ["/cam", "/metadata", "/nat64", "/compat", "/tls", "/evil.m3u8"])
def test_no_hop_reaches_a_refused_address(
    allowed_server: str, internal: CountingListener, path: str
) -> None:
    """A camera on an allowed host that redirects (HTTP or HTTPS, any spelling) or whose HLS
    playlist names segments on loopback: refused by network policy, and the internal
    listener is never connected to."""
    url = CameraUrl.parse(allowed_server + path)
    with pytest.raises(PolicyRefused, match=REFUSED_REASON), open_source(url, options(ALLOW)) as c:
        for _ in c.demux(video=0):
            pass
    assert internal.accepted == 0


def test_an_allowed_redirect_and_its_segments_still_play(allowed_server: str) -> None:
    url = CameraUrl.parse(allowed_server + "/fine")
    with open_source(url, options(ALLOW)) as container:
        packets = sum(1 for _ in container.demux(video=0))
    assert packets > 10


def test_the_first_host_is_checked_at_connect_time(internal: CountingListener) -> None:
    url = CameraUrl.parse(f"http://127.0.0.1:{internal.port}/cam")
    with pytest.raises(PolicyRefused), open_source(url, options([])):
        pass
    rtsp = CameraUrl.parse(f"rtsp://127.0.0.1:{internal.port}/cam")
    with pytest.raises(PolicyRefused), open_source(rtsp, options([])):
        pass
    assert internal.accepted == 0


def test_a_rebinding_name_is_refused_at_the_hop_that_moves(allowed_server: str) -> None:
    """The guard resolves every hop itself and connects to what it checked: a name that
    answered with the allowed host for the playlist and with loopback for its segment is
    refused at the segment, and nothing connects to loopback (a listener waits there on the
    same port)."""
    answers = iter([ALLOWED_HOST, "127.0.0.1", "127.0.0.1"])

    def rebinding(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return [_address(next(answers))] if host == "rebind.test" else [_address(host)]

    port = int(allowed_server.rsplit(":", 1)[1])
    internal = CountingListener(port)
    guard = ConnectGuard(resolve=rebinding)
    gate = guard.open(NetworkPolicy.allowing(ALLOW))
    try:
        with pytest.raises(av.error.FFmpegError):  # type: ignore[attr-defined]
            av.open(
                f"http://rebind.test:{port}/ok.m3u8",
                options={"http_proxy": gate.url, "rw_timeout": "5000000"},
            )
    finally:
        guard.close(gate)
        internal.close()
    assert gate.hops == [f"rebind.test:{port}"]  # the playlist, from the allowed host
    assert gate.refused is not None and "127.0.0.1" in gate.refused.detail
    assert internal.accepted == 0


def test_an_api_camera_that_redirects_to_loopback_shows_a_generic_reason(
    allowed_server: str, internal: CountingListener
) -> None:
    """End to end through the engine: a camera added at run time (as the API adds it)
    pointing at the allowed host, which redirects to loopback. Its status says only
    ``refused by network policy``; the listener saw nothing, however often it reconnects."""
    assert_refused_at_run_time(allowed_server + "/cam", internal)


def assert_refused_at_run_time(url: str, internal: CountingListener) -> None:
    """A camera at ``url`` added to a running engine ends offline after three refused
    attempts, its status generic, and ``internal`` never connected to."""
    config = validate_config(
        {"cameras": [], "detector": {"enabled": False}, "api": {"allow_networks": ALLOW},
         "reconnect": {"initial_backoff_s": 0.1, "max_backoff_s": 0.2}}
    )  # fmt: skip
    camera = validate_config({"cameras": [{"id": "redirecting", "url": url}]}).cameras[0]
    engine = NodeEngine(config)
    engine.start()
    try:
        engine.add_camera(camera)
        status = wait_for(
            lambda: (s := engine.statuses()[0]).counters.reconnects >= 3 and s, 20,
            what="three refused connection attempts",
        )  # fmt: skip
    finally:
        assert engine.stop()
    assert status.state is CameraState.OFFLINE
    assert REFUSED_REASON in status.reason
    assert "127.0.0.1" not in status.reason and str(internal.port) not in status.reason
    assert internal.accepted == 0


def test_rejected_is_a_source_error() -> None:
    assert issubclass(PolicyRefused, SourceRejected) and issubclass(PolicyRefused, SourceError)


# -- RTSP: the relay -------------------------------------------------------------------------


class RedirectingRtspServer(CountingListener):
    """An RTSP server on the allowed host that answers every request with ``302`` to
    ``location`` (over TLS, an ``rtsps`` server, with ``tls``); counts the requests it
    answered."""

    def __init__(self, location: str, tls: ssl.SSLContext | None = None) -> None:
        self.location = location
        self.tls = tls
        self.requests = 0
        super().__init__(host=ALLOWED_HOST)

    def handle(self, conn: socket.socket) -> None:
        if self.tls is None:
            self._answer(conn)
            return
        with self.tls.wrap_socket(conn, server_side=True) as secure:
            self._answer(secure)

    def _answer(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head and (chunk := conn.recv(4096)):
            head += chunk
        cseq = next(
            (line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
             if line.lower().startswith(b"cseq:")), b"1",
        )  # fmt: skip
        self.requests += 1
        conn.sendall(
            b"RTSP/1.0 302 Moved Temporarily\r\nCSeq: " + cseq
            + b"\r\nLocation: " + self.location.encode() + b"\r\n\r\n"
        )  # fmt: skip


@pytest.fixture
def rtsp_redirect(internal: CountingListener) -> Iterator[RedirectingRtspServer]:
    server = RedirectingRtspServer(f"rtsp://127.0.0.1:{internal.port}/inside")
    yield server
    server.close()


def test_an_rtsp_redirect_is_refused_and_never_followed(
    rtsp_redirect: RedirectingRtspServer, internal: CountingListener
) -> None:
    """FFmpeg follows an RTSP 302 by itself (shown first, opened without a policy: the
    internal listener is reached). Under the network policy the relay refuses the answer:
    the open fails as refused by network policy, and the listener is never connected to."""
    url = CameraUrl.parse(f"rtsp://{ALLOWED_HOST}:{rtsp_redirect.port}/cam")
    with pytest.raises(SourceError), open_source(url, OpenOptions(3, 3)):
        pass
    assert internal.accepted >= 1  # what FFmpeg does on its own
    followed, asked = internal.accepted, rtsp_redirect.requests
    for _ in range(3):
        with (
            pytest.raises(PolicyRefused, match=REFUSED_REASON) as caught,
            open_source(url, options(ALLOW)),
        ):
            pass
        assert "RTSP redirect" in caught.value.detail
    assert rtsp_redirect.requests == asked + 3  # the camera was asked, every time
    assert internal.accepted == followed  # and nothing followed its answer


def test_an_api_rtsp_camera_that_redirects_shows_a_generic_reason(
    rtsp_redirect: RedirectingRtspServer, internal: CountingListener
) -> None:
    assert_refused_at_run_time(f"rtsp://{ALLOWED_HOST}:{rtsp_redirect.port}/cam", internal)


@pytest.mark.system
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_a_real_rtsp_camera_plays_through_the_relay(
    rtsp_server: RtspServer, transport: str
) -> None:
    """The GStreamer RTSP server through the relay, both transports (UDP media flows to the
    address the relay connected, named in ``source=``)."""
    url = CameraUrl.parse(rtsp_server.url("vtest"))
    opened = OpenOptions(
        5, 5, rtsp_transport=transport, policy=NetworkPolicy.allowing(["127.0.0.0/8"])
    )
    with open_source(url, opened) as container:
        packets = 0
        for packet in container.demux(video=0):
            packets += packet.size > 0
            if packets >= 50:
                break
    assert packets >= 50


def test_an_unreachable_rtsp_host_is_unreachable(internal: CountingListener) -> None:
    """Nothing listens: the relay cannot connect, and the error says so (a status shows
    ``unreachable``), not that FFmpeg could not read the relay's closed connection."""
    port = free_port()
    url = CameraUrl.parse(f"rtsp://{ALLOWED_HOST}:{port}/cam")
    with pytest.raises(SourceRefused), open_source(url, options(ALLOW)):
        pass


@pytest.fixture(scope="module")
def tls_server_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A self-signed certificate, as cameras serve."""
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=camera.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def test_an_rtsps_redirect_is_refused_too(
    tls_server_context: ssl.SSLContext, internal: CountingListener
) -> None:
    """The relay speaks TLS to an ``rtsps`` camera and plain RTSP to FFmpeg, so it reads the
    camera's answers: a 302 inside TLS is refused like any other."""
    server = RedirectingRtspServer(
        f"rtsp://127.0.0.1:{internal.port}/inside", tls=tls_server_context
    )
    try:
        url = CameraUrl.parse(f"rtsps://{ALLOWED_HOST}:{server.port}/cam")
        with (
            pytest.raises(PolicyRefused, match=REFUSED_REASON) as caught,
            open_source(url, options(ALLOW)),
        ):
            pass
    finally:
        server.close()
    assert "RTSP redirect" in caught.value.detail
    assert server.requests == 1  # the request arrived, through TLS
    assert internal.accepted == 0


class TlsFront:
    """TLS in front of a plain TCP server (an ``rtsps`` camera made of the GStreamer one)."""

    def __init__(self, context: ssl.SSLContext, backend_port: int) -> None:
        self.context, self.backend_port = context, backend_port
        self.sock = socket.create_server((ALLOWED_HOST, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                conn = self.context.wrap_socket(conn, server_side=True)
            except OSError:
                continue
            backend = socket.create_connection(("127.0.0.1", self.backend_port), 5)
            for source, sink in ((conn, backend), (backend, conn)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.mark.system
def test_a_real_rtsps_camera_plays_through_the_relay(
    rtsp_server: RtspServer, tls_server_context: ssl.SSLContext
) -> None:
    front = TlsFront(tls_server_context, rtsp_server.port)
    try:
        url = CameraUrl.parse(f"rtsps://{ALLOWED_HOST}:{front.port}/vtest")
        with open_source(url, options(ALLOW)) as container:
            packets = 0
            for packet in container.demux(video=0):
                packets += packet.size > 0
                if packets >= 50:
                    break
    finally:
        front.close()
    assert packets >= 50
