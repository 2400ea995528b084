"""The JSON API under /api, as written in the HTTP contract."""

from __future__ import annotations

import contextlib
import json

from aiohttp import web

from .. import imaging
from ..errors import BadRequest, Conflict, NotFound
from ..gallery_order import DEFAULT_ORDER, Cursor, GalleryOrder, parse_order
from ..models import Album, Photo, Status, clean_album_name, iso, original_version, output_version
from ..ops.reprocess import Reprocessor, UnknownVariant, check_variants, settings_fingerprints
from . import urls
from .keys import CLUSTER, CONFIG, DB, INGEST, QUEUE, STORAGE, TRASH
from .photo_image import BROWSER_IMAGE_TYPES, written_version
from .uploads import MultipartFiles, upload_answer

routes = web.RouteTableDef()

MAX_SQLITE_INTEGER = 2**63 - 1
DEFAULT_PAGE = 100
MAX_PAGE = 500


def parse_id(raw: str, what: str = "id") -> int:
    if not raw.isascii() or not raw.isdigit():
        raise BadRequest(f"The {what} must be a whole number.", code="bad_id")
    value = int(raw)
    if value > MAX_SQLITE_INTEGER:
        raise NotFound()
    return value


def optional_id_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    return None if raw in (None, "") else parse_id(raw, name)


def status_param(request: web.Request) -> Status | None:
    raw = request.query.get("status")
    if raw in (None, ""):
        return None
    try:
        return Status(raw)
    except ValueError:
        raise BadRequest("status must be one of pending, processing, complete, failed.", code="bad_status") from None


async def json_body(request: web.Request) -> dict:
    try:
        body = await request.json(loads=json.loads)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, nesting deeper than Python's stack
        raise BadRequest("The request body must be valid JSON.", code="bad_json") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.", code="bad_json")
    return body


def album_dict(album: Album) -> dict:
    return {
        "id": album.id,
        "name": album.name,
        "created_at": iso(album.created_at),
        "photo_count": album.photo_count,
        "processing": album.processing,
    }


def photo_urls(photo: Photo, output_names) -> dict:
    """Each URL names the photo's content (`v`), so a client never shows another picture from its cache: the
    original's URL can be cached for good; an output's is revalidated (it changes when the output is rendered
    again, and only the pages know when that was)."""
    version = original_version(photo.sha256)
    return {name: urls.photo_file(photo.id, name, version) for name in ("original", *output_names)}


def photo_dict(photo: Photo, output_names) -> dict:
    return {
        "id": photo.id,
        "album_id": photo.album_id,
        "filename": photo.filename,
        "sha256": photo.sha256,
        "size_bytes": photo.size_bytes,
        "width": photo.width,
        "height": photo.height,
        "content_type": photo.content_type,
        "taken_at": photo.taken_at,
        "exif": photo.exif,
        "processing_status": str(photo.processing_status),
        "thumbnail_status": str(photo.thumbnail_status),
        "variant_status": str(photo.variant_status),
        "attempts": photo.attempts,
        "error": photo.error,
        "created_at": iso(photo.created_at),
        "completed_at": iso(photo.completed_at),
        "urls": photo_urls(photo, output_names),
        "thumbhash": photo.thumbhash,
    }


async def existing_album(request: web.Request) -> Album:
    album = await request.app[DB].get_album(parse_id(request.match_info["id"]))
    if album is None:
        raise NotFound("There is no album with that id.")
    return album


async def existing_photo(request: web.Request) -> Photo:
    photo = await request.app[DB].get_photo(parse_id(request.match_info["id"]))
    if photo is None:
        raise NotFound("There is no photo with that id.")
    return photo


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


# -- albums ----------------------------------------------------------------------------------------------------


