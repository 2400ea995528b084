"""photoq as an installable app: the web app manifest, the service worker, the offline page, and the share target.

The service worker keeps only the offline shell (the stylesheet, scripts, icons and /offline, none of it private):
pages, API answers and photo files always come from the server, so nothing of an album outlives a logout in it.

Sharing: the phone POSTs the shared files to /share (multipart, without our CSRF token, which a share cannot
carry). They are parked in the ShareInbox, and the user lands on /share/<token> to choose the album and confirm,
with a CSRF-protected form. A share from another site's page (its Origin says so) is refused outright.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from aiohttp import web

from ..errors import BadRequest, NotFound
from ..ingest import Accepted, Rejected
from ..models import MAX_ALBUM_NAME, clean_album_name
from ..shares import Share
from .keys import CONFIG, DB, INGEST, QUEUE, SHARES
from .templating import render
from .ui import page, redirect
from .uploads import MultipartFiles

routes = web.RouteTableDef()

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
SHARE_PATH = "/share"
# Types the share sheet offers photoq for; the server still decides by content.
SHARE_ACCEPT = ["image/jpeg", "image/png", "image/webp", "image/gif", "image/tiff", "image/heic", "image/heif",
                "image/avif", ".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".heic", ".heif", ".avif"]
# The offline shell: public files only.
SHELL_ASSETS = ["photoq.css", "photoq.js", "pwa.js", "offline.js", "favicon.svg", "icons/icon-192.png"]
PREVIEW_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif", "image/avif"}


def static_url(request: web.Request, filename: str) -> str:
    return str(request.app.router["static"].url_for(filename=filename))


@routes.get("/manifest.webmanifest")
async def manifest(request: web.Request) -> web.Response:
    icons = [
        {"src": static_url(request, "icons/icon-192.png"), "sizes": "192x192", "type": "image/png", "purpose": "any"},
        {"src": static_url(request, "icons/icon-512.png"), "sizes": "512x512", "type": "image/png", "purpose": "any"},
        {"src": static_url(request, "icons/maskable-192.png"), "sizes": "192x192", "type": "image/png",
         "purpose": "maskable"},
        {"src": static_url(request, "icons/maskable-512.png"), "sizes": "512x512", "type": "image/png",
         "purpose": "maskable"},
        {"src": static_url(request, "icons/icon.svg"), "sizes": "any", "type": "image/svg+xml", "purpose": "any"},
    ]
    body = {
        "id": "/",
        "name": "photoq",
        "short_name": "photoq",
        "description": "Your self-hosted photo albums: upload, view and share.",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "background_color": "#0e1116",
        "theme_color": "#0f766e",
        "icons": icons,
        "share_target": {
            "action": SHARE_PATH,
            "method": "POST",
            "enctype": "multipart/form-data",
            "params": {"title": "title", "text": "text", "url": "url",
                       "files": [{"name": "file", "accept": SHARE_ACCEPT}]},
        },
    }
    return web.Response(text=json.dumps(body, indent=1), content_type="application/manifest+json",
                        headers={"Cache-Control": "no-cache"})


@lru_cache(maxsize=1)
def worker_source() -> str:
    return (STATIC_DIR / "sw.js").read_text(encoding="utf-8")


@routes.get("/sw.js")
async def service_worker(request: web.Request) -> web.Response:
    """The worker, with the versioned URLs of the shell: a new release changes them, so the browser installs the
    new worker and it drops the old cache."""
    shell = [static_url(request, name) for name in SHELL_ASSETS] + ["/offline"]
    version = hashlib.sha256(json.dumps(shell).encode()).hexdigest()[:16]
    source = worker_source().replace("__SHELL__", json.dumps(shell)).replace("__VERSION__", version)
    return web.Response(text=source, content_type="text/javascript",
                        headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"})


@routes.get("/offline")
async def offline(request: web.Request) -> web.Response:
    return render(request, "offline.html", {"static_url": lambda name: static_url(request, name)})


# -- share target ------------------------------------------------------------------------------------------------


async def share_or_none(request: web.Request) -> Share | None:
    return await request.app[SHARES].get(request.match_info["token"])


async def share_page(request: web.Request, template: str, context: dict, status: int = 200) -> web.Response:
    return await page(request, template, {"nav": None, **context}, status=status)


@routes.post(SHARE_PATH)
async def receive_share(request: web.Request) -> web.StreamResponse:
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("Share files as multipart/form-data, in parts named 'file'.", code="bad_multipart")
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError) as exc:
        raise BadRequest(f"The multipart body is malformed ({exc}).", code="bad_multipart") from None
    parts = MultipartFiles(reader, request.app[CONFIG].upload).parts()
    share = await request.app[SHARES].receive(parts, request.content_length)
    raise web.HTTPSeeOther(f"{SHARE_PATH}/{share.token}")


@routes.get(SHARE_PATH)
async def share_list(request: web.Request) -> web.Response:
    shares = await request.app[SHARES].pending()
    if len(shares) == 1:
        raise web.HTTPSeeOther(f"{SHARE_PATH}/{shares[0].token}")
    return await share_page(request, "share.html", {"share": None, "shares": shares})


@routes.get(SHARE_PATH + "/{token}")
async def share_detail(request: web.Request) -> web.Response:
    share = await share_or_none(request)
    if share is None:
        return await share_page(request, "share.html", {"share": None, "shares": await request.app[SHARES].pending(),
                                                        "gone": True}, status=404)
    albums = await request.app[DB].list_albums()
    chosen = request.query.get("album")
    return await share_page(request, "share.html", {
        "share": share,
        "shares": [],
        "albums": list(reversed(albums)),  # newest first, as on the albums page
        "chosen": int(chosen) if chosen and chosen.isdigit() else None,
        "previewable": {f.index for f in share.files if f.content_type in PREVIEW_TYPES},
        "max_name": MAX_ALBUM_NAME,
        "error": None,
    })


@routes.get(SHARE_PATH + "/{token}/{index:\\d{1,4}}")
async def share_preview(request: web.Request) -> web.StreamResponse:
    share = await share_or_none(request)
    index = int(request.match_info["index"])
    if share is None or index >= len(share.files) or share.files[index].content_type not in PREVIEW_TYPES:
        raise NotFound("There is no such shared file.")
    return web.FileResponse(request.app[SHARES].file_path(share, index), headers={
        "Content-Type": share.files[index].content_type or "application/octet-stream",
        "Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"})


@routes.post(SHARE_PATH + "/{token}")
async def confirm_share(request: web.Request) -> web.StreamResponse:
    share = await share_or_none(request)
    if share is None:
        raise web.HTTPSeeOther(SHARE_PATH)
    form = await request.post()
    raw_album, new_name = form.get("album_id"), form.get("new_album")
    db = request.app[DB]
    if isinstance(new_name, str) and new_name.strip():
        try:
            name = clean_album_name(new_name)
        except ValueError as exc:
            return await share_error(request, share, str(exc))
        album_id = (await request.app[QUEUE].create_album(name)).id
    elif isinstance(raw_album, str) and raw_album.isdigit() and await db.get_album(int(raw_album)) is not None:
        album_id = int(raw_album)
    else:
        return await share_error(request, share, "Choose an album, or name a new one.")
    await request.app[INGEST].check_can_accept(album_id, None)
    outcomes = await request.app[SHARES].add_to_album(share, album_id)
    added = sum(1 for o in outcomes if isinstance(o, Accepted))
    refused = any(isinstance(o, Rejected) for o in outcomes) or len(share.addable) < len(share.files)
    raise redirect(f"/albums/{album_id}", f"shared_some:{added}" if refused else f"shared:{added}")


async def share_error(request: web.Request, share: Share, message: str) -> web.Response:
    albums = await request.app[DB].list_albums()
    return await share_page(request, "share.html", {
        "share": share, "shares": [], "albums": list(reversed(albums)), "chosen": None,
        "previewable": {f.index for f in share.files if f.content_type in PREVIEW_TYPES},
        "max_name": MAX_ALBUM_NAME, "error": message,
    }, status=400)


@routes.post(SHARE_PATH + "/{token}/discard")
async def discard_share(request: web.Request) -> web.StreamResponse:
    await request.app[SHARES].discard(request.match_info["token"])
    raise web.HTTPSeeOther("/")


def is_share_target(request: web.Request) -> bool:
    return request.method == "POST" and request.path == SHARE_PATH

