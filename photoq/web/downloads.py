"""Originals as one ZIP archive, streamed while it is read from disk: no temporary archive, constant memory.

`GET /api/albums/{id}/download` sends a whole album; `POST /api/photos/download` the photos it names, as JSON
(`{"photo_ids": [...]}`) or as a form post from the album page (`photo_ids=1,2,3` with the CSRF token), which the
browser saves as a download.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from urllib.parse import quote

import aiofiles
from aiohttp import web

from ..errors import BadRequest, NotFound
from ..models import Photo
from ..zipstream import ZipEntry, ZipPlan, modified_time, unique_names
from .api import MAX_SQLITE_INTEGER, existing_album, json_body
from .keys import DB, STORAGE

log = logging.getLogger("photoq.web")

routes = web.RouteTableDef()

CHUNK = 1024 * 1024
MAX_PHOTOS_PER_DOWNLOAD = 20_000
ALBUM_PAGE = 500


def taken_or_uploaded(photo: Photo) -> datetime:
    """The time an archive entry carries: when the photo was taken, else when it was uploaded."""
    if photo.taken_at:
        try:
            moment = datetime.fromisoformat(photo.taken_at)
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        except ValueError:
            pass
    return modified_time(photo.created_at)


def archive_filename(stem: str) -> str:
    cleaned = "".join(c if c.isprintable() and c not in '/\\"' else "_" for c in stem).strip() or "photos"
    return cleaned[:120] + ".zip"


async def stream_zip(request: web.Request, photos: list[Photo], name: str) -> web.StreamResponse:
    storage = request.app[STORAGE]
    paths = [storage.original_path(p.sha256, p.format) for p in photos]

    def sizes() -> list[int | None]:
        found: list[int | None] = []
        for path in paths:
            try:
                found.append(path.stat().st_size)
            except OSError:
                found.append(None)
        return found

    on_disk = await asyncio.to_thread(sizes)
    present = [(photo, path, size)
               for photo, path, size in zip(photos, paths, on_disk, strict=True) if size is not None]
    if len(present) < len(photos):
        log.warning("download: %d original(s) missing from storage, left out", len(photos) - len(present))
    names = unique_names([photo.filename for photo, _, _ in present])
    entries = [ZipEntry(entry_name, size, taken_or_uploaded(photo))
               for entry_name, (photo, _, size) in zip(names, present, strict=True)]
    plan = ZipPlan(entries)

    response = web.StreamResponse(headers={
        "Content-Type": "application/zip",
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(archive_filename(name), safe='')}",
        "Cache-Control": "no-store",
        "X-Photoq-Photo-Count": str(len(entries)),
    })
    response.content_length = plan.total_size
    await response.prepare(request)
    for entry, (_, path, _) in zip(entries, present, strict=True):
        await response.write(entry.local_header())
        async with aiofiles.open(path, "rb") as source:
            remaining = entry.size
            while remaining:
                chunk = await source.read(min(CHUNK, remaining))
                if not chunk:
                    # The file shrank under us (it never should: originals are immutable). The length promised is
                    # wrong now: end the connection, so the client sees a failed download, not a corrupt archive.
                    raise ConnectionResetError(f"{path.name} ended early while being archived")
                entry.update(chunk)
                remaining -= len(chunk)
                await response.write(chunk)  # waits while the client is slower than the disk
        await response.write(entry.descriptor())
    await response.write(plan.end())
    await response.write_eof()
    return response


@routes.get("/api/albums/{id}/download")
async def download_album(request: web.Request) -> web.StreamResponse:
    album = await existing_album(request)
    db = request.app[DB]
    photos: list[Photo] = []
    after = 0
    while page := await db.list_photos(album.id, None, ALBUM_PAGE, after):
        photos.extend(page)
        after = page[-1].id
    return await stream_zip(request, photos, album.name)


def parse_form_ids(raw: object) -> list[int]:
    """The form post's field: "1,2,3"."""
    if not isinstance(raw, str):
        raise BadRequest("photo_ids must be whole numbers separated by commas.", code="bad_photo_ids")
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not all(p.isascii() and p.isdigit() for p in parts):
        raise BadRequest("photo_ids must be whole numbers separated by commas.", code="bad_photo_ids")
    return parse_photo_ids([int(p) for p in parts])


def parse_photo_ids(raw: object) -> list[int]:
    if not isinstance(raw, list) or not raw or not all(isinstance(i, int) and not isinstance(i, bool) for i in raw):
        raise BadRequest("photo_ids must be a non-empty list of photo ids.", code="bad_photo_ids")
    if len(raw) > MAX_PHOTOS_PER_DOWNLOAD:
        raise BadRequest(f"At most {MAX_PHOTOS_PER_DOWNLOAD} photos per download.", code="too_many_photos")
    return list(dict.fromkeys(raw))


@routes.post("/api/photos/download")
async def download_photos(request: web.Request) -> web.StreamResponse:
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        ids = parse_form_ids((await request.post()).get("photo_ids", ""))
    else:
        ids = parse_photo_ids((await json_body(request)).get("photo_ids"))
    db = request.app[DB]
    found = await db.photos_by_ids([i for i in ids if 0 < i <= MAX_SQLITE_INTEGER])
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound(f"There is no photo with id {missing[0]}.", code="not_found")
    photos = [found[i] for i in ids]
    albums = {p.album_id for p in photos}
    album = await db.get_album(albums.pop()) if len(albums) == 1 else None
    name = f"{album.name} ({len(photos)} photos)" if album else f"photoq ({len(photos)} photos)"
    return await stream_zip(request, photos, name)
