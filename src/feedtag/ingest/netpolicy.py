"""Where a camera connection may go: the network policy, checked on every address connected.

A camera URL is a request the server makes on someone's behalf, so it could be used to reach
what only the server can: services on loopback or on the host's own addresses, link-local
neighbours, and cloud metadata endpoints that hand out credentials (169.254.169.254,
fd00:ec2::254, 100.100.100.200). Those are refused, in every spelling: IPv4-mapped
(``::ffff:127.0.0.1``), IPv4-compatible (``::127.0.0.1``), NAT64 (``64:ff9b::7f00:1``),
6to4 and Teredo addresses are judged by the IPv4 address they carry. ``api.allow_networks``
lets an operator permit a range on purpose (a camera on the same machine, a lab network).

The check is made where the connection is made, not once when the camera is added: RTSP
cameras connect only through :mod:`feedtag.ingest.rtsp_relay` (redirects refused), HTTP(S)
cameras only through :mod:`feedtag.ingest.guard`, which checks every hop (redirects, HLS
playlists and segments); both check the address they then connect to. A name that resolves
elsewhere later (DNS rebinding) is checked again at the next connection.

A camera from the config file trusts its own host as written (the operator typed it); every
other host it leads to (a redirect, a segment server) is checked like any other.

>>> NetworkPolicy().check("127.0.0.1")
Traceback (most recent call last):
...
feedtag.ingest.netpolicy.PolicyRefused: refused by network policy
>>> NetworkPolicy.allowing(["127.0.0.0/8"]).check("127.0.0.1")
[IPv4Address('127.0.0.1')]
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import psutil

from feedtag.errors import SourceRejected

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], list[IpAddress]]

RESOLVE_TIMEOUT_S: Final = 5.0
#: what a viewer of the camera's status is told; the detail goes to the log
REFUSED_REASON: Final = "refused by network policy"
#: cloud instance metadata services (AWS/GCP/Azure/OpenStack, AWS IPv6, Alibaba)
METADATA_NETWORKS: Final = tuple(
    ipaddress.ip_network(net)
    for net in ("169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32")
)
#: NAT64 prefixes: the well-known one (RFC 6052) and the local-use one (RFC 8215)
NAT64_NETWORKS: Final = (
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
)
#: how long the host's own interface addresses are cached
OWN_ADDRESSES_TTL_S: Final = 30.0
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="resolve")


class PolicyRefused(SourceRejected):
    """A connection to an address the network policy refuses. ``detail`` (which address,
    why) is for the log and the operator; the message shown to viewers is generic."""

    reason = REFUSED_REASON

    def __init__(self, detail: str, url: str = "") -> None:
        self.detail = detail
        super().__init__(REFUSED_REASON, url)


def _resolve(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def resolve_host(host: str, timeout: float = RESOLVE_TIMEOUT_S) -> list[IpAddress]:
    """Every address ``host`` resolves to; :class:`SourceRejected` when it does not resolve
    within ``timeout`` (getaddrinfo has no timeout of its own, so it runs in a pool)."""
    try:
        raw = [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        try:
            raw = _POOL.submit(_resolve, host).result(timeout)
        except concurrent.futures.TimeoutError:
            raise SourceRejected(f"host {host!r} did not resolve within {timeout:g} s") from None
        except (OSError, UnicodeError):
            raise SourceRejected(f"host {host!r} does not resolve") from None
    return [ipaddress.ip_address(text.split("%", 1)[0]) for text in raw]  # drop a zone id


def embedded_ipv4(address: IpAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo
    client), or None.

    >>> [str(embedded_ipv4(ipaddress.ip_address(a))) for a in
    ...  ("::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1", "::1")]
    ['127.0.0.1', '127.0.0.1', '127.0.0.1', '127.0.0.1', 'None']
    """
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    value = int(address)
    compatible = value >> 32 == 0 and value > 1  # ::a.b.c.d (deprecated "IPv4-compatible")
    if compatible or any(address in network for network in NAT64_NETWORKS):
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    teredo_client = address.teredo[1] if address.teredo is not None else None
    return address.ipv4_mapped or address.sixtofour or teredo_client


_own_lock = threading.Lock()
_own_cache: dict[str, tuple[float, frozenset[IpAddress]]] = {}


def own_addresses() -> frozenset[IpAddress]:
    """The addresses of this host's network interfaces (cached for a few seconds)."""
    with _own_lock:
        stamp, cached = _own_cache.get("own", (0.0, frozenset()))
        if time.monotonic() - stamp < OWN_ADDRESSES_TTL_S and cached:
            return cached
        found: set[IpAddress] = set()
        for entries in psutil.net_if_addrs().values():
            for entry in entries:
                if entry.family in (socket.AF_INET, socket.AF_INET6):
                    try:
                        found.add(ipaddress.ip_address(entry.address.split("%", 1)[0]))
                    except ValueError:
                        continue
        _own_cache["own"] = (time.monotonic(), frozenset(found))
        return _own_cache["own"][1]


def refusal(address: IpAddress, own: Iterable[IpAddress] = ()) -> str | None:
    """Why ``address`` is refused by default, or None.

    >>> refusal(ipaddress.ip_address("64:ff9b::a9fe:a9fe"))
    'a cloud metadata address (as 64:ff9b::a9fe:a9fe)'
    >>> refusal(ipaddress.ip_address("192.168.1.20")) is None  # cameras live on LANs
    True
    """
    carried = embedded_ipv4(address)
    if carried is not None:
        reason = refusal(carried, own)
        return None if reason is None else f"{reason} (as {address})"
    if any(address in network for network in METADATA_NETWORKS):
        return "a cloud metadata address"
    for reason, hit in (
        ("a loopback address", address.is_loopback),
        ("a link-local address", address.is_link_local),
        ("the unspecified address", address.is_unspecified),
        ("a multicast address", address.is_multicast),
        ("an address of this host", address in set(own)),
    ):
        if hit:
            return reason
    return None


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """What one camera may connect to: anything but the refused ranges, except the networks
    in ``allow``; ``trusted_host`` (a config-file camera's own host, as written) is exempt."""

    allow: tuple[IpNetwork, ...] = ()
    trusted_host: str | None = None

    @classmethod
    def allowing(cls, networks: Sequence[str], trusted_host: str | None = None) -> NetworkPolicy:
        parsed = tuple(ipaddress.ip_network(net, strict=False) for net in networks)
        return cls(parsed, trusted_host.lower() if trusted_host else None)

    def trusts(self, host: str) -> bool:
        return self.trusted_host is not None and host.strip("[]").lower() == self.trusted_host

    def check(self, host: str, resolve: Resolver = resolve_host) -> list[IpAddress]:
        """The addresses of ``host`` a connection may use; :class:`PolicyRefused` when any
        is refused (a name that resolves to one refused address is refused whole: which
        address a client picks is not ours to know), :class:`SourceRejected` when it does
        not resolve."""
        addresses = resolve(host)
        if self.trusts(host):
            return addresses
        own = own_addresses()
        for address in addresses:
            reason = refusal(address, own)
            if reason is not None and not any(address in net for net in self.allow):
                raise PolicyRefused(
                    f"host {host[:80]!r} resolves to {address}, {reason}, outside"
                    " api.allow_networks"
                )
        return addresses
