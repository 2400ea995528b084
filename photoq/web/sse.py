"""GET /api/events: live progress as Server-Sent Events."""

from __future__ import annotations

import json
import time

from aiohttp import web

from ..events import Event
from .api import optional_id_param
from .keys import EVENT_STREAM_SLOTS, EVENTS, SSE_RESPONSES

routes = web.RouteTableDef()

PING_SECONDS = 15.0
DISCONNECT_CHECK_SECONDS = 1.0  # how soon a vanished client's subscription is dropped


def encode(event: Event) -> bytes:
    return f"id: {event.id}\nevent: {event.name}\ndata: {json.dumps(event.data, separators=(',', ':'))}\n\n".encode()


@routes.get("/api/events")
async def events(request: web.Request) -> web.StreamResponse:
    album_id = optional_id_param(request, "album_id")
    with request.app[EVENT_STREAM_SLOTS].take():  # bounded: [server] max_event_streams, then 503
        return await stream_events(request, album_id)


async def stream_events(request: web.Request, album_id: int | None) -> web.StreamResponse:
    broadcaster = request.app[EVENTS]
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",  # let reverse proxies stream instead of buffering
    })
    await response.prepare(request)
    request.app[SSE_RESPONSES].add(response)
    subscriber = broadcaster.subscribe(album_id)
    try:
        await response.write(b"retry: 2000\n\n")
        await response.write(encode(await broadcaster.initial_stats(subscriber)))
        next_ping = time.monotonic() + PING_SECONDS
        while not subscriber.closed:
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            try:
                event = await subscriber.next(min(DISCONNECT_CHECK_SECONDS, max(0.0, next_ping - time.monotonic())))
            except TimeoutError:
                if time.monotonic() >= next_ping:
                    await response.write(b": ping\n\n")
                    next_ping = time.monotonic() + PING_SECONDS
                continue
            if event is None:
                break
            await response.write(encode(event))
    except ConnectionError:  # the client went away mid-write
        pass
    finally:
        broadcaster.unsubscribe(subscriber)
    return response
