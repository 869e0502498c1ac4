"""The outbox dispatcher: one thread that sends what the store writer queued for alerts.

Each pass claims the due ``pending`` rows of the store's ``alert_outbox``
(:func:`~feedtag.store.outbox.claim_due`, leased so that another dispatcher on the same
store skips them), POSTs each event to its webhook (:class:`~feedtag.alerts.webhooks.
WebhookSender`) and records the outcome: ``delivered`` on a 2xx answer; otherwise the attempt
is counted and the row is due again after a capped, jittered exponential backoff
(:func:`retry_delay`), or ``dead`` after ``alerts.max_attempts`` attempts. Delivery is at
least once: a receiver may see an event twice (a crash between its answer and the update),
and deduplicates by ``X-Feedtag-Event-Id``.

Nothing lives only in memory: a new dispatcher on the same store (a restart) carries on with
the pending rows, including those a dead process had claimed, once their lease ends.

>>> [round(retry_delay(n, initial_s=2, max_s=60, jitter=0)) for n in range(1, 8)]
[2, 4, 8, 16, 32, 60, 60]
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from sqlalchemy import Engine

from feedtag.alerts.mqtt import MqttPublisher
from feedtag.alerts.webhooks import DeliveryFailed, WebhookSender, snapshot_link
from feedtag.config.alerts import MQTT_ROUTE, AlertsConfig, WebhookConfig
from feedtag.errors import StoreError
from feedtag.store.links import SnapshotLinks
from feedtag.store.outbox import (
    OutboxItem,
    claim_due,
    mark_delivered,
    mark_failed,
    outbox_counts,
    release,
)

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL_S: Final = 1.0
DEFAULT_CLAIM_LIMIT: Final = 10
DEFAULT_STOP_TIMEOUT_S: Final = 30.0
JITTER: Final = 0.2
#: added to a claim's worst case (every row timing out) to get its lease
LEASE_MARGIN_S: Final = 30.0

Clock = Callable[[], float]


def retry_delay(
    attempts: int, *, initial_s: float, max_s: float, jitter: float = JITTER, rng: Any = random
) -> float:
    """The wait after the ``attempts``-th failed attempt (1 for the first):
    ``initial_s * 2**(attempts-1)``, capped at ``max_s``, spread by ±``jitter``."""
    base = min(max_s, initial_s * 2.0 ** min(attempts - 1, 64))
    if jitter:
        base *= 1 + rng.uniform(-jitter, jitter)
    return float(min(max_s, max(0.0, base)))


@dataclass(frozen=True, slots=True)
class AlertStats:
    """Alert delivery counters, for metrics and the API.

    ``pending``, ``delivered_total`` and ``dead_total`` are the store's rows (every
    dispatcher, every run; None while the store does not answer); ``delivered``, ``failed``
    (failed attempts, retried or not) and ``dead`` count this dispatcher's outcomes since it
    started; the latencies are from an event's outbox row being written to its delivery."""

    pending: int | None
    delivered_total: int | None
    dead_total: int | None
    delivered: int
    failed: int
    dead: int
    latency_last_s: float | None
    latency_mean_s: float | None
    latency_max_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AlertDispatcher:
    """Sends the alert outbox of ``engine`` to the webhooks of ``alerts``.

    ``start()``/``stop()`` (or ``with``) run it on its own thread; :meth:`run_once` is one
    pass, for tests and tools. ``links`` makes the signed ``snapshot_url`` of each payload
    (None: null). ``cameras`` (ids) are announced to Home Assistant when MQTT discovery is
    on. ``clock`` is wall-clock Unix seconds (outbox times are)."""

    def __init__(
        self,
        engine: Engine,
        alerts: AlertsConfig,
        *,
        sender: WebhookSender | None = None,
        mqtt: MqttPublisher | None = None,
        links: SnapshotLinks | None = None,
        cameras: Sequence[str] = (),
        clock: Clock = time.time,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        claim_limit: int = DEFAULT_CLAIM_LIMIT,
    ) -> None:
        self._engine = engine
        self._alerts = alerts
        self._hooks: dict[str, WebhookConfig] = {hook.id: hook for hook in alerts.webhooks}
        self._sender = sender or WebhookSender(alerts)
        if mqtt is None and alerts.mqtt is not None:
            mqtt = MqttPublisher(alerts, cameras)
        self._mqtt = mqtt
        self._links = links
        self._clock = clock
        self._poll_interval_s = poll_interval_s
        self._claim_limit = claim_limit
        self._lease_s = claim_limit * alerts.timeout_s + LEASE_MARGIN_S
        self._stop = threading.Event()
        self._due = threading.Event()  # set by wake(): new rows, no need to wait for the poll
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._counts = {"delivered": 0, "failed": 0, "dead": 0}
        self._latencies: dict[str, Any] = {"last": None, "sum": 0.0, "max": None}

    def __enter__(self) -> AlertDispatcher:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the dispatcher thread (once)."""
        if self._thread is not None:
            raise RuntimeError("alert dispatcher already started")
        if self._mqtt is not None:
            self._mqtt.start()
        self._thread = threading.Thread(target=self._run, name="alert-dispatcher", daemon=True)
        self._thread.start()

    def wake(self, *_: object) -> None:
        """New rows were written: look for due rows now, not at the next poll. Never blocks
        (a store writer listener: the node calls it after each commit)."""
        self._due.set()

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Stop after the row being sent; what is still pending stays in the outbox."""
        self._stop.set()
        self._due.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("alert dispatcher did not stop within %s s", timeout)
        self._sender.close()
        if self._mqtt is not None:
            self._mqtt.stop()

    def stats(self) -> AlertStats:
        """The counters (a plain value); asks the store for its row counts."""
        try:
            counts: dict[str, int] | None = outbox_counts(self._engine)
        except StoreError:
            counts = None
        with self._lock:
            delivered = self._counts["delivered"]
            latency = dict(self._latencies)
            mine = dict(self._counts)
        return AlertStats(
            pending=None if counts is None else counts["pending"],
            delivered_total=None if counts is None else counts["delivered"],
            dead_total=None if counts is None else counts["dead"],
            delivered=mine["delivered"],
            failed=mine["failed"],
            dead=mine["dead"],
            latency_last_s=latency["last"],
            latency_mean_s=latency["sum"] / delivered if delivered else None,
            latency_max_s=latency["max"],
        )

    def run_once(self) -> int:
        """Claim the due rows and try each once; returns how many were tried."""
        items = claim_due(
            self._engine, now=self._clock(), limit=self._claim_limit, lease_s=self._lease_s
        )
        for done, item in enumerate(items):
            if self._stop.is_set():
                self._give_back(items[done:])
                break
            self._deliver(item)
        return len(items)

    def _give_back(self, items: Sequence[OutboxItem]) -> None:
        """Stopping mid-batch: the rows not tried are due again now, for the next dispatcher
        to start, instead of when their leases end (a dispatcher that dies leaves them to
        the lease)."""
        try:
            release(self._engine, items, now=self._clock())
        except StoreError as error:
            log.warning("alert dispatcher: %s; %d row(s) due when their lease ends", error,
                        len(items))  # fmt: skip

    def _run(self) -> None:
        log.info("alert dispatcher started: %d webhook(s)", len(self._hooks))
        while not self._stop.is_set():
            try:
                tried = self.run_once()
            except StoreError as error:
                log.warning("alert dispatcher: %s; retrying", error)
                tried = 0
            except Exception as error:  # noqa: BLE001 - the thread must outlive a bug
                # The type only: a library's message could hold a receiver's URL. The row
                # being sent is due again when its lease ends.
                log.error("alert dispatcher: unexpected %s; retrying", type(error).__name__)
                tried = 0
            if not tried:
                self._due.wait(self._poll_interval_s)
                self._due.clear()
        log.info("alert dispatcher stopped")

    def _deliver(self, item: OutboxItem) -> None:
        hook = self._hooks.get(item.route_id)
        event_id = item.event.event_id
        mqtt = self._mqtt if item.route_id == MQTT_ROUTE else None
        if hook is None and mqtt is None:
            self._failed(item, f"no route {item.route_id!r} in alerts", final=True)
            return
        now = self._clock()
        link = snapshot_link(self._links, item.event, item.route_id, now=now)
        try:
            if mqtt is not None:
                mqtt.publish(item.event, link)
            elif hook is not None:
                self._sender.send(hook, item.event, now=now, snapshot_url=link)
        except DeliveryFailed as failure:
            final = item.attempts + 1 >= self._alerts.max_attempts
            self._failed(item, str(failure), final=final)
            return
        now = self._clock()
        mark_delivered(self._engine, item, now=now)
        latency = max(0.0, now - item.created_at)
        with self._lock:
            self._counts["delivered"] += 1
            self._latencies["last"] = latency
            self._latencies["sum"] += latency
            self._latencies["max"] = max(latency, self._latencies["max"] or 0.0)
        log.debug("alert %s delivered to %s", event_id, item.route_id)

    def _failed(self, item: OutboxItem, reason: str, *, final: bool) -> None:
        attempts = item.attempts + 1
        retry_at = None
        if not final:
            delay = retry_delay(
                attempts,
                initial_s=self._alerts.initial_backoff_s,
                max_s=self._alerts.max_backoff_s,
            )
            retry_at = self._clock() + delay
        mark_failed(self._engine, item, error=reason, retry_at=retry_at)
        with self._lock:
            self._counts["failed"] += 1
            if final:
                self._counts["dead"] += 1
        if final:
            log.error(
                "alert %s to %s is dead after %d attempt(s): %s",
                item.event.event_id, item.route_id, attempts, reason,
            )  # fmt: skip
        else:
            log.warning(
                "alert %s to %s failed (attempt %d of %d): %s; retrying in %.1f s",
                item.event.event_id, item.route_id, attempts, self._alerts.max_attempts,
                reason, (retry_at or 0) - self._clock(),
            )  # fmt: skip
