"""Managing albums and photos: rename, cover, moving and deleting several photos, and the trash.

The JSON API (documented in the README's API additions) and the page's form posts share the same services: the
Trash (photoq/trash.py) and the store's album verbs. Form posts redirect (303) back with a flash message.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from aiohttp import web

from ..errors import BadRequest, Conflict, NotFound
from ..models import MAX_ALBUM_NAME, clean_album_name, iso
from ..trash import RETENTION_DAYS
from . import urls
from .api import (
    CONTENT_TYPES,
    MAX_SQLITE_INTEGER,
    album_dict,
    existing_album,
    file_response,
    json_body,
    parse_id,
    photo_dict,
)
from .keys import CONFIG, DB, EVENTS, STORAGE, TRASH
from .ui import form_field, grid_image, not_found, page, parse_page_id, redirect, rendered_thumbs, thumbnail_specs

routes = web.RouteTableDef()

MAX_PHOTOS_PER_ACTION = 20_000
TRASH_PAGE_LIMIT = 500


def photo_id_list(raw: object) -> list[int]:
    if not isinstance(raw, list) or not raw or not all(isinstance(i, int) and not isinstance(i, bool) for i in raw):
        raise BadRequest("photo_ids must be a non-empty list of photo ids.", code="bad_photo_ids")
    if len(raw) > MAX_PHOTOS_PER_ACTION:
        raise BadRequest(f"At most {MAX_PHOTOS_PER_ACTION} photos at once.", code="too_many_photos")
    return [i for i in dict.fromkeys(raw) if 0 < i <= MAX_SQLITE_INTEGER]


def form_photo_ids(raw: str | None) -> list[int]:
    parts = [p.strip() for p in (raw or "").split(",") if p.strip()]
    if not parts or not all(p.isascii() and p.isdigit() for p in parts):
        raise BadRequest("Choose one or more photos first.", code="bad_photo_ids")
    return photo_id_list([int(p) for p in parts])


def with_cover(album) -> dict:
    return {**album_dict(album), "cover_photo_id": album.cover_photo_id}


# -- albums: rename and cover ----------------------------------------------------------------------------------


@routes.patch("/api/albums/{id}")
async def update_album(request: web.Request) -> web.Response:
    """{"name": ...} renames; {"cover_photo_id": id | null} chooses the cover (null: the automatic one)."""
    album = await existing_album(request)
    body = await json_body(request)
    if not {"name", "cover_photo_id"} & body.keys():
        raise BadRequest("Send a new name or cover_photo_id.", code="bad_request")
    db = request.app[DB]
    if "name" in body:
        try:
            name = clean_album_name(body["name"])
        except ValueError as exc:
            raise BadRequest(str(exc), code="bad_name") from None
        await db.rename_album(album.id, name)
    if "cover_photo_id" in body:
        cover = body["cover_photo_id"]
        if cover is not None and (isinstance(cover, bool) or not isinstance(cover, int) or cover < 1):
            raise BadRequest("cover_photo_id must be a photo id or null.", code="bad_id")
        if not await db.set_album_cover(album.id, cover):
            raise NotFound("That photo is not in this album.", code="not_found")
    request.app[EVENTS].stats_changed([None, album.id])
    return web.json_response(with_cover(await db.get_album(album.id)))


@routes.post("/albums/{id}/rename")
async def rename_album_form(request: web.Request) -> web.StreamResponse:
    album_id = parse_page_id(request.match_info["id"])
    if album_id is None or await request.app[DB].get_album(album_id) is None:
        return await not_found(request, "album")
    try:
        name = clean_album_name(await form_field(request, "name"))
    except ValueError:
        raise redirect(urls.album_page(album_id), "bad_name") from None
    await request.app[DB].rename_album(album_id, name)
    raise redirect(urls.album_page(album_id), "album_renamed")


@routes.post("/albums/{id}/cover")
async def cover_form(request: web.Request) -> web.StreamResponse:
    album_id = parse_page_id(request.match_info["id"])
    photo_id = parse_page_id(await form_field(request, "photo_id"))
    if album_id is None or photo_id is None or not await request.app[DB].set_album_cover(album_id, photo_id):
        return await not_found(request, "photo in this album")
    target = await form_field(request, "next")
    raise redirect(urls.photo_page(photo_id) if target == "photo" else urls.album_page(album_id), "cover_set")


# -- several photos: move and delete -----------------------------------------------------------------------------


async def move(request: web.Request, photo_ids: list[int], album_id: int) -> tuple[list[int], list[int]]:
    try:
        moved, already = await request.app[DB].move_photos(photo_ids, album_id)
    except LookupError:
        raise NotFound("There is no album with that id.", code="unknown_album") from None
    request.app[EVENTS].stats_changed([None, album_id, *{left for _, left in moved}])
    return [photo_id for photo_id, _ in moved], already


@routes.post("/api/photos/move")
async def move_photos(request: web.Request) -> web.Response:
    body = await json_body(request)
    ids = photo_id_list(body.get("photo_ids"))
    target = body.get("album_id")
    if isinstance(target, bool) or not isinstance(target, int) or not 0 < target <= MAX_SQLITE_INTEGER:
        raise BadRequest("album_id must be the id of the album to move the photos into.", code="bad_id")
    moved, already = await move(request, ids, target)
    return web.json_response({"moved": moved, "already_in_album": already})


@routes.post("/api/photos/trash")
async def trash_photos(request: web.Request) -> web.Response:
    """Delete several photos at once (into the trash, as DELETE /api/photos/{id} does)."""
    ids = photo_id_list((await json_body(request)).get("photo_ids"))
    done = await request.app[TRASH].trash_photos(ids)
    return web.json_response({"trashed": [photo_id for photo_id, _ in done]})


@routes.post("/albums/{id}/selection")
async def selection_form(request: web.Request) -> web.StreamResponse:
    """The gallery's selection bar without script: action=delete, or action=move with target_album."""
    album_id = parse_page_id(request.match_info["id"])
    if album_id is None or await request.app[DB].get_album(album_id) is None:
        return await not_found(request, "album")
    form = await request.post()

    def field(name: str) -> str | None:
        value = form.get(name)
        return value if isinstance(value, str) else None

    ids = form_photo_ids(field("photo_ids"))
    action = field("action")
    if action == "delete":
        done = await request.app[TRASH].trash_photos(ids)
        raise redirect(urls.album_page(album_id), f"photos_deleted:{len(done)}")
    if action == "move":
        target = parse_page_id(field("target_album"))
        if target is None:
            raise BadRequest("Choose the album to move the photos into.", code="bad_id")
        moved, _ = await move(request, ids, target)
        raise redirect(urls.album_page(album_id), f"photos_moved:{len(moved)}")
    raise BadRequest("Unknown action.", code="bad_request")


