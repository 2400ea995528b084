"""GET /metrics: Prometheus text format. Behind authentication unless [metrics] public = true."""

from __future__ import annotations

from aiohttp import web

from ..metrics import CONTENT_TYPE
from .keys import DB, EVENTS, METRICS, QUEUE

routes = web.RouteTableDef()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    app = request.app
    registry = app[METRICS]
    queue = app[QUEUE]
    db = app[DB]
    registry.set_state(
        job_counts=await db.job_counts(),
        photo_counts=(await db.stats()).as_dict(),
        sse_clients=app[EVENTS].subscriber_count,
        breaker_state=queue.breaker.state,
        paused=queue.paused,
    )
    return web.Response(body=registry.render(), headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})
