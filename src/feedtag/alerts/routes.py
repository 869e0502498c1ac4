"""Which alert routes an event goes to: a pure function of the event and the config.

The store writer is given :func:`build_router`'s result and calls it for every event it
writes, in the event's transaction; the same event and config always give the same routes,
so rewriting or replaying an event queues nothing twice.

>>> from feedtag.config.alerts import AlertsConfig
>>> from feedtag.core import Event, EventKind
>>> alerts = AlertsConfig.model_validate({"webhooks": [
...     {"id": "ops", "url": "https://h.example/x", "secret": "0123456789abcdef",
...      "kinds": ["stopped_vehicle"], "labels": ["car"]},
...     {"id": "all", "url": "https://h.example/y", "secret": "0123456789abcdef"}]})
>>> route = build_router(alerts)
>>> car = Event("e1", "gate-1", EventKind.STOPPED_VEHICLE, "r", 1.7e9, label="car")
>>> [r.route_id for r in route(car)]
['ops', 'all']
>>> [r.route_id for r in route(Event("e2", "gate-1", EventKind.DWELL, "r", 1.7e9))]
['all']
"""

from __future__ import annotations

from collections.abc import Sequence

from feedtag.config.alerts import MQTT_ROUTE, AlertsConfig, WebhookConfig
from feedtag.core import Event
from feedtag.store.outbox import AlertRoute, Router


def webhook_matches(hook: WebhookConfig, event: Event) -> bool:
    """Whether ``hook``'s filters (kinds, cameras, labels, zones; None: any) pass ``event``.
    A label or zone filter passes only events that have one of the listed values."""
    kinds = hook.event_kinds()
    return (
        (kinds is None or event.kind.value in kinds)
        and (hook.cameras is None or event.camera_id in hook.cameras)
        and (hook.labels is None or event.label in hook.labels)
        and (hook.zones is None or event.zone in hook.zones)
    )


def routes_for(alerts: AlertsConfig, event: Event) -> list[AlertRoute]:
    """The routes of ``event`` under ``alerts``, in config order; every event goes to
    MQTT when a broker is configured."""
    routes = [
        AlertRoute(hook.id, hook.cooldown_s)
        for hook in alerts.webhooks
        if webhook_matches(hook, event)
    ]
    if alerts.mqtt is not None:
        routes.append(AlertRoute(MQTT_ROUTE))
    return routes


def build_router(alerts: AlertsConfig) -> Router:
    """The :data:`~feedtag.store.outbox.Router` to give the store writer."""

    def route(event: Event) -> Sequence[AlertRoute]:
        return routes_for(alerts, event)

    return route
