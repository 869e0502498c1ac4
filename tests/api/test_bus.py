"""The live stream's bus: a slow subscriber loses its oldest events; the publisher (the
vision thread) never waits."""

from __future__ import annotations

import threading
import time

from feedtag.core import Event, EventKind
from feedtag.runtime.bus import EventBus


def event(i: int) -> Event:
    return Event(f"e{i}", "door", EventKind.LINE_CROSS, "r", 1e9 + i)


def test_a_subscriber_that_never_reads_does_not_slow_the_publisher() -> None:
    bus = EventBus()
    stuck = bus.subscribe(maxsize=8)
    reader = bus.subscribe(maxsize=100_000)
    started = time.perf_counter()
    for i in range(20_000):
        bus.publish(event(i))
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0  # about 2 µs per publish; a blocking put would hang here
    assert [e.event_id for e in stuck.drain()] == [f"e{i}" for i in range(19_992, 20_000)]
    assert stuck.dropped == 19_992
    assert len(reader.drain()) == 20_000 and reader.dropped == 0


def test_a_failing_notify_unsubscribes_only_that_subscriber() -> None:
    bus = EventBus()

    def broken() -> None:
        raise RuntimeError("loop closed")

    bus.subscribe(notify=broken)
    healthy = bus.subscribe()
    bus.publish(event(1))
    assert bus.subscribers == 1
    assert [e.event_id for e in healthy.drain()] == ["e1"]


def test_publishing_from_threads_while_subscribers_come_and_go() -> None:
    bus = EventBus()
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            bus.subscribe(maxsize=4).close()

    thread = threading.Thread(target=churn)
    thread.start()
    keeper = bus.subscribe(maxsize=10_000)
    for i in range(5_000):
        bus.publish(event(i))
    stop.set()
    thread.join(5)
    assert len(keeper.drain()) == 5_000
