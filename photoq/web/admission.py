"""Bounded concurrency for the expensive long requests: uploads and live-progress (SSE) streams.

Past the bound a request is answered at once with the contract's 503 and Retry-After, instead of queueing: a client
(the web UI, `photoq import`, a tus client) retries shortly, while a flood cannot pile up open files and memory.
"""

from __future__ import annotations

from aiohttp import web

from .keys import UPLOAD_SLOTS

# (method, route) pairs that stream an upload body to disk.
UPLOAD_ROUTES = {("POST", "/api/albums/{id}/photos"), ("PATCH", "/api/uploads/{upload_id}")}


def is_upload(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and (request.method, resource.canonical) in UPLOAD_ROUTES


@web.middleware
async def upload_slots_middleware(request: web.Request, handler):
    """After authentication: only the admin's uploads take (or are refused) a slot."""
    if not is_upload(request):
        return await handler(request)
    with request.app[UPLOAD_SLOTS].take():
        return await handler(request)
