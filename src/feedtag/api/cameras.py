"""``/api/v1/cameras``: list, status and thumbnails for viewers; restart for operators; add,
change and remove at run time for admins (camera URLs are requests the server makes).

A camera added or changed here passes the same :class:`~feedtag.config.models.CameraConfig`
validation as a config file (errors name the field, as 422), plus the network check of
:mod:`feedtag.api.netcheck`. Other cameras keep running untouched. Changes are stored and
outlive the process; ``defined_in`` says whether a camera comes from the config file, the
API, or both (docs/api.md).
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, status
from fastapi.responses import FileResponse, Response
from pydantic import ValidationError

from feedtag.api.access import Admin, FullAdmin, Operator, Principal, Viewer
from feedtag.api.netcheck import check_camera_address
from feedtag.api.state import ApiState, api_state, audit
from feedtag.config.models import CAMERA_ID_PATTERN, CameraConfig
from feedtag.core import CameraState, CameraStatus, VisionStatus
from feedtag.errors import SourceRejected, StoreError
from feedtag.urls import CameraUrl

router = APIRouter(prefix="/api/v1/cameras", tags=["cameras"])

CameraId = Path(pattern=CAMERA_ID_PATTERN, max_length=64, description="A camera id.")
NOT_FOUND: Final = "no such camera"
#: most cameras in one page of the list
MAX_PAGE: Final = 1000
#: what the list filters by and counts: the camera's status state, or ``disabled``
ShownState = Literal["online", "connecting", "stalled", "offline", "stopped", "disabled"]
SHOWN_STATES: Final[tuple[ShownState, ...]] = (
    "online", "connecting", "stalled", "offline", "stopped", "disabled",
)  # fmt: skip
PageLimit = Annotated[
    int | None,
    Query(ge=1, le=MAX_PAGE, description="Cameras per page, in id order; all when absent."),
]
PageCursor = Annotated[
    str | None,
    Query(pattern=CAMERA_ID_PATTERN, max_length=64, description="next_cursor of a page."),
]
NameFilter = Annotated[
    str | None,
    Query(max_length=200, description="Only cameras whose id or name holds this (any case)."),
]
StateFilter = Annotated[ShownState | None, Query(description="Only cameras in this state.")]
Brief = Annotated[
    bool, Query(description="Only each camera's id, name and enabled: no live status.")
]


def _not_found() -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)


def _visible_camera(state: ApiState, principal: Principal, camera_id: str) -> CameraConfig:
    camera = state.registry.get(camera_id)
    if camera is None or not principal.sees(camera_id):
        raise _not_found()  # the same answer for "missing" and "not yours"
    return camera


def _status_view(ingest: CameraStatus | None, url: CameraUrl) -> dict[str, Any] | None:
    if ingest is None:
        return None
    return {
        "state": ingest.state.value,
        "reason": _shown_reason(ingest.reason, url),
        "since": ingest.since,
        "mode": ingest.mode.value,
        "analysed_fps": round(ingest.analysed_fps, 3),
        "target_fps": ingest.target_fps,
        "analysis_level": ingest.analysis_level.value,
        "packet_gate": ingest.packet_gate.value,
        "decoded_fps": round(ingest.decoded_fps, 3),
        "drops": sum(ingest.counters.frames_dropped.values()),
        "reconnects": ingest.counters.reconnects,
        "stalls": ingest.counters.stalls,
        "keyframes_unchanged": ingest.counters.keyframes_unchanged,
        "ingest_cpu_s": round(ingest.counters.cpu_s, 3),
        "keyframe_interval_s": ingest.keyframe_interval_s,
        "width": ingest.width,
        "height": ingest.height,
    }


def _vision_view(vision: VisionStatus | None, media_cpu_s: float) -> dict[str, Any] | None:
    if vision is None:
        return None
    return {
        "counts": dict(vision.counts),
        "tracks": vision.tracks,
        "gated_ratio": round(vision.gate_ratio, 3),
        "latency_ms": None if vision.latency_ms is None else round(vision.latency_ms, 1),
        "frames": vision.frames,
        "detector_s": round(vision.detector_s, 3),
        "analysis_cpu_s": round(vision.analysis_cpu_s, 3),
        "media_cpu_s": round(media_cpu_s, 3),
    }


def _shown_url(url: CameraUrl) -> str:
    """The masked URL; of a local file only its name (server paths are not the caller's)."""
    if url.file_path is not None:
        return url.file_path.name
    return url.masked()


def _shown_reason(reason: str, url: CameraUrl) -> str:
    """A status reason with a local file's server path shortened to its name: source errors
    name the masked URL, which for a file is its absolute path under the media root."""
    if url.file_path is None:
        return reason
    return reason.replace(str(url.file_path), url.file_path.name)


def camera_view(
    camera: CameraConfig,
    ingest: CameraStatus | None,
    vision: VisionStatus | None,
    counts: dict[str, int] | None,
    media_cpu_s: float = 0.0,
) -> dict[str, Any]:
    """What the API says about one camera: the URL masked, the password never.
    ``media_cpu_s``: CPU of its snapshots, thumbnails and clips so far."""
    analytics = camera.analytics
    return {
        "id": camera.id,
        "name": camera.display_name,
        "enabled": camera.enabled,
        "analysis_fps": camera.analysis_fps,
        "url": _shown_url(camera.url),
        "status": _status_view(ingest, camera.url),
        "vision": _vision_view(vision, media_cpu_s),
        "zones": [
            {
                "name": zone.name,
                "polygon": [list(point) for point in zone.polygon],
                "roadway": zone.roadway,
                "direction_deg": zone.direction_deg(),
            }
            for zone in analytics.zones
        ],
        "lines": [
            {
                "name": line.name,
                "points": [list(line.start), list(line.end)],
                "direction": line.forward_name,
            }
            for line in analytics.lines
        ],
        "event_counts": counts or {},
        "thumbnail_url": f"/api/v1/cameras/{camera.id}/thumbnail.jpg",
    }


def _views(state: ApiState, cameras: list[CameraConfig]) -> list[dict[str, Any]]:
    return _Statuses(state).views(cameras)


def _validated(state: ApiState, data: dict[str, Any], *, new_url: bool = True) -> CameraConfig:
    """The camera ``data`` describes, validated like config; a new URL is also checked for
    where it points (a URL kept from before was checked, or came from the config file)."""
    media_root = state.config.media_root
    try:
        camera = CameraConfig.model_validate(data, context={"media_root": media_root})
    except ValidationError as error:
        detail = [
            {"loc": ["body", *error_item["loc"]], "msg": error_item["msg"],
             "type": error_item["type"]}
            for error_item in error.errors(include_input=False, include_context=False)
        ]  # fmt: skip
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail) from None
    if not new_url:
        return camera
    try:
        check_camera_address(camera.url, state.config.api.allow_networks)
    except SourceRejected as error:
        detail = [{"loc": ["body", "url"], "msg": str(error), "type": "network_refused"}]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail) from None
    return camera