# -- the trash ---------------------------------------------------------------------------------------------------


def purge_at(deleted_at: float) -> float:
    return deleted_at + RETENTION_DAYS * 86400


@routes.get("/api/trash")
async def trash_listing(request: web.Request) -> web.Response:
    db = request.app[DB]
    albums = await db.trashed_albums()
    photos = await db.trashed_photos(TRASH_PAGE_LIMIT)
    return web.json_response({
        "retention_days": RETENTION_DAYS,
        "albums": [{"id": a["id"], "name": a["name"], "created_at": iso(a["created_at"]),
                    "deleted_at": iso(a["deleted_at"]), "purge_at": iso(purge_at(a["deleted_at"])),
                    "photo_count": a["photo_count"]} for a in albums],
        "photos": [{"id": p["id"], "filename": p["filename"], "album_id": p["album_id"], "album_name": p["album_name"],
                    "size_bytes": p["size_bytes"], "deleted_at": iso(p["deleted_at"]),
                    "purge_at": iso(purge_at(p["deleted_at"]))} for p in photos],
        "photo_count": await db.trashed_photo_count(),
    })


@routes.post("/api/trash/albums/{id}/restore")
async def restore_album(request: web.Request) -> web.Response:
    album_id = parse_id(request.match_info["id"])
    if not await request.app[TRASH].restore_album(album_id):
        raise NotFound("There is no album with that id in the trash.")
    return web.json_response(with_cover(await request.app[DB].get_album(album_id)))


@routes.post("/api/trash/photos/{id}/restore")
async def restore_photo(request: web.Request) -> web.Response:
    photo_id = parse_id(request.match_info["id"])
    outcome, other = await request.app[TRASH].restore_photo(photo_id)
    if outcome == "gone":
        raise NotFound("There is no photo with that id in the trash.")
    if outcome == "duplicate":
        raise Conflict(f"The album already has these bytes (photo {other}).", code="duplicate")
    if outcome == "album_trashed":
        raise Conflict("The photo's album is in the trash; restore the album first.", code="album_in_trash")
    photo = await request.app[DB].get_photo(photo_id)
    if photo is None:  # put back in the trash meanwhile
        raise NotFound("There is no photo with that id.")
    return web.json_response(photo_dict(photo, request.app[CONFIG].output_names))


@routes.delete("/api/trash/albums/{id}")
async def purge_album(request: web.Request) -> web.Response:
    if not await request.app[TRASH].purge_album(parse_id(request.match_info["id"])):
        raise NotFound("There is no album with that id in the trash.")
    return web.Response(status=204)


@routes.delete("/api/trash/photos/{id}")
async def purge_photo(request: web.Request) -> web.Response:
    if not await request.app[TRASH].purge_photo(parse_id(request.match_info["id"])):
        raise NotFound("There is no photo with that id in the trash.")
    return web.Response(status=204)


