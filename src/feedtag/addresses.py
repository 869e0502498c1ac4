"""Which IP addresses a connection made on someone's behalf refuses by default.

A camera URL or a webhook URL is a request the server makes for someone else, so it could
be used to reach what only the server can: services on loopback or on the host's own
addresses, link-local neighbours, and cloud metadata endpoints that hand out credentials
(169.254.169.254, fd00:ec2::254, 100.100.100.200). :func:`refusal` says why an address is
one of those, in every spelling: IPv4-mapped (``::ffff:127.0.0.1``), IPv4-compatible
(``::127.0.0.1``), NAT64 (``64:ff9b::7f00:1``), 6to4 and Teredo addresses are judged by the
IPv4 address they carry.

This module sits beside ``core`` because ``config`` refuses literal addresses while it
validates (no I/O), and :mod:`feedtag.ingest.netpolicy` checks every resolved address when
it connects; ``config`` may not import a data-flow layer.

>>> refusal(ipaddress.ip_address("::ffff:169.254.169.254"))
'a cloud metadata address (as ::ffff:a9fe:a9fe)'
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

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


def refusal(address: IpAddress, own: Iterable[IpAddress] = ()) -> str | None:
    """Why ``address`` is refused by default, or None. ``own``: this host's addresses.

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
