"""The web UI: server-rendered pages, and plain form posts that redirect (303) back to a page.

Every page works without JavaScript where it can; photoq/static/*.js adds liveness (SSE) and the uploader,
talking to the JSON API with the session cookie and the X-CSRF-Token header. Authentication and CSRF checks are
done by the middleware before any handler here runs.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from aiohttp import web

from ..config import Settings
from ..gallery_order import DEFAULT_ORDER, ORDER_LABELS, Cursor, GalleryOrder, day_of, parse_order
from ..models import MAX_ALBUM_NAME, Album, Batch, Photo, Status, clean_album_name, iso, original_version
from . import urls
from .api import MAX_SQLITE_INTEGER
from .keys import CLUSTER, CONFIG, DB, QUEUE, TRASH
from .photo_image import choose_photo_image
from .session import safe_next
from .templating import render

routes = web.RouteTableDef()

PAGE_SIZE = 120
ERROR_REPORT_LIMIT = 200
FLASH_COOKIE = "photoq_flash"

FLASH_MESSAGES = {
    "album_created": "Album created. Add photos below.",
    "album_deleted": "The album and its photos were moved to the trash. You can restore them for 30 days.",
    "photo_deleted": "The photo was moved to the trash. You can restore it for 30 days.",
    "photos_deleted": "Moved {n} photo(s) to the trash. You can restore them for 30 days.",
    "photos_moved": "Moved {n} photo(s) to the other album.",
    "album_renamed": "The album was renamed.",
    "cover_set": "The album cover was changed.",
    "bad_name": "The album was not renamed: a name needs 1 to 200 characters and no control characters.",
    "restored": "Restored from the trash.",
    "restore_duplicate": "Not restored: the album already has a photo with the same bytes.",
    "restore_album_trashed": "Not restored: its album is in the trash. Restore the album first.",
    "purged": "Deleted for good.",
    "emptied": "The trash is empty.",
    "shared": "Added {n} shared photo(s) to this album (any already in it were skipped).",
    "shared_some": "Added {n} shared photo(s); the others could not be read as photos.",
    "retried": "Queued again: {n} failed part(s).",
    "retried_photo": "The photo is queued again.",
    "nothing_to_retry": "Nothing has failed, so there was nothing to retry.",
    "errors_cleared": "Moved {n} failed photo(s) to the trash.",
    "paused": "Processing is paused. Uploads are still accepted and wait in the queue.",
    "resumed": "Processing resumed.",
    "failed_cleared": "Forgot {n} failed job(s). Their photos stay marked as failed.",
}


# -- helpers -----------------------------------------------------------------------------------------------------


def parse_page_id(raw: str | None) -> int | None:
    """A path or query id; None when it is not a positive whole number a row could have."""
    if raw is None or not raw.isascii() or not raw.isdigit():
        return None
    value = int(raw)
    return value if 0 < value <= MAX_SQLITE_INTEGER else None


def static_url(request: web.Request, filename: str) -> str:
    return str(request.app.router["static"].url_for(filename=filename))


def human_bytes(size: int | None) -> str:
    if size is None:
        return ""
    if size < 1024:
        return f"{size} B"
    scaled = float(size)
    for unit in ("KB", "MB", "GB", "TB"):
        scaled /= 1024
        if scaled < 1024 or unit == "TB":
            return f"{scaled:.1f} {unit}" if scaled < 100 else f"{scaled:.0f} {unit}"
    return ""  # unreachable


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def human_eta(seconds: int | None) -> str:
    """eta_seconds for people, as photoq.js's humanEta says it; empty when there is nothing to say."""
    if not seconds:
        return ""
    if seconds < 60:
        return "less than a minute left"
    minutes = int(seconds / 60 + 0.5)  # half up, as Math.round in the page
    if minutes < 90:
        return f"about {minutes} min left"
    return f"about {minutes // 60} h {minutes % 60} min left"


