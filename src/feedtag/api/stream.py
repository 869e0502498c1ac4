"""``GET /api/v1/stream``: the live event stream as Server-Sent Events.

Each connection subscribes to the app's :class:`~feedtag.runtime.bus.EventBus` with a
bounded queue: a slow reader loses its oldest events (and is told how many, as an
``event: dropped`` message), the pipeline is never held up. Events of cameras the caller may
not see are never sent. Opening a stream is a read of events, so it is audited.

Every event and end carries an ``id:``, its place in the stream
(:class:`~feedtag.store.feed.Position`, opaque to clients). A client that reconnects with
``Last-Event-ID`` (browsers send it by themselves; the ``last_event_id`` query parameter does
the same for a client that opens a new connection) is first sent what was stored after that
id, at most :data:`RESUME_MAX_EVENTS` events and ends from the last :data:`RESUME_MAX_AGE_S`
seconds, then the live feed: the subscription opens before the store is read, and what the
store already gave is not sent again. When more was missed than that, or the id is not one
this server knows, an ``event: gap`` says so first (the client should reload its list).

Wire format (``text/event-stream``)::

    retry: 3000

    event: gap
    data: {"reason": "more than the resume bound", "max_events": 1000, "max_age_s": 600.0}

    id: <position>
    event: event
    data: {"event_id": ..., "camera_id": ..., "kind": ..., ...}

    id: <position>
    event: end
    data: {"event_id": ..., "camera_id": ..., "ended_at": ...}

    : keepalive
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Final

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from feedtag.api.access import Viewer
from feedtag.api.events import Cameras, event_view
from feedtag.api.state import api_state, audit
from feedtag.core import Event, EventEnd
from feedtag.errors import StoreError
from feedtag.runtime.bus import Item, Subscription
from feedtag.store.feed import MAX_TOKEN_LENGTH, Position, Stored, missed_since

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["stream"])

KEEPALIVE_S: Final = 15.0
#: how often a waiting stream looks at whether the client left or the server is stopping
WAKE_S: Final = 1.0
RETRY_MS: Final = 3000
#: a resuming client is sent at most this many missed events and ends ...
RESUME_MAX_EVENTS: Final = 1000
#: ... stored at most this many seconds ago
RESUME_MAX_AGE_S: Final = 600.0

LastEventId = Annotated[
    str | None,
    Header(alias="Last-Event-ID", max_length=MAX_TOKEN_LENGTH,
           description="The id of the last message received: resume after it."),
]  # fmt: skip
ResumeAfter = Annotated[
    str | None,
    Query(alias="last_event_id", max_length=MAX_TOKEN_LENGTH,
          description="As Last-Event-ID, for a client that cannot set headers; the header wins."),
]  # fmt: skip


def _message(event_name: str, data: object, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event_name}\ndata: {json.dumps(data)}\n\n".encode()


def _item_message(item: Item) -> bytes:
    if isinstance(item, Stored):
        token = item.position.token()
        if isinstance(item.item, EventEnd):  # an event that lasted is over
            return _message("end", item.item.to_dict(), token)
        return _message("event", event_view(item.item), token)
    if isinstance(item, Event):  # not through the store: no place to resume from
        return _message("event", event_view(item))
    return _message("end", item.to_dict())


async def _missed(
    request: Request, resume: str, shown: frozenset[str] | None
) -> tuple[list[bytes], Position | None]:
    """The messages a client resuming after ``resume`` missed (a ``gap`` first when they are
    not all there), and the position they end at."""
    after = Position.parse(resume)
    if after is None:
        return [_message("gap", {"reason": "unknown Last-Event-ID"})], None
    try:
        missed = await run_in_threadpool(
            missed_since, api_state(request).store, after, shown,
            limit=RESUME_MAX_EVENTS, oldest=time.time() - RESUME_MAX_AGE_S,
        )  # fmt: skip
    except StoreError as error:
        log.warning("stream resume failed: %s", error)
        return [_message("gap", {"reason": "the store did not answer"})], after
    messages = [] if missed.complete else [
        _message("gap", {"reason": "more than the resume bound",
                         "max_events": RESUME_MAX_EVENTS, "max_age_s": RESUME_MAX_AGE_S})
    ]  # fmt: skip
    messages += [_item_message(stored) for stored in missed.items]
    return messages, missed.items[-1].position if missed.items else after


async def _frames(
    request: Request, subscription: Subscription, wake: asyncio.Event,
    shown: frozenset[str] | None, resume: str | None,
) -> AsyncIterator[bytes]:  # fmt: skip
    """The stream's messages: events of the ``shown`` cameras (None: every camera), after
    what was missed since ``resume`` (a Last-Event-ID) when there is one."""
    state = api_state(request)
    reported = 0
    idle = 0.0
    last: Position | None = None  # what was sent last: the live feed skips up to it
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        if resume is not None:
            messages, last = await _missed(request, resume, shown)
            for message in messages:
                yield message
        while not state.closing.is_set():
            try:
                await asyncio.wait_for(wake.wait(), WAKE_S)
                idle = 0.0
            except TimeoutError:
                idle += WAKE_S
            wake.clear()
            if await request.is_disconnected():
                return
            for item in subscription.drain():
                if shown is not None and item.camera_id not in shown:
                    continue
                if isinstance(item, Stored):
                    if last is not None and item.position <= last:
                        continue  # the store already gave it
                    last = item.position
                yield _item_message(item)
            if subscription.dropped > reported:
                reported = subscription.dropped
                yield _message("dropped", {"dropped": reported})
            if idle >= KEEPALIVE_S:
                idle = 0.0
                yield b": keepalive\n\n"
    finally:
        subscription.close()


@router.get(
    "/stream",
    summary="Live events as Server-Sent Events (text/event-stream)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_events(
    request: Request,
    principal: Viewer,
    cameras: Cameras = [],  # noqa: B006 - FastAPI copies defaults
    last_event_id: LastEventId = None,
    resume_after: ResumeAfter = None,
) -> StreamingResponse:
    state = api_state(request)
    await run_in_threadpool(
        audit, request, principal, "events.stream", detail=" ".join(f"camera={c}" for c in cameras)
    )
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def notify() -> None:  # called on the pipeline's thread: hand over to the loop
        if not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    subscription = state.bus.subscribe(state.config.api.stream_queue_size, notify)
    # the caller's cameras cut down to those asked for, once, not per message
    visible = principal.visible(cameras)
    shown = None if visible is None else frozenset(visible)
    return StreamingResponse(
        _frames(request, subscription, wake, shown, last_event_id or resume_after),
        media_type="text/event-stream",
        headers={"X-Accel-Buffering": "no"},
    )
