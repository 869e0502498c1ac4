"""An in-process event bus for the live event stream: many subscribers, none can slow the
pipeline.

:meth:`EventBus.publish` is a :class:`~feedtag.store.writer.StoreWriter` listener (through
:meth:`~feedtag.runtime.control.EngineControl.subscribe`): it runs on the writer thread after
each commit, so it never blocks. Every subscriber has its own bounded queue;
when a subscriber reads too slowly its oldest events are dropped (and counted), never the
publisher held up. A subscriber may pass ``notify``, called after each put (from the
publishing thread), so that an asyncio reader can wake without polling.

>>> from feedtag.core import Event, EventKind
>>> bus = EventBus()
>>> sub = bus.subscribe(maxsize=1)
>>> for i in (1, 2): bus.publish(Event(f"e{i}", "door", EventKind.DWELL, "r", 1e9 + i))
>>> [e.event_id for e in sub.drain()], sub.dropped
(['e2'], 1)
>>> sub.close(); bus.subscribers
0
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Final

from feedtag.core import Event, EventEnd
from feedtag.store.feed import Stored

log = logging.getLogger(__name__)

DEFAULT_SUBSCRIBER_QUEUE: Final = 256

#: what the bus carries: new events, and the ends of events that last, as stored (with their
#: place in the stream) or bare
Item = Stored | Event | EventEnd


class Subscription:
    """One subscriber's bounded drop-oldest queue."""

    def __init__(
        self, bus: EventBus, maxsize: int, notify: Callable[[], None] | None = None
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"expected maxsize >= 1, got {maxsize}")
        self._bus = bus
        self._items: deque[Item] = deque(maxlen=maxsize)
        self._lock = threading.Lock()
        self._notify = notify
        self.dropped = 0

    def put(self, event: Item) -> None:
        with self._lock:
            if len(self._items) == self._items.maxlen:
                self.dropped += 1  # deque(maxlen) drops the oldest on append
            self._items.append(event)
        if self._notify is not None:
            self._notify()

    def drain(self) -> list[Item]:
        """Everything queued, oldest first."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
        return items

    def close(self) -> None:
        self._bus.unsubscribe(self)


class EventBus:
    """Fans events out to subscribers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []
        self.published = 0

    def subscribe(
        self, maxsize: int = DEFAULT_SUBSCRIBER_QUEUE, notify: Callable[[], None] | None = None
    ) -> Subscription:
        subscription = Subscription(self, maxsize, notify)
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscriptions)

    def publish(self, event: Item) -> None:
        """Hand an event (or an event's end) to every subscriber; never blocks on a slow
        one."""
        with self._lock:
            subscriptions = list(self._subscriptions)
            self.published += 1
        for subscription in subscriptions:
            try:
                subscription.put(event)
            except Exception:
                log.exception("a live-stream subscriber failed; removing it")
                self.unsubscribe(subscription)