def utc_datetime(ts: float | None) -> dict | None:
    """A time for <time datetime=...>: the machine value and a readable UTC fallback (JS shows local time)."""
    if ts is None:
        return None
    moment = datetime.fromtimestamp(ts, UTC)
    return {"iso": moment.isoformat(timespec="seconds").replace("+00:00", "Z"), "text": date_text(moment) + " UTC"}


def taken_at_text(raw: str | None) -> dict | None:
    """EXIF capture time: UTC when the camera wrote an offset ("...Z"), else the camera's local clock."""
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return {"iso": None, "camera": False, "text": raw}
    if moment.tzinfo is None:  # the camera's clock, time zone unknown: shown as it is, said to be camera time
        return {"iso": moment.isoformat(timespec="seconds"), "camera": True,
                "text": date_text(moment) + " (camera time)"}
    return {"iso": raw, "camera": False, "text": date_text(moment.astimezone(UTC)) + " UTC"}


def date_text(moment: datetime) -> str:
    """The pages' date format without script ("5 Dec 2026, 09:23"); the browser then says it in its own locale and
    time zone (format.js formatDate)."""
    return f"{moment.day} {moment:%b %Y, %H:%M}"


def camera_text(exif: dict) -> str | None:
    make = (exif.get("make") or "").strip()
    model = (exif.get("model") or "").strip()
    if make and model.lower().startswith(make.lower()):
        make = ""  # "Canon" + "Canon EOS R6" reads as "Canon EOS R6"
    camera = " ".join(part for part in (make, model) if part)
    return camera or None


def exposure_text(exif: dict) -> str | None:
    parts = []
    if exif.get("focal_length"):
        parts.append(f"{exif['focal_length']:g} mm")
    if exif.get("f_number"):
        parts.append(f"f/{exif['f_number']:g}")
    if exif.get("exposure_time"):
        t = exif["exposure_time"]
        parts.append(f"1/{round(1 / t)} s" if 0 < t < 1 else f"{t:g} s")
    if exif.get("iso"):
        parts.append(f"ISO {exif['iso']}")
    return " · ".join(parts) or None


def rendered_thumbs(thumbs: list[tuple[str, int]], written: dict[str, str]
                    ) -> list[tuple[str, int, str | None]]:
    """The thumbnails of a grid image's srcset: those already written (an output added to the configuration is
    served as the whole original until it is rendered, so it is left out meanwhile), or all, unversioned, when none
    is written yet."""
    ready: list[tuple[str, int, str | None]] = [
        (name, width, written[name]) for name, width in thumbs if name in written]
    return ready or [(name, width, None) for name, width in thumbs]


