"""What the API's routes share: the engine's control, the store, the media root, sign-ins, the event
bus and the camera registry. One :class:`ApiState` per app, at ``app.state.api``."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from fastapi import HTTPException, Request, status
from sqlalchemy import Engine

from feedtag.api.access import Authenticator, Principal
from feedtag.api.store_errors import AUDIT_WRITE, CAMERA_WRITE, store_errors
from feedtag.config.models import CameraConfig, FeedtagConfig
from feedtag.core import CameraStatus
from feedtag.errors import ConfigError, StoreError
from feedtag.runtime.bus import EventBus
from feedtag.runtime.catalog import CameraCatalog
from feedtag.runtime.control import EngineControl, held_offline
from feedtag.store.audit import AuditEntry, write_audit
from feedtag.store.links import LinkSigner, link_signer
from feedtag.store.media import MediaStore


class CameraRegistry:
    """Every configured camera (running or disabled), changed at run time by the API.

    Changes are applied to the engine under one lock, so two requests cannot interleave a
    remove and an add of the same camera. With a ``catalog`` they are stored first
    (:mod:`feedtag.runtime.catalog`), so they outlive the process; a change that cannot be
    stored is refused (422 naming the field, 503 when the store is down) and changes nothing.
    """

    def __init__(
        self,
        engine: EngineControl,
        cameras: list[CameraConfig],
        catalog: CameraCatalog | None = None,
    ) -> None:
        self.engine = engine
        self.lock = threading.Lock()
        self._cameras: dict[str, CameraConfig] = {camera.id: camera for camera in cameras}
        self.catalog = catalog

    def _stored(self, camera: CameraConfig) -> CameraConfig:
        """Store ``camera`` in the catalog; the camera as the node runs it."""
        if self.catalog is None:
            return camera
        with _store_errors_as_http():
            return self.catalog.put(camera)

    def _running(self, camera: CameraConfig) -> bool:
        entry = None if self.catalog is None else self.catalog.entry(camera.id)
        return camera.enabled and (entry is None or entry.runnable is not None)

    def defined_in(self, camera_id: str) -> str:
        """Where the camera is defined: ``config``, ``api`` or ``config+api``."""
        entry = None if self.catalog is None else self.catalog.entry(camera_id)
        return "config" if entry is None else entry.defined_in.value

    def held_statuses(self) -> dict[str, CameraStatus]:
        """Cameras that do not run because a stored secret cannot be resolved: offline,
        with the reason."""
        entries = [] if self.catalog is None else self.catalog.entries()
        return {
            e.camera.id: held_offline(e.camera.id, e.problem, e.since)
            for e in entries
            if e.problem is not None and e.camera.enabled
        }

    def get(self, camera_id: str) -> CameraConfig | None:
        with self.lock:
            return self._cameras.get(camera_id)

    def all(self) -> list[CameraConfig]:
        with self.lock:
            return list(self._cameras.values())

    def add(self, camera: CameraConfig) -> bool:
        """Add and (when enabled) start a camera; False if the id is taken."""
        with self.lock:
            if camera.id in self._cameras:
                return False
            runnable = self._stored(camera)
            self._cameras[camera.id] = camera
            if camera.enabled:
                self.engine.add_camera(runnable)
        return True

    def change(self, camera: CameraConfig) -> bool:
        """Replace a camera's settings, restarting only that camera; False if unknown."""
        with self.lock:
            previous = self._cameras.get(camera.id)
            if previous is None:
                return False
            running = self._running(previous)
            runnable = self._stored(camera)
            self._cameras[camera.id] = camera
            if running and camera.enabled:
                self.engine.change_camera(runnable)
            elif running:
                self.engine.remove_camera(camera.id)
            elif camera.enabled:
                self.engine.add_camera(runnable)
        return True

    def remove(self, camera_id: str) -> bool:
        """Stop and forget a camera; False if unknown."""
        with self.lock:
            camera = self._cameras.get(camera_id)
            if camera is None:
                return False
            running = self._running(camera)
            if self.catalog is not None:
                with _store_errors_as_http():
                    self.catalog.remove(camera_id)
            del self._cameras[camera_id]
            if running:
                self.engine.remove_camera(camera_id)
        return True

    def restart(self, camera_id: str) -> bool:
        """Restart a camera with its settings; False if unknown or disabled. A camera held
        back because its stored secret could not be resolved is resolved again (the
        variable may be set now) and started when it can be."""
        with self.lock:
            camera = self._cameras.get(camera_id)
            if camera is None or not camera.enabled:
                return False
            if self._running(camera):
                self.engine.restart_camera(camera_id)
                return True
        return self.change(camera)


