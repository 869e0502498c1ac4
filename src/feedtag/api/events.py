"""``/api/v1/events``, ``/api/v1/tags``, ``/api/v1/stats``: what cameras saw, for the cameras
a token may see. Every read is audited before it is answered (:func:`~feedtag.api.state.audit`).

Another camera's event answers 404, exactly like a missing one, and searches never return
it: the camera filter is always cut down to the caller's cameras.

An event's snapshot can also be fetched with a signed, expiring link and no token
(:func:`snapshot_reader`, :mod:`feedtag.store.links`), as alert payloads hand out. A link
that does not verify grants nothing: the usual credentials decide, and without them the
answer is 401 ``link expired or invalid``, whatever was wrong with it.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import FileResponse, Response
from sqlalchemy import select

from feedtag.api.access import (
    Access,
    Admin,
    Principal,
    Viewer,
    decided,
    link_principal,
    require_viewer,
)
from feedtag.api.state import ApiState, api_state, audit
from feedtag.api.store_errors import EVENTS_QUERY, store_errors
from feedtag.core import Event, EventKind
from feedtag.errors import StoreError, StoreUnavailable
from feedtag.store.links import snapshot_path
from feedtag.store.query import (
    MAX_LIMIT,
    CountQuery,
    EventQuery,
    TagQuery,
    count_events,
    count_events_by_kind,
    search_events,
    search_tags,
    top_cameras,
)
from feedtag.store.schema import events as events_table
from feedtag.store.schema import row_event
from feedtag.store.tokens import Role

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["events"])

EVENT_ID: Final = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
MAX_FILTER_VALUES: Final = 100
MAX_BUCKETS: Final = 10_000
DEFAULT_STATS_WINDOW_S: Final = 86_400.0
#: Unix seconds up to the year 5138: bounds that keep floats and SQL sane
TIME_MIN: Final = 0.0
TIME_MAX: Final = 1e11

EventId = Annotated[str, Path(pattern=EVENT_ID, max_length=128, description="An event id.")]
Cameras = Annotated[
    list[str], Query(alias="camera", max_length=MAX_FILTER_VALUES, description="Repeatable.")
]
Kinds = Annotated[list[EventKind], Query(alias="kind", max_length=MAX_FILTER_VALUES)]
Labels = Annotated[list[str], Query(alias="label", max_length=MAX_FILTER_VALUES)]
Zones = Annotated[list[str], Query(alias="zone", max_length=MAX_FILTER_VALUES)]
Since = Annotated[
    float | None, Query(ge=TIME_MIN, le=TIME_MAX, description="Unix seconds, inclusive.")
]
Until = Annotated[
    float | None, Query(ge=TIME_MIN, le=TIME_MAX, description="Unix seconds, exclusive.")
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of a page.")]
#: a signed link's values are taken as sent and checked by the signer: a malformed one is
#: refused like a wrong one (401), never with a validation error that says what was wrong
LinkExpires = Annotated[
    str | None, Query(description="Signed link (instead of a token): expiry, Unix seconds.")
]
LinkRoute = Annotated[
    str | None, Query(description="Signed link: the alert route it was made for.")
]
LinkSignature = Annotated[str | None, Query(description="Signed link: its HMAC-SHA256, hex.")]
LINK_REFUSED: Final = "link expired or invalid"


def _store_call(call: Any, *args: Any) -> Any:
    with store_errors(EVENTS_QUERY):
        return call(*args)


def event_view(event: Event) -> dict[str, Any]:
    """An event as the API shows it, with links to its media the caller may fetch."""
    view = event.to_dict()
    attributes = dict(view["attributes"])
    has_snapshot = bool(attributes.pop("snapshot", None))
    has_clip = bool(attributes.pop("clip", None))
    view["attributes"] = attributes  # media paths stay server-side
    base = f"/api/v1/events/{event.event_id}"
    view["snapshot_url"] = f"{base}/snapshot.jpg" if has_snapshot else None
    view["clip_url"] = f"{base}/clip.mp4" if has_clip else None  # fetching it needs admin
    return view


def _detail(**filters: Any) -> str:
    shown = {key: value for key, value in filters.items() if value not in (None, [], ())}
    return " ".join(f"{key}={value}" for key, value in sorted(shown.items()))


def find_event(state: ApiState, principal: Principal, event_id: str) -> Event | None:
    """The event with ``event_id`` if this caller may see it."""
    statement = select(events_table).where(events_table.c.event_id == event_id)

    def read() -> Any:
        try:
            with state.store.connect() as connection:
                return connection.execute(statement).first()
        except Exception:  # noqa: BLE001 - the store boundary: unavailable, whatever the cause
            raise StoreUnavailable("store read failed") from None

    row = _store_call(read)
    if row is None:
        return None
    event = row_event(row)
    return event if principal.sees(event.camera_id) else None


@router.get("/events", summary="Search events, newest first, one page at a time")
def list_events(
    request: Request,
    principal: Viewer,
    *,
    cameras: Cameras = [],  # noqa: B006 - FastAPI copies defaults
    kinds: Kinds = [],  # noqa: B006
    labels: Labels = [],  # noqa: B006
    zones: Zones = [],  # noqa: B006
    since: Since = None,
    until: Until = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    state = api_state(request)
    visible = principal.visible(cameras)
    detail = _detail(camera=cameras, kind=[k.value for k in kinds], label=labels, zone=zones,
                     since=since, until=until, cursor=cursor)  # fmt: skip
    audit(request, principal, "events.search", detail=detail)
    if visible == []:
        return {"items": [], "next_cursor": None}
    query = EventQuery(
        camera_ids=visible or (), start=since, end=until, kinds=kinds, labels=labels,
        zones=zones, limit=limit, cursor=cursor,
    )  # fmt: skip
    page = _store_call(search_events, state.store, query)
    return {
        "items": [event_view(event) for event in page.items],
        "next_cursor": page.next_cursor,
    }


@router.get("/events/{event_id}", summary="One event")
def get_event(request: Request, principal: Viewer, event_id: EventId) -> dict[str, Any]:
    event = find_event(api_state(request), principal, event_id)
    audit(request, principal, "events.get", object_id=event_id,
          camera_id=None if event is None else event.camera_id,
          status_code=200 if event else 404)  # fmt: skip
    if event is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such event")
    return event_view(event)


def _media(
    request: Request, principal: Principal, event_id: str, attribute: str, media_type: str
) -> Response:
    state = api_state(request)
    event = find_event(state, principal, event_id)
    path = None
    relative = None if event is None else event.attributes.get(attribute)
    if isinstance(relative, str) and relative:
        try:
            path = state.media.resolve(relative)  # refuses anything outside the media root
        except StoreError:
            path = None
    audit(request, principal, f"events.{attribute}", object_id=event_id,
          camera_id=None if event is None else event.camera_id,
          status_code=200 if path else 404)  # fmt: skip
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such event or no {attribute}")
    return FileResponse(path, media_type=media_type)


@decided(Access("role", Role.VIEWER))
def snapshot_reader(
    request: Request,
    event_id: EventId,
    expires: LinkExpires = None,
    route: LinkRoute = None,
    sig: LinkSignature = None,
) -> Principal:
    """The caller of a snapshot read: the link's principal when ``expires``, ``route`` and
    ``sig`` sign this event's snapshot path and have not expired; else the usual
    credentials, and 401 ``link expired or invalid`` without them."""
    if expires is None and route is None and sig is None:
        return require_viewer(request)
    signer = api_state(request).links
    path = snapshot_path(event_id)
    if (
        signer is not None
        and route is not None
        and signer.verify(path, route, expires, sig, now=time.time())
    ):
        return link_principal(route)
    log.debug("signed link refused: event %s", event_id)  # never the signature
    try:
        return require_viewer(request)  # a token of the caller's own still counts
    except HTTPException as error:
        if error.status_code != status.HTTP_401_UNAUTHORIZED:
            raise
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED, LINK_REFUSED, headers={"WWW-Authenticate": "Bearer"}
    )


@router.get(
    "/events/{event_id}/snapshot.jpg",
    summary="The event's anonymized snapshot (JPEG, people covered); a token or a signed link",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def get_snapshot(
    request: Request,
    principal: Annotated[Principal, Depends(snapshot_reader)],
    event_id: EventId,
) -> Response:
    return _media(request, principal, event_id, "snapshot", "image/jpeg")


@router.get(
    "/events/{event_id}/clip.mp4",
    summary="The event's clip: raw video, people NOT covered; admins only",
    response_class=Response,
    responses={200: {"content": {"video/mp4": {}}}},
)
def get_clip(request: Request, principal: Admin, event_id: EventId) -> Response:
    return _media(request, principal, event_id, "clip", "video/mp4")


@router.get("/tags", summary="When a label was visible (at least min_count at once)")
def list_tags(
    request: Request,
    principal: Viewer,
    *,
    label: Annotated[str, Query(min_length=1, max_length=100)],
    min_count: Annotated[int, Query(ge=1, le=10_000)] = 1,
    cameras: Cameras = [],  # noqa: B006
    zone: Annotated[str | None, Query(max_length=200)] = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    state = api_state(request)
    visible = principal.visible(cameras)
    detail = _detail(label=label, min_count=min_count, camera=cameras, zone=zone, since=since,
                     until=until, cursor=cursor)  # fmt: skip
    audit(request, principal, "tags.search", detail=detail)
    if visible == []:
        return {"items": [], "next_cursor": None}
    query = TagQuery(
        label, min_count=min_count, camera_ids=visible or (), zone=zone, start=since,
        end=until, limit=limit, cursor=cursor,
    )  # fmt: skip
    page = _store_call(search_tags, state.store, query)
    return {"items": [tag.to_dict() for tag in page.items], "next_cursor": page.next_cursor}


StatsBy = Annotated[
    Literal["camera", "label"],
    Query(description="`camera`: buckets per camera and label; `label`: buckets per label over "
          "every camera, and the `top` cameras' counts per label (as many rows whatever the "
          "cameras)."),
]  # fmt: skip
StatsTop = Annotated[
    int, Query(ge=1, le=1000, description="With `by=label`: how many cameras, most events first.")
]


@router.get("/stats", summary="Event counts per camera, label and time bucket; totals per kind")
def get_stats(
    request: Request,
    principal: Viewer,
    *,
    since: Since = None,
    until: Until = None,
    bucket_s: Annotated[float, Query(ge=60, le=31 * 86400)] = 3600.0,
    cameras: Cameras = [],  # noqa: B006
    kinds: Kinds = [],  # noqa: B006
    labels: Labels = [],  # noqa: B006
    by: StatsBy = "camera",
    top: StatsTop = 25,
) -> dict[str, Any]:
    """Event counts in time buckets with totals per kind and per camera. ``by=label`` is
    for a site with many cameras: buckets per label, ``by_camera`` and ``top_cameras`` for
    the ``top`` cameras with the most events, and ``cameras``, how many had any."""
    state = api_state(request)
    end = until if until is not None else time.time()
    start = since if since is not None else end - DEFAULT_STATS_WINDOW_S
    if start >= end or (end - start) / bucket_s > MAX_BUCKETS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"expected since < until and at most {MAX_BUCKETS} buckets",
        )
    visible = principal.visible(cameras)
    detail = _detail(since=since, until=until, bucket_s=bucket_s, camera=cameras,
                     kind=[k.value for k in kinds], label=labels)  # fmt: skip
    audit(request, principal, "stats", detail=detail)
    answer: dict[str, Any] = {"since": start, "until": end, "bucket_s": bucket_s}
    if visible == []:
        return {**answer, "buckets": [], "by_kind": {}, "by_camera": {}, "total": 0}
    query = CountQuery(start, end, bucket_s, camera_ids=visible or (), kinds=kinds,
                       labels=labels)  # fmt: skip
    if by == "label":
        return {**answer, **_stats_by_label(state, query, top)}
    buckets = _store_call(count_events, state.store, query)
    by_camera: dict[str, int] = {}
    for bucket in buckets:
        by_camera[bucket.camera_id] = by_camera.get(bucket.camera_id, 0) + bucket.count
    by_kind = _store_call(count_events_by_kind, state.store, query)
    return {
        **answer,
        "buckets": [b.to_dict() for b in buckets],
        "by_kind": by_kind,
        "by_camera": by_camera,
        "total": sum(by_camera.values()),
    }


def _stats_by_label(state: ApiState, query: CountQuery, top: int) -> dict[str, Any]:
    with store_errors(EVENTS_QUERY):
        buckets = count_events(state.store, query, per_camera=False)
        ranked = top_cameras(state.store, query, top)
        by_kind = count_events_by_kind(state.store, query)
    by_camera: dict[str, int] = {}
    for camera_id, _, count in ranked.counts:
        by_camera[camera_id] = by_camera.get(camera_id, 0) + count
    return {
        "buckets": [b.to_dict() for b in buckets],
        "by_kind": by_kind,
        "by_camera": by_camera,
        "top_cameras": [
            {"camera_id": camera_id, "label": label, "count": count}
            for camera_id, label, count in ranked.counts
        ],
        "cameras": ranked.cameras,
        "total": sum(b.count for b in buckets),
    }