@routes.post("/api/albums")
async def create_album(request: web.Request) -> web.Response:
    body = await json_body(request)
    try:
        name = clean_album_name(body.get("name"))
    except ValueError as exc:
        raise BadRequest(str(exc), code="bad_name") from None
    album = await request.app[QUEUE].create_album(name)
    return web.json_response({"id": album.id, "name": album.name, "created_at": iso(album.created_at)}, status=201)


@routes.get("/api/albums")
async def list_albums(request: web.Request) -> web.Response:
    albums = await request.app[DB].list_albums()
    return web.json_response({"albums": [album_dict(a) for a in albums]})


@routes.get("/api/albums/{id}")
async def get_album(request: web.Request) -> web.Response:
    album = await existing_album(request)
    stats = await request.app[QUEUE].stats(album.id)
    return web.json_response({**album_dict(album), "stats": stats.as_dict()})


@routes.delete("/api/albums/{id}")
async def delete_album(request: web.Request) -> web.Response:
    album_id = parse_id(request.match_info["id"])
    if not await request.app[TRASH].trash_album(album_id):  # gone for API clients; restorable for 30 days
        raise NotFound("There is no album with that id.")
    return web.Response(status=204)


# -- upload ----------------------------------------------------------------------------------------------------

MAX_HASHES_PER_CHECK = 1000


@routes.post("/api/albums/{id}/hashes")
async def album_hashes(request: web.Request) -> web.Response:
    """Which of these SHA-256 hashes the album has: the uploader asks before sending a file's bytes."""
    album = await existing_album(request)
    hashes = (await json_body(request)).get("sha256")
    if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
        raise BadRequest("sha256 must be a list of hex SHA-256 hashes.", code="bad_hashes")
    if len(hashes) > MAX_HASHES_PER_CHECK:
        raise BadRequest(f"At most {MAX_HASHES_PER_CHECK} hashes per request.", code="too_many_hashes")
    wanted = [h.lower() for h in hashes]
    if not all(len(h) == 64 and all(c in "0123456789abcdef" for c in h) for h in wanted):
        raise BadRequest("Each hash must be 64 hexadecimal digits (SHA-256).", code="bad_hashes")
    found = await request.app[DB].album_photos_with_sha256(album.id, wanted)
    present = [h for h in dict.fromkeys(wanted) if h in found]
    return web.json_response({"present": present, "photo_ids": {h: found[h] for h in present}})


BATCH_HEADER = "X-Photoq-Batch"


def upload_batch(request: web.Request) -> str | None:
    value = request.headers.get(BATCH_HEADER, "")
    if 8 <= len(value) <= 64 and value.isascii() and all(c.isalnum() or c in "-_" for c in value):
        return value
    return None


@routes.post("/api/albums/{id}/photos")
async def upload_photos(request: web.Request) -> web.Response:
    ingest = request.app[INGEST]
    album_id = parse_id(request.match_info["id"])
    batch = upload_batch(request)
    await ingest.check_can_accept(album_id, request.content_length, batch)
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("Send the files as multipart/form-data, in parts named 'file'.", code="bad_multipart")
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError) as exc:
        raise BadRequest(f"The multipart body is malformed ({exc}).", code="bad_multipart") from None
    try:
        async with contextlib.aclosing(MultipartFiles(reader, request.app[CONFIG].upload).parts()) as files:
            outcomes = await ingest.receive(album_id, files, batch)
    finally:
        ingest.keep_batch_open(album_id, batch)
    status, body = upload_answer(outcomes)
    return web.json_response(body, status=status)


# -- photos ----------------------------------------------------------------------------------------------------


def order_param(request: web.Request) -> GalleryOrder | None:
    raw = request.query.get("order")
    order = parse_order(raw)
    if raw and order is None:
        raise BadRequest("order must be one of " + ", ".join(o.value for o in GalleryOrder) + ".", code="bad_order")
    return order