@routes.delete("/api/trash")
async def empty_trash(request: web.Request) -> web.Response:
    purged = await request.app[TRASH].empty()
    return web.json_response({"purged_albums": purged.albums, "purged_photos": purged.photos})


# -- the trash page ----------------------------------------------------------------------------------------------


def when(ts: float) -> dict:
    moment = datetime.fromtimestamp(ts, UTC)
    return {"iso": moment.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "text": moment.strftime("%d %b %Y, %H:%M UTC")}


@routes.get("/trash")
async def trash_page(request: web.Request) -> web.Response:
    db = request.app[DB]
    settings = request.app[CONFIG]
    albums = await db.trashed_albums()
    photos = await db.trashed_photos(TRASH_PAGE_LIMIT)
    thumbs = thumbnail_specs(settings)
    with_thumbs = [p["id"] for p in photos if p["thumbnail_status"] == "complete"]
    with_thumbs += [a["cover_photo_id"] for a in albums if a["cover_photo_id"]]
    written = await db.output_versions(with_thumbs)
    now = datetime.now(UTC).timestamp()

    def picture(photo_id: int | None) -> dict | None:
        if photo_id is None or photo_id not in written:
            return None
        src, srcset = grid_image(photo_id, rendered_thumbs(thumbs, written[photo_id]))
        return {"src": src.replace("/api/photos/", "/trash/photos/"),
                "srcset": srcset.replace("/api/photos/", "/trash/photos/")}

    def days_left(deleted_at: float) -> int:
        return max(0, math.ceil((purge_at(deleted_at) - now) / 86400))

    return await page(request, "trash.html", {
        "albums": [{**a, "deleted": when(a["deleted_at"]), "days_left": days_left(a["deleted_at"]),
                    "picture": picture(a["cover_photo_id"])} for a in albums],
        "photos": [{**p, "deleted": when(p["deleted_at"]), "days_left": days_left(p["deleted_at"]),
                    "picture": picture(p["id"])} for p in photos],
        "photo_total": await db.trashed_photo_count(),
        "retention_days": RETENTION_DAYS,
        "max_name": MAX_ALBUM_NAME,
        "nav": "trash",
    })


@routes.get("/trash/photos/{id}/file")
async def trashed_photo_thumbnail(request: web.Request) -> web.StreamResponse:
    """A thumbnail of a photo in the trash, for the trash page (the API's file URLs know only live photos)."""
    photo_id = parse_page_id(request.match_info["id"])
    settings = request.app[CONFIG]
    variant = request.query.get("variant", "")
    thumbs = {o.name: o for o in settings.outputs_for("thumbnail")}
    if photo_id is None or variant not in thumbs:
        raise NotFound("There is no such thumbnail.")
    db = request.app[DB]
    in_trash = await db.trashed_photo_album(photo_id) is not None or any(
        a["cover_photo_id"] == photo_id for a in await db.trashed_albums())
    recorded = (await db.photo_outputs(photo_id)).get(variant) if in_trash else None
    found = recorded and request.app[STORAGE].find_output(photo_id, variant, recorded.format, thumbs[variant].format)
    if not found:
        raise NotFound("There is no such thumbnail.")
    path, fmt = found
    return file_response(path, CONTENT_TYPES[fmt], cache="private, no-store")


@routes.post("/trash/albums/{id}/restore")
async def restore_album_form(request: web.Request) -> web.StreamResponse:
    album_id = parse_page_id(request.match_info["id"])
    if album_id is not None and await request.app[TRASH].restore_album(album_id):
        raise redirect(urls.album_page(album_id), "restored")
    raise redirect("/trash")


@routes.post("/trash/photos/{id}/restore")
async def restore_photo_form(request: web.Request) -> web.StreamResponse:
    photo_id = parse_page_id(request.match_info["id"])
    outcome, _ = await request.app[TRASH].restore_photo(photo_id) if photo_id is not None else ("gone", None)
    flash = {"restored": "restored", "duplicate": "restore_duplicate", "album_trashed": "restore_album_trashed"}
    raise redirect("/trash", flash.get(outcome))


@routes.post("/trash/albums/{id}/purge")
async def purge_album_form(request: web.Request) -> web.StreamResponse:
    album_id = parse_page_id(request.match_info["id"])
    if album_id is not None and await request.app[TRASH].purge_album(album_id):
        raise redirect("/trash", "purged")
    raise redirect("/trash")


@routes.post("/trash/photos/{id}/purge")
async def purge_photo_form(request: web.Request) -> web.StreamResponse:
    photo_id = parse_page_id(request.match_info["id"])
    if photo_id is not None and await request.app[TRASH].purge_photo(photo_id):
        raise redirect("/trash", "purged")
    raise redirect("/trash")


@routes.post("/trash/empty")
async def empty_trash_form(request: web.Request) -> web.StreamResponse:
    await request.app[TRASH].empty()
    raise redirect("/trash", "emptied")
