"""The SQLite backend's gallery reads: an album's photos in the gallery's orders (gallery_order.py), with cursors;
photos by ids; which bytes an album has."""

from __future__ import annotations

from collections.abc import Sequence

from ..gallery_order import Cursor, GalleryOrder
from ..models import Photo, Status
from . import rows
from .catalogue import PHOTO_SELECT
from .connection import SQLiteConnection

# (sort key, direction) per order. Date taken: the EXIF time as unix seconds (a time without an offset read as UTC),
# else the upload time.
ORDER_KEYS = {
    GalleryOrder.TAKEN: ("coalesce(unixepoch(p.taken_at), p.created_at)", "DESC"),
    GalleryOrder.UPLOADED: ("p.id", "DESC"),
    GalleryOrder.NAME: ("p.filename COLLATE NOCASE", "ASC"),
}


class SQLiteGallery(SQLiteConnection):
    async def album_photos_in_order(
        self, album_id: int, order: GalleryOrder, after: Cursor | None, limit: int, status: Status | None = None
    ) -> list[tuple[Photo, float | int | str]]:
        key, direction = ORDER_KEYS[order]
        cmp = "<" if direction == "DESC" else ">"
        sql = PHOTO_SELECT.replace("SELECT p.*,", f"SELECT p.*, {key} AS sort_key,", 1) + " WHERE p.album_id = ?"
        params: list = [album_id]
        if status is not None:
            sql += " AND p.processing_status = ?"
            params.append(str(status))
        if after is not None:
            sql += f" AND ({key} {cmp} ? OR ({key} = ? AND p.id {cmp} ?))"
            params += [after.key, after.key, after.id]
        sql += f" ORDER BY {key} {direction}, p.id {direction} LIMIT ?"
        params.append(limit)
        return [(rows.photo(r), r["sort_key"]) for r in await self._read_all(sql, params)]

    async def album_photo_ids_in_order(self, album_id: int, order: GalleryOrder) -> list[int]:
        key, direction = ORDER_KEYS[order]
        found = await self._read_all(
            f"SELECT p.id FROM photos p WHERE p.album_id = ? AND p.deleted_at IS NULL "
            f"ORDER BY {key} {direction}, p.id {direction}",
            (album_id,),
        )
        return [r["id"] for r in found]

    async def photos_by_ids(self, photo_ids: Sequence[int]) -> dict[int, Photo]:
        found: dict[int, Photo] = {}
        for chunk in rows.chunks(list(dict.fromkeys(photo_ids))):
            matched = await self._read_all(PHOTO_SELECT + f" WHERE p.id IN ({','.join('?' * len(chunk))})", chunk)
            found.update((r["id"], rows.photo(r)) for r in matched)
        return found

    async def album_photos_with_sha256(self, album_id: int, hashes: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in rows.chunks(list(dict.fromkeys(hashes))):
            matched = await self._read_all(
                "SELECT sha256, id FROM photos WHERE album_id = ? AND deleted_at IS NULL "
                f"AND sha256 IN ({','.join('?' * len(chunk))})",
                [album_id, *chunk],
            )
            found.update((r["sha256"], r["id"]) for r in matched)
        return found