@routes.get("/api/albums/{id}/photos")
async def list_photos(request: web.Request) -> web.Response:
    album = await existing_album(request)
    status = status_param(request)
    raw_limit = request.query.get("limit", str(DEFAULT_PAGE))
    if not raw_limit.isascii() or not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_PAGE}.", code="bad_limit")
    limit = int(raw_limit)
    order = order_param(request)
    if order is not None:
        return await list_photos_in_order(request, album, order, status, limit)
    after = optional_id_param(request, "after") or 0
    photos = await request.app[DB].list_photos(album.id, status, limit + 1, after)
    names = request.app[CONFIG].output_names
    page = photos[:limit]
    return web.json_response({
        "photos": [photo_dict(p, names) for p in page],
        "next": str(page[-1].id) if len(photos) > limit else None,
    })


async def list_photos_in_order(request: web.Request, album: Album, order: GalleryOrder, status: Status | None,
                               limit: int) -> web.Response:
    """`?order=`: the gallery's orders, paged with the opaque cursor that `next` gives."""
    raw_after = request.query.get("after")
    after = Cursor.decode(raw_after, order) if raw_after else None
    if raw_after and after is None:
        raise BadRequest("after must be the next cursor of an earlier page in the same order.", code="bad_cursor")
    rows = await request.app[DB].album_photos_in_order(album.id, order, after, limit + 1, status)
    names = request.app[CONFIG].output_names
    page = rows[:limit]
    return web.json_response({
        "photos": [{**photo_dict(p, names), "sort_key": key} for p, key in page],
        "next": Cursor(page[-1][1], page[-1][0].id).encode() if len(rows) > limit else None,
        "order": str(order),
    })


@routes.get("/api/albums/{id}/photo-ids")
async def list_photo_ids(request: web.Request) -> web.Response:
    """Every photo id of an album in a gallery order (default: date taken): what the viewer steps through."""
    album = await existing_album(request)
    order = order_param(request) or DEFAULT_ORDER
    ids = await request.app[DB].album_photo_ids_in_order(album.id, order)
    return web.json_response({"album_id": album.id, "order": str(order), "ids": ids})


@routes.get("/api/photos/{id}/display")
async def display_versions(request: web.Request) -> web.Response:
    """What the full-screen viewer needs of a photo: its ready display versions (real sizes, cacheable URLs), and
    the original when a browser can show it (the top of the zoom)."""
    photo = await existing_photo(request)
    settings = request.app[CONFIG]
    outputs = await request.app[DB].photo_outputs(photo.id)
    versions: list[dict] = []
    for output in settings.outputs_for("variant"):
        ready = outputs.get(output.name)
        if ready is not None:
            versions.append({"name": output.name, "width": ready.width, "height": ready.height,
                             "url": urls.photo_file(photo.id, output.name, written_version(photo, ready))})
    if not versions:  # nothing rendered yet: the largest thumbnail stands in
        thumbs = sorted(settings.outputs_for("thumbnail"), key=lambda o: o.width)
        ready = outputs.get(thumbs[-1].name) if thumbs else None
        if ready is not None:
            versions.append({"name": thumbs[-1].name, "width": ready.width, "height": ready.height,
                             "url": urls.photo_file(photo.id, thumbs[-1].name, written_version(photo, ready))})
    versions.sort(key=lambda v: (v["width"] * v["height"], v["name"]))
    original = None
    if photo.content_type in BROWSER_IMAGE_TYPES:
        original = {"width": photo.width, "height": photo.height,
                    "url": urls.photo_file(photo.id, "original", original_version(photo.sha256))}
    return web.json_response({
        "id": photo.id, "album_id": photo.album_id, "filename": photo.filename, "width": photo.width,
        "height": photo.height, "taken_at": photo.taken_at, "versions": versions, "original": original,
        "thumbhash": photo.thumbhash,
    })


@routes.get("/api/photos/{id}")
async def get_photo(request: web.Request) -> web.Response:
    photo = await existing_photo(request)
    return web.json_response(photo_dict(photo, request.app[CONFIG].output_names))