CameraBody = Body(
    description="A camera, exactly as in the config file's `cameras:` list.",
    examples=[{"id": "gate", "name": "Gate", "url": "rtsp://cam.example/stream"}],
)


@router.get("", summary="Cameras this token may see, with live status")
def list_cameras(
    request: Request,
    principal: Viewer,
    *,
    limit: PageLimit = None,
    cursor: PageCursor = None,
    q: NameFilter = None,
    state: StateFilter = None,
    brief: Brief = False,
) -> dict[str, Any]:
    """Every camera the token may see, in config order; with ``limit``, a page of them in id
    order (``next_cursor`` asks for the next). ``total`` is how many match the filters on
    every page, ``states`` how many of the cameras ``q`` matches are in each state (for a
    summary beside one page). ``brief``: names only, without taking the engine's snapshot
    (no ``states``, no ``state`` filter)."""
    api = api_state(request)
    needle = (q or "").casefold()
    matched = [
        c for c in api.registry.all()
        if principal.sees(c.id)
        and (not needle or needle in c.id.casefold() or needle in c.display_name.casefold())
    ]  # fmt: skip
    snapshot = None if brief else _Statuses(api)
    states: dict[str, int] | None = None
    if snapshot is not None:
        shown = {camera.id: snapshot.state_of(camera) for camera in matched}
        states = dict.fromkeys(SHOWN_STATES, 0)
        for value in shown.values():
            states[value] += 1
        if state is not None:
            matched = [c for c in matched if shown[c.id] == state]
    elif state is not None:
        detail = [{"loc": ["query", "state"], "type": "value_error",
                   "msg": "a brief list has no states to filter by"}]  # fmt: skip
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)
    total = len(matched)
    next_cursor = None
    if limit is not None or cursor is not None:
        matched = sorted(matched, key=lambda c: c.id)
        if cursor is not None:
            matched = [c for c in matched if c.id > cursor]
        if limit is not None and len(matched) > limit:
            matched = matched[:limit]
            next_cursor = matched[-1].id
    items = (
        snapshot.views(matched, paged=limit is not None or cursor is not None)
        if snapshot is not None
        else [{"id": c.id, "name": c.display_name, "enabled": c.enabled} for c in matched]
    )
    return {
        "items": items,
        "next_cursor": next_cursor,
        "total": total,
        "states": states,
    }


