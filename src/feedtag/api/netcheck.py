"""Where a camera added through the API may point.

A camera URL is a request the server makes on the caller's behalf, so an API caller could
use it to reach what only the server can: services on loopback, link-local neighbours, and
cloud metadata endpoints that hand out credentials (169.254.169.254, fd00:ec2::254,
100.100.100.200). The host is resolved and every address it resolves to is checked;
``api.allow_networks`` lets an operator permit a range on purpose (a camera on the same
machine, a lab network). Config files are trusted as written; this check is for the API.

Resolution happens at check time; a name whose address changes later (DNS rebinding) could
still move, which is why metadata ranges are refused and not merely discouraged.

>>> check_camera_address(CameraUrl.parse("rtsp://127.0.0.1/x"), [])
Traceback (most recent call last):
...
feedtag.errors.SourceRejected: host resolves to 127.0.0.1, a loopback address; ...
>>> check_camera_address(CameraUrl.parse("rtsp://127.0.0.1/x"), ["127.0.0.0/8"])
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Final

from feedtag.errors import SourceRejected
from feedtag.urls import CameraUrl

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

RESOLVE_TIMEOUT_S: Final = 5.0
#: cloud instance metadata services (AWS/GCP/Azure/OpenStack, AWS IPv6, Alibaba)
METADATA_NETWORKS: Final = tuple(
    ipaddress.ip_network(net)
    for net in ("169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32")
)
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="resolve")


def _resolve(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def resolve_host(host: str, timeout: float = RESOLVE_TIMEOUT_S) -> list[IpAddress]:
    """Every address ``host`` resolves to; :class:`SourceRejected` when it does not resolve
    within ``timeout`` (getaddrinfo has no timeout of its own, so it runs in a pool)."""
    try:
        raw = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            raw = _POOL.submit(_resolve, host).result(timeout)
        except concurrent.futures.TimeoutError:
            raise SourceRejected(f"host {host!r} did not resolve within {timeout:g} s") from None
        except OSError:
            raise SourceRejected(f"host {host!r} does not resolve") from None
    addresses: list[IpAddress] = []
    for text in raw:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
        addresses.append(address)
    return addresses


def refusal(address: IpAddress) -> str | None:
    """Why ``address`` is refused by default, or None."""
    if any(address in network for network in METADATA_NETWORKS):
        return "a cloud metadata address"
    for reason, hit in (
        ("a loopback address", address.is_loopback),
        ("a link-local address", address.is_link_local),
        ("the unspecified address", address.is_unspecified),
        ("a multicast address", address.is_multicast),
    ):
        if hit:
            return reason
    return None


def check_camera_address(
    url: CameraUrl,
    allow_networks: Sequence[str],
    resolve: Callable[[str], list[IpAddress]] = resolve_host,
) -> None:
    """Refuse (:class:`SourceRejected`) a network camera whose host resolves to a refused
    address outside ``allow_networks``. Local files are checked by config validation."""
    if url.is_file:
        return
    allowed = [ipaddress.ip_network(net, strict=False) for net in allow_networks]
    for address in resolve(url.host):
        reason = refusal(address)
        if reason is not None and not any(address in network for network in allowed):
            raise SourceRejected(
                f"host resolves to {address}, {reason}; refused for cameras added through "
                "the API unless api.allow_networks contains it"
            )