@routes.get("/api/photos/{id}/processing-status")
async def processing_status(request: web.Request) -> web.Response:
    photo = await existing_photo(request)
    return web.json_response({
        "photo_id": photo.id,
        "processing_status": str(photo.processing_status),
        "thumbnail_status": str(photo.thumbnail_status),
        "variant_status": str(photo.variant_status),
        "processing_attempts": photo.attempts,
        "last_attempt": iso(photo.last_attempt),
        "completed_at": iso(photo.completed_at),
        "error": photo.error,
    })


@routes.get("/api/photos/{id}/history")
async def photo_history(request: web.Request) -> web.Response:
    photo = await existing_photo(request)
    attempts = await request.app[DB].photo_attempts(photo.id)
    return web.json_response({"photo_id": photo.id, "attempts": [
        {"job_id": a.job_id, "kind": a.kind, "attempt": a.attempt, "started_at": iso(a.started_at),
         "finished_at": iso(a.finished_at), "outcome": a.outcome, "error": a.error, "retry_at": iso(a.retry_at)}
        for a in attempts
    ]})


@routes.get("/api/photos/{id}/file")
async def photo_file(request: web.Request) -> web.StreamResponse:
    photo = await existing_photo(request)
    settings = request.app[CONFIG]
    storage = request.app[STORAGE]
    variant = request.query.get("variant", "original")
    outputs = {o.name: o for o in settings.outputs}
    if variant != "original" and variant not in outputs:
        raise BadRequest(
            "Unknown variant; use original or one of: " + ", ".join(outputs) + ".", code="unknown_variant"
        )
    if variant != "original":
        # In the format it was written in: an output whose format changed in the configuration keeps being served
        # until `photoq reprocess` has rendered it again.
        recorded = (await request.app[DB].photo_outputs(photo.id)).get(variant)
        found = recorded and storage.find_output(photo.id, variant, recorded.format, outputs[variant].format)
        if found:
            path, fmt = found
            # A URL naming the output's current version (`v`, as the pages make them) may be cached for good; any
            # other the browser asks again (a cheap 304 by ETag), as a re-render keeps such a URL.
            current = (recorded is not None and recorded.created_at is not None
                       and request.query.get("v") == output_version(photo.sha256, recorded.created_at))
            cache = "private, max-age=31536000, immutable" if current else "private, no-cache"
            return file_response(path, CONTENT_TYPES[fmt], cache=cache)
    path = storage.original_path(photo.sha256, photo.format)
    if not path.is_file():
        raise NotFound("The photo's file is missing from storage.", code="file_missing")
    headers = {"X-Photoq-Fallback": "original"} if variant != "original" else {}
    if headers:
        cache = "no-cache"
    elif request.query.get("v") == original_version(photo.sha256):
        cache = "private, max-age=31536000, immutable"  # the URL names the bytes
    else:
        cache = "private, max-age=86400"
    return file_response(path, photo.content_type, cache=cache, headers=headers)


CONTENT_TYPES = imaging.FORMATS  # format -> Content-Type, for outputs as for originals


def file_response(path, content_type: str, cache: str, headers: dict | None = None) -> web.FileResponse:
    response = web.FileResponse(path, headers={"Content-Type": content_type, "Cache-Control": cache,
                                               "X-Content-Type-Options": "nosniff", **(headers or {})})
    return response


@routes.post("/api/photos/{id}/retry")
async def retry_photo(request: web.Request) -> web.Response:
    photo = await existing_photo(request)
    if await request.app[QUEUE].retry_photo(photo.id) is None:
        raise Conflict("Nothing of this photo has failed, so there is nothing to retry.", code="nothing_to_retry")
    refreshed = await request.app[DB].get_photo(photo.id)
    if refreshed is None:  # deleted in the meantime
        raise NotFound("There is no photo with that id.")
    return web.json_response(photo_dict(refreshed, request.app[CONFIG].output_names), status=202)


