"""Where a camera added through the API may point, checked when it is added.

The check that counts is made on every connection (:mod:`feedtag.ingest.netpolicy`, through
the connection guard for HTTP(S)); this one runs when an admin adds or changes a camera, so
that an address refused anyway is answered at once with a 422 naming why, instead of a
camera that only ever shows ``refused by network policy``.

>>> check_camera_address(CameraUrl.parse("rtsp://127.0.0.1/x"), [])
Traceback (most recent call last):
...
feedtag.errors.SourceRejected: host resolves to 127.0.0.1, a loopback address; ...
>>> check_camera_address(CameraUrl.parse("rtsp://127.0.0.1/x"), ["127.0.0.0/8"])
"""

from __future__ import annotations

from collections.abc import Sequence

from feedtag.errors import SourceRejected
from feedtag.ingest.netpolicy import (
    IpAddress,
    NetworkPolicy,
    PolicyRefused,
    Resolver,
    refusal,
    resolve_host,
)
from feedtag.urls import CameraUrl

__all__ = ["IpAddress", "check_camera_address", "refusal", "resolve_host"]


def check_camera_address(
    url: CameraUrl, allow_networks: Sequence[str], resolve: Resolver = resolve_host
) -> None:
    """Refuse (:class:`SourceRejected`) a network camera whose host resolves to a refused
    address outside ``allow_networks``. Local files are checked by config validation."""
    if url.is_file:
        return
    try:
        NetworkPolicy.allowing(allow_networks).check(url.host, resolve)
    except PolicyRefused as refused:
        detail = refused.detail.split(" resolves to ", 1)[-1].rsplit(", outside", 1)[0]
        raise SourceRejected(
            f"host resolves to {detail}; refused for cameras added through the API unless"
            " api.allow_networks contains it"
        ) from None
