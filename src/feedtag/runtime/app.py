"""The composition root of a feedtag node: what ``feedtag run`` and ``feedtag demo`` start.

:class:`NodeApp` builds every long-lived part once, in order, and stops them in the reverse
order:

1. the database, opened and migrated once (:func:`~feedtag.runtime.database.open_database`);
2. the detector (the default model is built on first use);
3. the store writer with its outage spool, the media store and the retention job, over that
   database (detection only: without it nothing is written), and, when ``alerts`` names a
   webhook or an MQTT broker, the alert dispatcher that sends the outbox the writer fills
   (:mod:`feedtag.alerts`);
4. the node engine, behind its control interface
   (:class:`~feedtag.runtime.local.LocalEngineControl`);
5. the API server (:class:`~feedtag.runtime.serve.ApiServer`), when ``api`` says to serve it
   and an admin credential exists. ``runtime`` never imports ``api``: the caller hands in
   the app factory (:class:`ApiParts`), and the API sees only the control interface and
   the database;
6. SIGINT and SIGTERM, while :meth:`NodeApp.run` runs.

Stopping takes the API server down first (open streams end), then the engine (cameras,
analysis, rules; what is open is written), then the store writer (what is queued is
written or spooled), the alert dispatcher (what is not sent stays in the outbox for the
next start), the retention job and the database, within :data:`STOP_DEADLINE_S`
when nothing is stuck.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, Final

from sqlalchemy import Engine

from feedtag.alerts.dispatcher import AlertDispatcher
from feedtag.alerts.routes import build_router
from feedtag.config.models import CameraConfig, FeedtagConfig
from feedtag.errors import ConfigError, FeedtagError, StoreError
from feedtag.runtime.catalog import CameraCatalog
from feedtag.runtime.control import DEFAULT_STOP_DEADLINE_S, EngineControl, EngineSnapshot
from feedtag.runtime.database import open_database
from feedtag.runtime.detection import build_detector
from feedtag.runtime.events import OpenStore, open_store
from feedtag.runtime.local import LocalEngineControl
from feedtag.runtime.node import NodeEngine
from feedtag.runtime.serve import ApiServer, ServeError
from feedtag.store.links import links_off_reason, snapshot_links

log = logging.getLogger(__name__)

#: the whole stop, when nothing is stuck (the store writer still writes what it holds)
STOP_DEADLINE_S: Final = 5.0
#: the API server's share: open streams end at once, uvicorn's graceful shutdown is bounded
SERVER_STOP_S: Final = 2.5
#: kept back from the engine's share for the store writer and the retention job
STORE_CLOSE_RESERVE_S: Final = 0.5
LOCAL_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class StopReport:
    """How a stop went: how long it took, and whether every thread ended in time."""

    seconds: float
    clean: bool


@dataclass(frozen=True, slots=True)
class ApiParts:
    """The API layer, as the composition root needs it (``feedtag.cli`` fills it in from
    ``feedtag.api.app``): whether an admin credential exists, the error when one must and
    does not, the ASGI app over an engine's control and the database, and what to do to an
    app before its server stops (end open streams, unsubscribe from the engine)."""

    credential_present: Callable[[FeedtagConfig, Engine], bool]
    missing_credential: Callable[[], FeedtagError]
    create: Callable[[FeedtagConfig, EngineControl, Engine, CameraCatalog], Any]
    close: Callable[[Any], None]


@dataclass(frozen=True, slots=True)
class RayOptions:
    """Run the cameras on a Ray cluster (``feedtag run --engine ray``): join the one at
    ``address``, or start a local Ray on loopback; ``shards`` shard actors (None: one per
    ``shard_cpus`` of the cluster's cores) of ``shard_cpus`` cores each (None:
    ``engine.cores_per_shard``). PostgreSQL (``store.url``) is required."""

    address: str | None = None
    shards: int | None = None
    shard_cpus: float | None = None


def require_postgresql(config: FeedtagConfig) -> None:
    """The Ray engine's shards on many machines share one store: PostgreSQL. Raises
    :class:`~feedtag.errors.ConfigError` naming ``store.url`` otherwise."""
    url = config.store.url
    if url is None or not url.get_secret_value().startswith("postgresql"):
        problem = "the ray engine needs a PostgreSQL store (postgresql://...) shared by its shards"
        raise ConfigError([("store.url", problem)])


class NodeApp:
    """One feedtag node: database, detector, store, engine, API server, signals.

    ``api`` None never serves the API. ``on_api`` is called with the server's URL once it
    listens; ``fallback_port`` serves on a free port when the configured one is taken (the
    demo). ``before_detector`` is called just before the detector is loaded (it may take a
    minute), ``progress`` reports the default model's build. A node app runs once.

    >>> from feedtag.config import parse_config
    >>> app = NodeApp(parse_config("cameras: []\\ndetector: {enabled: false}"))
    >>> app.start(); app.control.snapshot().cameras, app.stop()
    ((), True)
    """

    def __init__(
        self,
        config: FeedtagConfig,
        *,
        api: ApiParts | None = None,
        on_api: Callable[[str], None] | None = None,
        fallback_port: bool = False,
        progress: Progress | None = None,
        before_detector: Callable[[], None] | None = None,
        ray: RayOptions | None = None,
    ) -> None:
        if ray is not None:
            require_postgresql(config)
            if importlib.util.find_spec("ray") is None:
                problem = "the ray engine needs Ray: pip install 'feedtag[ray]'"
                raise ConfigError([("--engine", problem)], "arguments")
        self.config = config
        self._ray = ray
        self._api = api
        self._on_api = on_api
        self._fallback_port = fallback_port
        self._progress = progress
        self._before_detector = before_detector
        self._database: Engine | None = None
        self._store: OpenStore | None = None
        self._alerts: AlertDispatcher | None = None
        self._catalog: CameraCatalog | None = None
        self._control: EngineControl | None = None
        self._server: ApiServer | None = None
        self._stopping = threading.Event()
        #: how the last :meth:`stop` went (None before the first)
        self.last_stop: StopReport | None = None

    @property
    def control(self) -> EngineControl:
        """The engine's control interface (after :meth:`start`)."""
        if self._control is None:
            raise RuntimeError("the node app has not been started")
        return self._control

    @property
    def api_url(self) -> str | None:
        """Where the API listens, or None when it is not served."""
        return None if self._server is None else self._server.url

    def start(self) -> None:
        """Build every part and start the engine."""
        self._build()
        self.control.start()

    def run(
        self, seconds: float | None, on_status: Callable[[EngineSnapshot], None]
    ) -> EngineSnapshot:
        """Start, report a snapshot to ``on_status`` every ``engine.status_interval_s``
        until SIGINT, SIGTERM or ``seconds`` (None: no limit), stop; the last snapshot."""

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._stopping.set()

        self._build()
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, on_signal) for sig in signals}
        try:
            self.control.start()
            started = time.monotonic()
            while not self._stopping.wait(self.config.engine.status_interval_s):
                on_status(self.control.snapshot())
                if seconds is not None and time.monotonic() - started >= seconds:
                    break
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.control.snapshot()

    def stop(self) -> bool:
        """Stop every part in order; True if every thread ended in time."""
        began = time.monotonic()
        end = began + STOP_DEADLINE_S
        clean = True
        if self._server is not None:
            clean = self._server.stop(SERVER_STOP_S)
            self._server = None
        if self._control is not None:
            left = end - time.monotonic() - STORE_CLOSE_RESERVE_S
            share = max(0.5, min(DEFAULT_STOP_DEADLINE_S, left))
            clean = self._control.stop(share) and clean
        if self._store is not None:
            self._store.writer.close()  # writes or spools what it holds: nothing is lost
        if self._alerts is not None:  # what is not sent stays pending in the outbox
            self._alerts.stop(max(0.1, end - time.monotonic()))
            self._alerts = None
        if self._store is not None:
            self._store.retention.stop(max(0.1, end - time.monotonic()))
            self._store = None
        if self._database is not None:
            self._database.dispose()
            self._database = None
        self.last_stop = StopReport(time.monotonic() - began, clean)
        return clean

    def _build(self) -> None:
        config = self.config
        api = self._api if config.api.enabled is not False else None
        try:
            database = None
            if api is not None or config.detector.enabled:
                database = self._database = open_database(config.store)
            if api is not None and database is not None:
                api = api if self._credential_present(api, database) else None
            if self._ray is not None:
                database = self._database = database or open_database(config.store)
            self._catalog = camera_catalog(config, database)
            if self._ray is not None and database is not None:
                self._control = self._ray_engine(self._ray, database)
            else:
                node = self._engine(database, self._catalog.runnable())
                alerts = self._alerts
                self._control = LocalEngineControl(
                    node, alert_stats=None if alerts is None else alerts.stats
                )
            if api is not None and database is not None:
                self._serve(api, database)
        except BaseException:
            self.stop()
            raise

    def _credential_present(self, api: ApiParts, database: Engine) -> bool:
        """Checked before anything starts: the server never runs without an admin
        credential, and with ``api.enabled: true`` a missing one is an error."""
        if api.credential_present(self.config, database):
            return True
        if self.config.api.enabled:
            raise api.missing_credential()
        log.info(
            "API not served: no admin credential (set api.admin_token, or run "
            "`feedtag tokens create --name admin --role admin`)"
        )
        return False

    def _engine(self, database: Engine | None, cameras: list[CameraConfig]) -> NodeEngine:
        config = self.config
        if not config.detector.enabled or database is None:
            return NodeEngine(config, cameras=cameras)
        if self._before_detector is not None:
            self._before_detector()
        detector = build_detector(config.detector, self._progress)
        alerting = bool(config.alerts.webhooks) or config.alerts.mqtt is not None
        router = build_router(config.alerts) if alerting else None
        self._store = open_store(config.store, database, router=router)
        if alerting:
            self._alerts = self._alert_dispatcher(database)
            self._alerts.start()
            # each commit may have queued alerts: the dispatcher looks at once, not after its
            # poll interval
            self._store.writer.listeners.append(self._alerts.wake)
        return NodeEngine.from_config(config, detector=detector, store=self._store, cameras=cameras)

    def _alert_dispatcher(self, database: Engine) -> AlertDispatcher:
        """The dispatcher of the configured routes, with signed snapshot links when
        ``api.public_url`` and a link key are set (else payloads carry ``snapshot_url: null``,
        and the log says how to turn links on)."""
        config = self.config
        links = snapshot_links(config, os.environ)
        if links is None:
            log.info("%s", links_off_reason(config, os.environ))
        cameras = [camera.id for camera in config.cameras]
        return AlertDispatcher(database, config.alerts, links=links, cameras=cameras)

    def _ray_engine(self, options: RayOptions, database: Engine) -> EngineControl:
        """The Ray engine: shards run detectors and write the store; this process runs the
        coordinator's handle, the API and the alert dispatcher."""
        from feedtag.runtime.ray_engine import (  # noqa: PLC0415
            RayEngineControl,
            cluster_cpus,
            cluster_gpus,
            init_ray,
            shard_count,
        )

        config = self.config
        if bool(config.alerts.webhooks) or config.alerts.mqtt is not None:
            self._alerts = self._alert_dispatcher(database)
            self._alerts.start()
        connected = init_ray(options.address)
        shard_cpus = options.shard_cpus or config.engine.cores_per_shard
        shard_gpus = config.engine.gpus_per_shard
        gpus = cluster_gpus() if shard_gpus > 0 else 0.0
        if shard_gpus > 0 and gpus < shard_gpus:
            problem = f"{shard_gpus:g} GPU per shard, but the Ray cluster has {gpus:g} GPU(s)"
            raise ConfigError([("engine.gpus_per_shard", f"{problem}: no shard could be placed")])
        shards = options.shards or shard_count(cluster_cpus(), shard_cpus, gpus, shard_gpus)
        with_gpu = f" and {shard_gpus:g} GPU" if shard_gpus > 0 else ""
        log.info("ray engine: %d shard(s) of %g core(s)%s", shards, shard_cpus, with_gpu)
        return RayEngineControl(
            config, database, shards=shards, shard_cpus=shard_cpus, disconnect=connected
        )

    def _serve(self, parts: ApiParts, database: Engine) -> None:
        """Serve the API and dashboard beside the engine; a taken port falls back to a free
        one when ``fallback_port``."""
        settings = self.config.api
        if settings.host not in LOCAL_HOSTS:
            log.warning(
                "the API listens on %s without TLS: put a TLS proxy in front of it, tokens and "
                "session cookies travel in clear text otherwise",
                settings.host,
            )
        assert self._catalog is not None  # noqa: S101 - built just before, in _build
        app = parts.create(self.config, self.control, database, self._catalog)
        server = ApiServer(app, settings.host, settings.port, before_stop=lambda: parts.close(app))
        try:
            server.start()
        except ServeError:
            if not self._fallback_port:
                raise
            server = ApiServer(app, settings.host, 0, before_stop=lambda: parts.close(app))
            server.start()
        self._server = server
        if self._on_api is not None:
            self._on_api(server.url)


def camera_catalog(config: FeedtagConfig, database: Engine | None) -> CameraCatalog:
    """The config file's cameras with the changes stored through the API laid over them;
    the file's alone, with a warning, when the store cannot be read (changes through the API
    are still stored, or refused)."""
    if database is None:
        return CameraCatalog(config, None)
    try:
        return CameraCatalog(config, database)
    except StoreError as error:
        log.warning("cameras stored through the API are not applied: %s", error)
        return CameraCatalog(config, database, read_stored=False)