@routes.delete("/api/photos/{id}")
async def delete_photo(request: web.Request) -> web.Response:
    photo_id = parse_id(request.match_info["id"])
    if not await request.app[TRASH].trash_photos([photo_id]):
        raise NotFound("There is no photo with that id.")
    return web.Response(status=204)


# -- queue -----------------------------------------------------------------------------------------------------


@routes.get("/api/stats")
async def stats(request: web.Request) -> web.Response:
    album_id = optional_id_param(request, "album_id")
    return web.json_response((await request.app[QUEUE].stats(album_id)).as_dict())


@routes.get("/api/admin/queue")
async def queue_overview(request: web.Request) -> web.Response:
    return web.json_response(await queue_object(request.app, status_param(request)))


async def queue_object(app: web.Application, status: Status | None = None) -> dict:
    """The queue object of GET /api/admin/queue: the queue's overview and the cluster's nodes."""
    return {**await app[QUEUE].overview(status), "nodes": await app[CLUSTER].nodes()}


@routes.post("/api/admin/queue/pause")
async def pause_queue(request: web.Request) -> web.Response:
    await request.app[QUEUE].pause()
    return web.json_response(await queue_object(request.app))


@routes.post("/api/admin/queue/resume")
async def resume_queue(request: web.Request) -> web.Response:
    await request.app[QUEUE].resume()
    return web.json_response(await queue_object(request.app))


@routes.post("/api/admin/queue/retry-failed")
async def retry_failed(request: web.Request) -> web.Response:
    return web.json_response({"requeued": await request.app[QUEUE].retry_all_failed()})


@routes.delete("/api/admin/queue/failed")
async def clear_failed(request: web.Request) -> web.Response:
    return web.json_response({"cleared": await request.app[QUEUE].clear_failed()})


@routes.post("/api/admin/reprocess")
async def reprocess(request: web.Request) -> web.Response:
    """Queue the outputs that are missing or stale under this server's output settings (`photoq reprocess`)."""
    settings = request.app[CONFIG]
    body = await json_body(request) if request.body_exists else {}
    variants = body.get("variants")
    if variants is not None and (not isinstance(variants, list) or not variants
                                 or not all(isinstance(v, str) for v in variants)):
        raise BadRequest("variants must be a non-empty list of output names.", code="bad_variants")
    try:
        check_variants(settings, variants)
    except UnknownVariant:
        raise BadRequest("Unknown variant; use one of: " + ", ".join(settings.output_names) + ".",
                         code="unknown_variant") from None
    album_id = body.get("album_id")
    if album_id is not None and (isinstance(album_id, bool) or not isinstance(album_id, int) or album_id < 1):
        raise BadRequest("album_id must be a positive whole number.", code="bad_id")
    flags = {key: body.get(key, False) for key in ("all", "dry_run")}
    if not all(isinstance(value, bool) for value in flags.values()):
        raise BadRequest("all and dry_run must be true or false.", code="bad_request")
    expect = body.get("expect")
    if expect is not None and (not isinstance(expect, dict) or not all(isinstance(v, str) for v in expect.values())):
        raise BadRequest("expect must map output names to their settings, as photoq reprocess sends them.",
                         code="bad_request")
    if expect is not None and expect != settings_fingerprints(settings):
        raise Conflict("photoq serve was started with other output settings than the ones reprocess was given; "
                       "restart the server so that it uses them, then run reprocess again.", code="settings_differ")
    if album_id is not None and (album_id > MAX_SQLITE_INTEGER or await request.app[DB].get_album(album_id) is None):
        raise NotFound("There is no album with that id.", code="unknown_album")
    result = await Reprocessor(settings, request.app[DB], request.app[STORAGE], request.app[QUEUE].queue_outputs).run(
        variants, album_id, everything=flags["all"], dry_run=flags["dry_run"])
    return web.json_response(result.as_dict())