class _Statuses:
    """What one answer needs of the engine: the state of every camera (for the summary and
    the state filter, asked once and only then) and the whole status of the cameras it
    shows (one page asks the engine for those cameras alone)."""

    def __init__(self, state: ApiState) -> None:
        self.api = state
        self.held = state.registry.held_statuses()  # a stored secret unresolved: not running

    @functools.cached_property
    def states(self) -> dict[str, CameraState]:
        return self.api.engine.states()

    def state_of(self, camera: CameraConfig) -> str:
        """What the dashboard shows: ``disabled``, else the camera's state (``connecting``
        before the first); one of :data:`SHOWN_STATES`."""
        if not camera.enabled:
            return "disabled"
        found = self.states.get(camera.id)
        if found is None:
            held = self.held.get(camera.id)
            found = CameraState.CONNECTING if held is None else held.state
        return found.value

    def views(self, cameras: list[CameraConfig], *, paged: bool = True) -> list[dict[str, Any]]:
        """The view of each of ``cameras``; unless ``paged``, they are the whole list, and
        the engine is asked for every camera rather than sent every id."""
        snapshot = self.api.engine.snapshot([c.id for c in cameras] if paged else None)
        running = {camera.camera_id: camera for camera in snapshot.cameras}
        views = []
        for camera in cameras:
            seen = running.get(camera.id)
            if seen is None:
                view = camera_view(camera, self.held.get(camera.id), None, None)
            else:
                view = camera_view(
                    camera, seen.ingest, seen.vision, seen.event_counts, seen.media_cpu_s
                )
            views.append({
                **view, "defined_in": self.api.registry.defined_in(camera.id),
                "shard": None if seen is None else seen.shard,
                "node": None if seen is None else seen.node,
            })  # fmt: skip
        return views


@router.get("/{camera_id}", summary="One camera with its live status")
def get_camera(request: Request, principal: Viewer, camera_id: str = CameraId) -> dict[str, Any]:
    state = api_state(request)
    camera = _visible_camera(state, principal, camera_id)
    return _views(state, [camera])[0]


@router.get(
    "/{camera_id}/thumbnail.jpg",
    summary="The latest anonymized thumbnail (JPEG, people covered)",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "none yet"}},
)
def get_thumbnail(request: Request, principal: Viewer, camera_id: str = CameraId) -> Response:
    state = api_state(request)
    visible = state.registry.get(camera_id) is not None and principal.sees(camera_id)
    path = None
    if visible:
        state.engine.want_thumbnail(camera_id)  # keeps it renewed while someone looks
        try:
            path = state.media.resolve(f"thumbnails/{camera_id}.jpg")
        except StoreError:
            path = None
    code = 200 if path is not None else 404
    audit(
        request, principal, "cameras.thumbnail", camera_id=camera_id, status_code=code,
        coalesce=True,
    )  # fmt: skip
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such camera or no thumbnail yet")
    return FileResponse(path, media_type="image/jpeg")


@router.post(
    "/{camera_id}/restart",
    summary="Restart one camera (operators); the others keep running",
)
def restart_camera(
    request: Request, principal: Operator, camera_id: str = CameraId
) -> dict[str, Any]:
    state = api_state(request)
    camera = _visible_camera(state, principal, camera_id)
    if not camera.enabled:
        raise HTTPException(status.HTTP_409_CONFLICT, "the camera is disabled")
    state.registry.restart(camera_id)
    return _views(state, [camera])[0]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Add a camera and start it (admins); the others keep running",
)
def add_camera(
    request: Request, principal: FullAdmin, body: dict[str, Any] = CameraBody
) -> dict[str, Any]:
    state = api_state(request)
    camera = _validated(state, body)
    if not state.registry.add(camera):
        detail = [{"loc": ["body", "id"], "msg": f"camera id {camera.id!r} is already used",
                   "type": "conflict"}]  # fmt: skip
        raise HTTPException(status.HTTP_409_CONFLICT, detail)
    return _views(state, [camera])[0]


def _settings(camera: CameraConfig) -> dict[str, Any]:
    """A camera's settings as input again, secrets included (they are merged, not shown)."""
    data = camera.model_dump(mode="python", exclude_none=True)
    data["url"] = camera.url.render() if not camera.url.is_file else str(camera.url.file_path)
    if camera.url.password is not None:
        data.pop("username", None)  # they are in the rendered URL
        data.pop("password", None)
    elif camera.password is not None:
        data["password"] = camera.password.get_secret_value()
    return data


@router.patch(
    "/{camera_id}", summary="Change some of a camera's settings (admins); only it restarts"
)
def change_camera(
    request: Request,
    principal: Admin,
    camera_id: str = CameraId,
    body: dict[str, Any] = CameraBody,
) -> dict[str, Any]:
    state = api_state(request)
    current = _visible_camera(state, principal, camera_id)
    if body.get("id", camera_id) != camera_id:
        detail = [{"loc": ["body", "id"], "msg": "the id cannot change; add a new camera",
                   "type": "value_error"}]  # fmt: skip
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)
    data = _settings(current)
    if "url" in body:
        for name in ("username", "password"):  # a new URL brings its own credentials
            data.pop(name, None)
    data.update(body)
    camera = _validated(state, data, new_url="url" in body)
    if not state.registry.change(camera):
        raise _not_found()
    return _views(state, [camera])[0]


@router.delete(
    "/{camera_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Stop and remove a camera (admins); its stored events stay",
)
def remove_camera(request: Request, principal: Admin, camera_id: str = CameraId) -> Response:
    state = api_state(request)
    _visible_camera(state, principal, camera_id)
    if not state.registry.remove(camera_id):
        raise _not_found()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
