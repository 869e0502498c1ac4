"""The app factory: :func:`create_app` builds the API over an engine's control interface
(:class:`~feedtag.runtime.control.EngineControl`) and the store.

Layout of the app (``docs/api.md`` has the table of routes and roles):

- ``/api/v1/...``   JSON routes, the live stream, media (thumbnails, snapshots, clips)
- ``/metrics``      Prometheus, ``/health`` liveness
- ``/``, ``/static`` the dashboard (``feedtag/web``), when present
- ``/api/v1/openapi.json``, ``/api/v1/docs`` the API's description (the docs page is plain
  HTML, no scripts, so it lives under the same Content-Security-Policy as everything else)

The app refuses to build when any route lacks an access decision, and the server (see
:func:`admin_credential_present`) refuses to start without an admin credential.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from feedtag import __version__
from feedtag.api import admin, cameras, events, stream
from feedtag.api.access import ACCESS_ATTRIBUTE, Access, Authenticator, public, undecided_routes
from feedtag.api.docs import docs_page
from feedtag.api.security import (
    InternalErrors,
    RequestLimits,
    SecurityHeaders,
    install_error_handlers,
)
from feedtag.api.state import ApiState, CameraRegistry
from feedtag.config.models import CameraConfig, FeedtagConfig
from feedtag.errors import ConfigError
from feedtag.runtime.bus import EventBus
from feedtag.runtime.catalog import CameraCatalog
from feedtag.runtime.control import EngineControl
from feedtag.runtime.database import open_database
from feedtag.store.media import MediaStore
from feedtag.store.tokens import has_admin_token, hash_token

log = logging.getLogger(__name__)

WEB_DIR: Final = Path(__file__).resolve().parent.parent / "web"
OPENAPI_PATH: Final = "/api/v1/openapi.json"
DOCS_PATH: Final = "/api/v1/docs"
MEDIA_FOLDER: Final = "media"


class DashboardFiles(StaticFiles):
    """The dashboard's static files: public (they hold no camera data; every datum they
    show comes from an authenticated API call)."""


setattr(DashboardFiles, ACCESS_ATTRIBUTE, Access("public", None, "static dashboard files"))


def admin_credential_present(config: FeedtagConfig, store: Engine) -> bool:
    """Whether an admin credential exists: ``api.admin_token`` or a stored admin token."""
    return config.api.admin_token is not None or has_admin_token(store)


def missing_admin_credential() -> ConfigError:
    """The error of a server asked to start without an admin credential."""
    return ConfigError(
        [("api.admin_token", "the API needs an admin credential: set api.admin_token "
          "(e.g. ${FEEDTAG_ADMIN_TOKEN}) or run "
          "`feedtag tokens create --name admin --role admin`")],
        "config",
    )  # fmt: skip


def create_app(
    config: FeedtagConfig,
    engine: EngineControl,
    *,
    store: Engine | None = None,
    web_dir: Path | None = WEB_DIR,
    require_admin_credential: bool = True,
    catalog: CameraCatalog | None = None,
) -> FastAPI:
    """The API over ``engine`` (started or not) and ``store``, the database the composition
    root opened (default: the configured one, opened and migrated here); ``web_dir`` None
    serves no dashboard. ``catalog`` (default: read from ``store``) holds the cameras
    ``engine`` was built with and stores changes made here. The live stream subscribes to the
    engine's events here and unsubscribes in :func:`close_app`.

    Raises :class:`ConfigError` when no admin credential exists and
    ``require_admin_credential`` is set.
    """
    if store is None:
        store = open_database(config.store)
    if require_admin_credential and not admin_credential_present(config, store):
        raise missing_admin_credential()
    if catalog is None:
        catalog = CameraCatalog(config, store)
    admin_token = config.api.admin_token
    bus = EventBus()
    engine.subscribe(bus.publish)
    state = ApiState(
        config=config,
        engine=engine,
        store=store,
        media=MediaStore(config.store.resolved_data_dir() / MEDIA_FOLDER),
        auth=Authenticator(
            store,
            None if admin_token is None else hash_token(admin_token.get_secret_value()),
            config.api.session_ttl_s,
        ),
        bus=bus,
        registry=CameraRegistry(engine, catalog.cameras(), catalog),
    )
    app = FastAPI(
        title="feedtag API",
        version=__version__,
        description="Tags and events from live camera feeds. Describes scenes; never "
        "identifies people. Authenticate with `Authorization: Bearer <token>`.",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.api = state
    for router in (cameras.router, events.router, stream.router, admin.router):
        app.include_router(router)
    _add_openapi(app)
    if web_dir is not None and web_dir.is_dir():
        _add_dashboard(app, web_dir)
    install_error_handlers(app)
    app.add_middleware(InternalErrors)
    app.add_middleware(RequestLimits, max_body_bytes=config.api.max_body_bytes,
                       max_url_chars=config.api.max_query_length)  # fmt: skip
    app.add_middleware(SecurityHeaders)
    missing = undecided_routes(app.routes)
    if missing:
        raise RuntimeError(f"routes without an access decision: {', '.join(missing)}")
    return app


def _add_dashboard(app: FastAPI, web_dir: Path) -> None:
    index = web_dir / "index.html"

    @app.get("/", include_in_schema=False,
             dependencies=[public("the dashboard's page; it holds no camera data")])  # fmt: skip
    def dashboard() -> Response:
        if not index.is_file():
            return JSONResponse({"detail": "no dashboard installed"}, status_code=404)
        return FileResponse(index, media_type="text/html")

    app.mount("/static", DashboardFiles(directory=web_dir), name="static")


def _add_openapi(app: FastAPI) -> None:
    reason = "the API's description holds no camera data"

    @app.get(OPENAPI_PATH, include_in_schema=False, dependencies=[public(reason)])
    def openapi() -> JSONResponse:
        return JSONResponse(_openapi_with_security(app))

    @app.get(DOCS_PATH, include_in_schema=False, dependencies=[public(reason)])
    def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(_openapi_with_security(app)))


def _openapi_with_security(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = app.openapi()
        components = schema.setdefault("components", {})
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        schema["security"] = [{"bearer": []}]
        _document_camera_body(schema, components.setdefault("schemas", {}))
        app.openapi_schema = schema
    return app.openapi_schema


def _document_camera_body(schema: dict[str, Any], schemas: dict[str, Any]) -> None:
    """The camera routes validate their bodies themselves (with the config's media root as
    context); their description points at the config file's own camera schema."""
    camera = CameraConfig.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(camera.pop("$defs", {}))
    schemas["CameraConfig"] = camera
    reference = {"$ref": "#/components/schemas/CameraConfig"}
    post = schema["paths"].get("/api/v1/cameras", {}).get("post")
    if post is not None:
        post["requestBody"]["content"]["application/json"]["schema"] = reference


def close_app(app: FastAPI) -> None:
    """Tell open streams to end (the server is stopping) and stop feeding the bus."""
    state: ApiState = app.state.api
    state.closing.set()
    state.engine.unsubscribe(state.bus.publish)
