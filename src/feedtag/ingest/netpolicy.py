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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import psutil

from feedtag.addresses import (
    METADATA_NETWORKS,
    NAT64_NETWORKS,
    IpAddress,
    IpNetwork,
    embedded_ipv4,
    refusal,
)
from feedtag.errors import SourceRejected

__all__ = [
    "METADATA_NETWORKS",
    "NAT64_NETWORKS",
    "IpAddress",
    "IpNetwork",
    "NetworkPolicy",
    "PolicyRefused",
    "Resolver",
    "embedded_ipv4",
    "own_addresses",
    "refusal",
    "resolve_host",
]

Resolver = Callable[[str], list[IpAddress]]

RESOLVE_TIMEOUT_S: Final = 5.0
#: what a viewer of the camera's status is told; the detail goes to the log
REFUSED_REASON: Final = "refused by network policy"
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


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """What one camera may connect to: anything but the refused ranges, except the networks
    in ``allow``; ``trusted_host`` (a config-file camera's own host, as written) is exempt."""

    allow: tuple[IpNetwork, ...] = ()
    trusted_host: str | None = None
    #: the config setting that widens ``allow``, named in refusals
    allow_setting: str = "api.allow_networks"

    @classmethod
    def allowing(
        cls,
        networks: Sequence[str],
        trusted_host: str | None = None,
        allow_setting: str = "api.allow_networks",
    ) -> NetworkPolicy:
        parsed = tuple(ipaddress.ip_network(net, strict=False) for net in networks)
        return cls(parsed, trusted_host.lower() if trusted_host else None, allow_setting)

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
                    f" {self.allow_setting}"
                )
        return addresses