def grid_image(photo_id: int, thumbs: list[tuple[str, int, str | None]]) -> tuple[str, str]:
    """(src, srcset) of a grid image: the middle thumbnail, and every thumbnail at its nominal width."""
    if not thumbs:
        return urls.photo_file(photo_id, "original"), ""
    name, _, written_at = thumbs[len(thumbs) // 2]
    srcset = ", ".join(f"{urls.photo_file(photo_id, n, at)} {w}w" for n, w, at in thumbs)
    return urls.photo_file(photo_id, name, written_at), srcset


def thumbnail_specs(settings: Settings) -> list[tuple[str, int]]:
    """(name, nominal width) of the thumbnail outputs, smallest first: the srcset of a grid image."""
    return sorted(((o.name, o.width) for o in settings.outputs_for("thumbnail")), key=lambda item: item[1])


def tile_state(photo: Photo) -> str:
    """What a gallery tile shows: the thumbnail, or a placeholder saying where the photo is."""
    if photo.thumbnail_status == Status.COMPLETE:
        return "done"
    if photo.processing_status == Status.FAILED:
        return "failed"
    if photo.thumbhash:  # made before (`photoq reprocess` is making them again): they stay on show meanwhile
        return "done"
    if photo.thumbnail_status == Status.PROCESSING:
        return "generating"
    return "queued"


def batch_state(batch: Batch | None) -> str:
    """running, done, or failed (finished with failures): how the processing panel colours its bar."""
    if batch is None or batch.unfinished:
        return "running"
    return "failed" if batch.failed else "done"


def tile(photo: Photo, thumbs: list[tuple[str, int]], written: dict[str, str]) -> dict:
    src, srcset = grid_image(photo.id, rendered_thumbs(thumbs, written))
    return {
        "id": photo.id,
        "filename": photo.filename,
        "state": tile_state(photo),
        "status": str(photo.processing_status),
        "failed": photo.processing_status == Status.FAILED,
        "error": photo.error,
        "thumbhash": photo.thumbhash,
        "src": src,
        "srcset": srcset,
    }


def take_flash(request: web.Request) -> str | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    code, _, number = raw.partition(":")
    template = FLASH_MESSAGES.get(code)
    if template is None:
        return None
    return template.format(n=int(number) if number.isdigit() else 0)


def redirect(location: str, flash: str | None = None) -> web.HTTPSeeOther:
    response = web.HTTPSeeOther(location)
    if flash:
        response.set_cookie(FLASH_COOKIE, flash, max_age=60, httponly=True, samesite="Strict", path="/")
    return response


async def page(request: web.Request, template: str, context: dict, status: int = 200) -> web.Response:
    """Render a page with what every page needs: nav state, the flash message, asset URLs."""
    flash = take_flash(request)
    queue = request.app[QUEUE]
    base = {
        "static_url": lambda filename: static_url(request, filename),
        "flash": flash,
        "queue_paused": queue.paused,
        "nav": context.pop("nav", None),
        "human_bytes": human_bytes,
    }
    response = render(request, template, {**base, **context}, status=status)
    if flash is not None or FLASH_COOKIE in request.cookies:
        response.del_cookie(FLASH_COOKIE, path="/")
    return response


async def not_found(request: web.Request, what: str) -> web.Response:
    return await page(request, "error.html", {"title": "Not found", "message": f"There is no {what} here. "
                                              "It may have been deleted.", "nav": None}, status=404)


async def album_or_none(request: web.Request) -> Album | None:
    album_id = parse_page_id(request.match_info["id"])
    return await request.app[DB].get_album(album_id) if album_id is not None else None


async def photo_or_none(request: web.Request) -> Photo | None:
    photo_id = parse_page_id(request.match_info["id"])
    return await request.app[DB].get_photo(photo_id) if photo_id is not None else None


async def form_field(request: web.Request, name: str) -> str | None:
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return None
    value = (await request.post()).get(name)
    return value if isinstance(value, str) else None


# -- albums ------------------------------------------------------------------------------------------------------


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    return await render_index(request)


async def render_index(request: web.Request, error: str | None = None, name: str = "", status: int = 200):
    db = request.app[DB]
    albums = await db.list_albums()
    covers = await db.album_cover_photo_ids()
    thumbs = thumbnail_specs(request.app[CONFIG])
    written = await db.output_versions(list(covers.values()))
    cards = []
    for album in reversed(albums):  # newest album first
        cover_id = covers.get(album.id)
        cover_src, cover_srcset = grid_image(cover_id, rendered_thumbs(thumbs, written.get(cover_id, {}))) \
            if cover_id else (None, "")
        cards.append({
            "album": album,
            "cover_src": cover_src,
            "cover_srcset": cover_srcset,
            "created": utc_datetime(album.created_at),
        })
    return await page(request, "index.html", {
        "cards": cards, "error": error, "name": name, "max_name": MAX_ALBUM_NAME, "nav": "albums",
    }, status=status)


@routes.post("/albums")
async def create_album(request: web.Request) -> web.StreamResponse:
    raw = await form_field(request, "name") or ""
    try:
        name = clean_album_name(raw)
    except ValueError as exc:
        return await render_index(request, str(exc), raw.strip(), status=400)
    album = await request.app[QUEUE].create_album(name)
    raise redirect(urls.album_page(album.id), "album_created")


@routes.get("/albums/{id}")
async def album_page(request: web.Request) -> web.Response:
    album = await album_or_none(request)
    if album is None:
        return await not_found(request, "album")
    db = request.app[DB]
    settings = request.app[CONFIG]
    order = chosen_order(request)
    raw_after = request.query.get("after")
    after = Cursor.decode(raw_after, order) if raw_after else None
    rows = await db.album_photos_in_order(album.id, order, after, PAGE_SIZE + 1)
    photos, more = [p for p, _ in rows[:PAGE_SIZE]], len(rows) > PAGE_SIZE
    keys = [k for _, k in rows[:PAGE_SIZE]]
    stats = await request.app[QUEUE].stats(album.id)
    failed = await db.list_photos(album.id, Status.FAILED, ERROR_REPORT_LIMIT, 0) if stats.failed else []
    block = settings.upload.block_while_processing
    thumbs = thumbnail_specs(settings)
    written = await db.output_versions([p.id for p in photos])
    tiles = [tile(p, thumbs, written.get(p.id, {})) for p in photos]
    response = await page(request, "album.html", {
        "album": album,
        "stats": stats,
        "tiles": tiles,
        "days": timeline(order, photos, keys),
        "order": str(order),
        "orders": [{"value": str(o), "label": label, "url": urls.album_page_in_order(album.id, str(o))}
                   for o, label in ORDER_LABELS.items()],
        "older_url": urls.album_page_in_order(album.id, str(order), Cursor(keys[-1], photos[-1].id).encode())
                     if more else None,
        "newest_url": urls.album_page_in_order(album.id, str(order)),
        "other_albums": [a for a in reversed(await db.list_albums()) if a.id != album.id],
        "first_page": after is None,
        "failed": failed,  # the error report lists their names and errors, no pictures
        "failed_more": max(0, stats.failed - len(failed)),
        "busy": block and await db.album_has_unfinished_jobs(album.id),
        "block": block,
        "unfinished": stats.pending + stats.processing,
        "eta_text": human_eta(stats.eta_seconds),
        "settled": stats.complete + stats.failed,
        "batch": stats.batch,
        "batch_started": iso(stats.batch.started_at) if stats.batch else "",
        "batch_finished": stats.batch is None or stats.batch.unfinished == 0,
        "batch_state": batch_state(stats.batch),
        "thumbs_json": json.dumps(thumbs),
        "limits": settings.upload,
        "max_file_text": human_bytes(settings.upload.max_file_bytes),
        "created": utc_datetime(album.created_at),
        "nav": "albums",
    })
    remember_order(request, response, order)
    return response


ORDER_COOKIE = "photoq_order"


def chosen_order(request: web.Request) -> GalleryOrder:
    """The gallery order: the one asked for, else the one this browser chose last, else date taken."""
    return (parse_order(request.query.get("order")) or parse_order(request.cookies.get(ORDER_COOKIE))
            or DEFAULT_ORDER)


def remember_order(request: web.Request, response: web.StreamResponse, order: GalleryOrder) -> None:
    if request.query.get("order") == str(order) and request.cookies.get(ORDER_COOKIE) != str(order):
        response.set_cookie(ORDER_COOKIE, str(order), max_age=365 * 86400, httponly=True, samesite="Strict", path="/")


def timeline(order: GalleryOrder, photos: list[Photo], keys: list) -> dict[int, dict]:
    """photo id -> the day heading that goes before it: where a new day starts in a date order; none by name."""
    if order is GalleryOrder.NAME:
        return {}
    headings: dict[int, dict] = {}
    previous = None
    for photo, key in zip(photos, keys, strict=True):
        stamp = key if order is GalleryOrder.TAKEN else photo.created_at
        day = day_of(stamp)
        if day != previous:
            moment = datetime.fromisoformat(day)
            headings[photo.id] = {"iso": day, "text": f"{moment:%A} {moment.day} {moment:%B %Y}"}
            previous = day
    return headings


@routes.post("/albums/{id}/delete")
async def delete_album(request: web.Request) -> web.StreamResponse:
    album = await album_or_none(request)
    if album is None:
        return await not_found(request, "album")
    await request.app[TRASH].trash_album(album.id)
    raise redirect("/", "album_deleted")


async def failed_photos(request: web.Request, album_id: int):
    """Every failed photo of an album, read in pages (an album can have thousands)."""
    after = 0
    while page_of := await request.app[DB].list_photos(album_id, Status.FAILED, 500, after):
        for photo in page_of:
            yield photo
        after = page_of[-1].id


@routes.post("/albums/{id}/retry-failed")
async def retry_album(request: web.Request) -> web.StreamResponse:
    album = await album_or_none(request)
    if album is None:
        return await not_found(request, "album")
    retried = 0
    queue = request.app[QUEUE]
    async for photo in failed_photos(request, album.id):
        if await queue.retry_photo(photo.id) is not None:
            retried += 1
    raise redirect(urls.album_page(album.id), f"retried:{retried}" if retried else "nothing_to_retry")


@routes.post("/albums/{id}/clear-errors")
async def clear_album_errors(request: web.Request) -> web.StreamResponse:
    """Clear the album's error report by removing the photos that could not be processed."""
    album = await album_or_none(request)
    if album is None:
        return await not_found(request, "album")
    removed = 0
    async for photo in failed_photos(request, album.id):
        removed += len(await request.app[TRASH].trash_photos([photo.id]))
    raise redirect(urls.album_page(album.id), f"errors_cleared:{removed}")


# -- photos ------------------------------------------------------------------------------------------------------


@routes.get("/photos/{id}")
async def photo_page(request: web.Request) -> web.Response:
    photo = await photo_or_none(request)
    if photo is None:
        return await not_found(request, "photo")
    db = request.app[DB]
    settings = request.app[CONFIG]
    album = await db.get_album(photo.album_id)
    outputs = await db.photo_outputs(photo.id)
    attempts = await db.photo_attempts(photo.id)
    order = chosen_order(request)
    sequence = await db.album_photo_ids_in_order(photo.album_id, order)
    at = sequence.index(photo.id)
    newer = sequence[at - 1] if at > 0 else None
    older = sequence[at + 1] if at + 1 < len(sequence) else None

    image = choose_photo_image(photo, settings.outputs_for("variant"), settings.outputs_for("thumbnail"), outputs)
    exif = photo.exif
    history = [{
        "kind": a.kind, "attempt": a.attempt, "outcome": a.outcome or "running", "error": a.error,
        "started": utc_datetime(a.started_at),
        "duration": f"{a.finished_at - a.started_at:.1f} s" if a.finished_at is not None else None,
        "retry_at": utc_datetime(a.retry_at),
    } for a in attempts]
    return await page(request, "photo.html", {
        "photo": photo,
        "album": album,
        "image": image,
        "final": photo.processing_status in (Status.COMPLETE, Status.FAILED),
        "camera": camera_text(exif),
        "lens": (exif.get("lens_model") or "").strip() or None,
        "exposure": exposure_text(exif),
        "taken": taken_at_text(photo.taken_at),
        "uploaded": utc_datetime(photo.created_at),
        "completed": utc_datetime(photo.completed_at),
        "history": history,
        "newer": newer,
        "older": older,
        "order": str(order),
        "position": at + 1,
        "album_total": len(sequence),
        "original_url": urls.photo_file(photo.id, "original", original_version(photo.sha256)),
        "nav": "albums",
    })


@routes.post("/photos/{id}/retry")
async def retry_photo(request: web.Request) -> web.StreamResponse:
    photo = await photo_or_none(request)
    if photo is None:
        return await not_found(request, "photo")
    target = safe_next(await form_field(request, "next") or urls.photo_page(photo.id))
    state = await request.app[QUEUE].retry_photo(photo.id)
    raise redirect(target, "retried_photo" if state is not None else "nothing_to_retry")


@routes.post("/photos/{id}/delete")
async def delete_photo(request: web.Request) -> web.StreamResponse:
    photo = await photo_or_none(request)
    if photo is None:
        return await not_found(request, "photo")
    await request.app[TRASH].trash_photos([photo.id])
    raise redirect(urls.album_page(photo.album_id), "photo_deleted")


# -- queue -------------------------------------------------------------------------------------------------------


@routes.get("/queue")
async def queue_page(request: web.Request) -> web.Response:
    """The queue in photos, as people count them (a photo's thumbnail and display-version jobs are one photo)."""
    queue = request.app[QUEUE]
    overview = await queue.overview(Status.FAILED, limit=ERROR_REPORT_LIMIT)
    running = (await queue.overview(Status.PROCESSING, limit=50))["jobs"]
    labels = await request.app[DB].photo_labels([j["photo_id"] for j in overview["jobs"] + running])
    nodes = await request.app[CLUSTER].nodes()
    live = [n for n in nodes if n["state"] == "live"]
    stats = await queue.stats()
    oldest = overview["oldest_job_age_seconds"]
    breaker = overview["circuit_breaker"]
    running_photos = photos_of_jobs(running, labels)
    return await page(request, "queue.html", {
        "q": overview,
        "stats": stats,
        "waiting_photos": max(0, stats.pending + stats.processing - len(running_photos)),
        "failed_photos": photos_of_jobs(overview["jobs"], labels),
        "running_photos": running_photos,
        "oldest_text": human_age(oldest),
        "oldest_seconds": oldest,
        "eta_text": human_eta(await queue.eta_seconds()),
        "breaker": breaker,
        "workers_busy": sum(n["busy"] for n in live),  # over the whole cluster (one node without one)
        "workers_total": sum(n["workers"] for n in live),
        "nodes": nodes,
        "nav": "queue",
    })


PART_NAMES = {"thumbnail": "Thumbnails", "variant": "Display versions"}  # the UI's own words for the job kinds


def photos_of_jobs(jobs: list[dict], labels: dict[int, tuple[str, int, str]]) -> list[dict]:
    """Jobs grouped by photo, in the order their photos first appear: each photo once, with its parts in the UI's
    words, its most attempts, and its first error."""
    photos: dict[int, dict] = {}
    for job in jobs:
        entry = photos.setdefault(job["photo_id"], {
            "photo_id": job["photo_id"], "label": labels.get(job["photo_id"]), "parts": [], "attempts": 0,
            "max_attempts": job["max_attempts"], "error": None,
        })
        entry["parts"].append(PART_NAMES.get(job["kind"], job["kind"]))
        entry["attempts"] = max(entry["attempts"], job["attempts"])
        entry["error"] = entry["error"] or job["error"]
    return list(photos.values())


@routes.post("/queue/pause")
async def pause(request: web.Request) -> web.StreamResponse:
    await request.app[QUEUE].pause()
    raise redirect("/queue", "paused")


@routes.post("/queue/resume")
async def resume(request: web.Request) -> web.StreamResponse:
    await request.app[QUEUE].resume()
    raise redirect("/queue", "resumed")


@routes.post("/queue/retry-failed")
async def retry_all(request: web.Request) -> web.StreamResponse:
    count = await request.app[QUEUE].retry_all_failed()
    raise redirect("/queue", f"retried:{count}" if count else "nothing_to_retry")


@routes.post("/queue/clear-failed")
async def clear_failed(request: web.Request) -> web.StreamResponse:
    count = await request.app[QUEUE].clear_failed()
    raise redirect("/queue", f"failed_cleared:{count}")
