"""``GET /api/v1/stream``: the live event stream as Server-Sent Events.

Each connection subscribes to the app's :class:`~feedtag.runtime.bus.EventBus` with a
bounded queue: a slow reader loses its oldest events (and is told how many, as an
``event: dropped`` message), the pipeline is never held up. Events of cameras the caller may
not see are never sent. Opening a stream is a read of events, so it is audited.

Wire format (``text/event-stream``)::

    retry: 3000

    id: <event_id>
    event: event
    data: {"event_id": ..., "camera_id": ..., "kind": ..., ...}

    event: end
    data: {"event_id": ..., "camera_id": ..., "ended_at": ...}

    : keepalive
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from feedtag.api.access import Viewer
from feedtag.api.events import Cameras, event_view
from feedtag.api.state import api_state, audit
from feedtag.core import EventEnd
from feedtag.runtime.bus import Subscription

router = APIRouter(prefix="/api/v1", tags=["stream"])

KEEPALIVE_S: Final = 15.0
#: how often a waiting stream looks at whether the client left or the server is stopping
WAKE_S: Final = 1.0
RETRY_MS: Final = 3000


def _message(event_name: str, data: object, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event_name}\ndata: {json.dumps(data)}\n\n".encode()


async def _frames(
    request: Request, subscription: Subscription, wake: asyncio.Event,
    shown: frozenset[str] | None,
) -> AsyncIterator[bytes]:  # fmt: skip
    """The stream's messages: events of the ``shown`` cameras (None: every camera)."""
    state = api_state(request)
    reported = 0
    idle = 0.0
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
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
                if isinstance(item, EventEnd):  # an event that lasted is over
                    yield _message("end", item.to_dict())
                else:
                    yield _message("event", event_view(item), item.event_id)
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
        _frames(request, subscription, wake, shown),
        media_type="text/event-stream",
        headers={"X-Accel-Buffering": "no"},
    )