@contextlib.contextmanager
def _store_errors_as_http() -> Iterator[None]:
    """A secret that cannot be stored is the caller's 422 (naming the field); a store that
    cannot be written, 503 (:data:`~feedtag.api.store_errors.CAMERA_WRITE`)."""
    with store_errors(CAMERA_WRITE):
        try:
            yield
        except ConfigError as error:
            detail = [
                {"loc": ["body", path], "msg": message, "type": "secret_not_stored"}
                for path, message in error.problems
            ]
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail) from None


#: repeated reads of the same thing by the same caller within this window share one entry
COALESCE_WINDOW_S: Final = 60.0


class AuditCoalescer:
    """Decides which repeated reads get an audit entry of their own.

    An open dashboard fetches every camera's thumbnail every few seconds: an entry per fetch
    would be 17,000 rows per camera per day per screen, and would bury the reads that matter.
    So for thumbnails the first read of a (caller, camera, address, outcome) in each window is
    written, before it is answered as always, and the reads that follow within the window
    are counted into the next entry's detail ("+N reads since the last entry"). Every read is
    still accounted for; none is answered without an entry covering it having been written
    first, except the count of a window's trailing reads when the process stops.
    """

    def __init__(self, window_s: float = COALESCE_WINDOW_S) -> None:
        self.window_s = window_s
        self._lock = threading.Lock()
        self._last: dict[tuple[object, ...], tuple[float, int]] = {}  # key -> (written, since)

    def admit(self, key: tuple[object, ...], now: float) -> int | None:
        """None when this read is covered by a recent entry (and counted); else the number
        of reads since the last entry, to write into the new one."""
        with self._lock:
            written, since = self._last.get(key, (float("-inf"), 0))
            if now - written < self.window_s:
                self._last[key] = (written, since + 1)
                return None
            self._last[key] = (now, 0)
            if len(self._last) > 100_000:  # callers come and go; keep the map bounded
                horizon = now - self.window_s
                self._last = {k: v for k, v in self._last.items() if v[0] >= horizon}
            return since

    def forget(self, key: tuple[object, ...]) -> None:
        """The entry for ``key`` could not be written: the next read must try again."""
        with self._lock:
            self._last.pop(key, None)


@dataclass
class ApiState:
    config: FeedtagConfig
    engine: EngineControl
    store: Engine
    media: MediaStore
    auth: Authenticator
    bus: EventBus
    registry: CameraRegistry
    #: set when the server stops, so that open live streams end
    closing: threading.Event = field(default_factory=threading.Event)
    coalescer: AuditCoalescer = field(default_factory=AuditCoalescer)

    @functools.cached_property
    def links(self) -> LinkSigner | None:
        """What signed snapshot links are verified with (``api.link_key``, else
        ``FEEDTAG_SECRET_KEY``); None when neither is set and no link is accepted."""
        return link_signer(self.config, os.environ)


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


def client_of(request: Request) -> str | None:
    return None if request.client is None else request.client.host


def audit(
    request: Request,
    principal: Principal,
    action: str,
    *,
    camera_id: str | None = None,
    object_id: str | None = None,
    detail: str | None = None,
    status_code: int = 200,
    coalesce: bool = False,
) -> None:
    """Write one audit entry before a read is answered; 503 (and no answer) when the audit
    log cannot be written, so that nothing is ever served unaudited. With ``coalesce``,
    repeated reads share entries (:class:`AuditCoalescer`)."""
    state = api_state(request)
    key = (principal.token_id, action, camera_id, object_id, client_of(request), status_code)
    if coalesce:
        since = state.coalescer.admit(key, time.time())
        if since is None:
            return
        if since:
            detail = f"{detail + '; ' if detail else ''}+{since} reads since the last entry"
    entry = AuditEntry(
        at=time.time(), token_id=principal.token_id, token_name=principal.name,
        role=principal.role.value, action=action, camera_id=camera_id, object_id=object_id,
        detail=detail, client=client_of(request), status=status_code,
    )  # fmt: skip
    with store_errors(AUDIT_WRITE):
        try:
            write_audit(state.store, entry)
        except StoreError:
            if coalesce:  # not written, so the next read must try again
                state.coalescer.forget(key)
            raise
