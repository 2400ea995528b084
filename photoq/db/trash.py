"""The SQLite backend's album management and trash: rename, cover, moving photos, and the trash.

A trashed album or photo keeps its rows (marked with deleted_at) and its files, and is gone for every other
reader; its jobs are deleted at once, as the contract says of a deletion, and made again on restore for the parts
that were not finished. Purging is the old delete (delete_album, delete_photo): rows, then the files no other row
references.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from ..models import PRIORITY, JobKind, Status
from .connection import SQLiteConnection

KIND_COLUMN = {JobKind.THUMBNAIL: "thumbnail_status", JobKind.VARIANT: "variant_status"}


def _restore_jobs(conn: sqlite3.Connection, photo_ids: Sequence[int], now: float, max_attempts: int) -> None:
    """Jobs again for the restored photos' unfinished parts; a failed part gets its dead letter back (retry works)."""
    for photo_id in photo_ids:
        row = conn.execute("SELECT thumbnail_status, variant_status, error FROM photos WHERE id = ?",
                           (photo_id,)).fetchone()
        for kind, column in KIND_COLUMN.items():
            status = row[column]
            if status == Status.COMPLETE:
                continue
            if status == Status.FAILED:
                conn.execute(
                    """INSERT OR IGNORE INTO jobs (photo_id, kind, priority, status, attempts, max_attempts, run_at,
                                                   last_error, created_at, updated_at)
                       VALUES (?, ?, ?, 'failed', ?, ?, ?, ?, ?, ?)""",
                    (photo_id, str(kind), PRIORITY[kind], max_attempts, max_attempts, now, row["error"], now, now))
                continue
            # pending, or processing when its job was taken away mid-run: from the start again
            conn.execute(f"UPDATE photos SET {column} = 'pending' WHERE id = ?", (photo_id,))
            conn.execute(
                """INSERT OR IGNORE INTO jobs (photo_id, kind, priority, max_attempts, run_at, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                (photo_id, str(kind), PRIORITY[kind], max_attempts, now, now, now))


class SQLiteTrash(SQLiteConnection):
    # -- albums ----------------------------------------------------------------------------------------------------

    async def rename_album(self, album_id: int, name: str) -> bool:
        return await self.writer.execute_write_fn(lambda conn: conn.execute(
            "UPDATE albums SET name = ? WHERE id = ? AND deleted_at IS NULL RETURNING id", (name, album_id)
        ).fetchone() is not None)

    async def set_album_cover(self, album_id: int, photo_id: int | None) -> bool:
        def choose(conn: sqlite3.Connection) -> bool:
            if photo_id is not None and conn.execute(
                "SELECT 1 FROM photos WHERE id = ? AND album_id = ? AND deleted_at IS NULL", (photo_id, album_id)
            ).fetchone() is None:
                return False
            return conn.execute("UPDATE albums SET cover_photo_id = ? WHERE id = ? AND deleted_at IS NULL RETURNING id",
                                (photo_id, album_id)).fetchone() is not None
        return await self.writer.execute_write_fn(choose)

    async def move_photos(self, photo_ids: Sequence[int], album_id: int) -> tuple[list[tuple[int, int]], list[int]]:
        def move(conn: sqlite3.Connection) -> tuple[list[tuple[int, int]], list[int]]:
            if conn.execute("SELECT 1 FROM albums WHERE id = ? AND deleted_at IS NULL", (album_id,)).fetchone() is None:
                raise LookupError(album_id)
            moved: list[tuple[int, int]] = []
            already: list[int] = []
            for photo_id in dict.fromkeys(photo_ids):
                row = conn.execute("SELECT album_id, sha256 FROM photos WHERE id = ? AND deleted_at IS NULL",
                                   (photo_id,)).fetchone()
                if row is None or row["album_id"] == album_id:
                    continue
                if conn.execute("SELECT 1 FROM photos WHERE album_id = ? AND sha256 = ? AND deleted_at IS NULL",
                                (album_id, row["sha256"])).fetchone() is not None:
                    already.append(photo_id)  # the album has these bytes: one copy per album
                    continue
                conn.execute("UPDATE photos SET album_id = ? WHERE id = ?", (album_id, photo_id))
                conn.execute("UPDATE albums SET cover_photo_id = NULL WHERE id = ? AND cover_photo_id = ?",
                             (row["album_id"], photo_id))
                moved.append((photo_id, row["album_id"]))
            return moved, already
        return await self.writer.execute_write_fn(move)

    # -- into the trash --------------------------------------------------------------------------------------------

    async def trash_album(self, album_id: int, now: float) -> bool:
        def trash(conn: sqlite3.Connection) -> bool:
            if conn.execute("UPDATE albums SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL RETURNING id",
                            (now, album_id)).fetchone() is None:
                return False
            conn.execute("DELETE FROM jobs WHERE photo_id IN (SELECT id FROM photos WHERE album_id = ? "
                         "AND deleted_at IS NULL)", (album_id,))
            conn.execute("UPDATE photos SET deleted_at = ?, trashed_with_album = 1 "
                         "WHERE album_id = ? AND deleted_at IS NULL", (now, album_id))
            return True
        return await self.writer.execute_write_fn(trash)

    async def trash_photos(self, photo_ids: Sequence[int], now: float) -> list[tuple[int, int]]:
        def trash(conn: sqlite3.Connection) -> list[tuple[int, int]]:
            done = []
            for photo_id in dict.fromkeys(photo_ids):
                row = conn.execute(
                    "UPDATE photos SET deleted_at = ?, trashed_with_album = 0 WHERE id = ? AND deleted_at IS NULL "
                    "RETURNING album_id", (now, photo_id)).fetchone()
                if row is not None:
                    conn.execute("DELETE FROM jobs WHERE photo_id = ?", (photo_id,))
                    done.append((photo_id, row["album_id"]))
            return done
        return await self.writer.execute_write_fn(trash)

    # -- out of it ------------------------------------------------------------------------------------------------

    async def restore_album(self, album_id: int, now: float, max_attempts: int) -> bool:
        def restore(conn: sqlite3.Connection) -> bool:
            if conn.execute("UPDATE albums SET deleted_at = NULL WHERE id = ? AND deleted_at IS NOT NULL RETURNING id",
                            (album_id,)).fetchone() is None:
                return False
            back = [r["id"] for r in conn.execute(
                "UPDATE photos SET deleted_at = NULL, trashed_with_album = 0 "
                "WHERE album_id = ? AND trashed_with_album = 1 RETURNING id", (album_id,)).fetchall()]
            _restore_jobs(conn, back, now, max_attempts)
            return True
        return await self.writer.execute_write_fn(restore)

    async def restore_photo(self, photo_id: int, now: float, max_attempts: int) -> tuple[str, int | None]:
        """("restored", album id), ("duplicate", the live photo with its bytes), ("album_trashed", album id) or
        ("gone", None)."""
        def restore(conn: sqlite3.Connection) -> tuple[str, int | None]:
            row = conn.execute(
                "SELECT p.album_id, p.sha256, a.deleted_at AS album_deleted FROM photos p JOIN albums a "
                "ON a.id = p.album_id WHERE p.id = ? AND p.deleted_at IS NOT NULL AND p.trashed_with_album = 0",
                (photo_id,)).fetchone()
            if row is None:
                return "gone", None
            if row["album_deleted"] is not None:
                return "album_trashed", row["album_id"]
            live = conn.execute("SELECT id FROM photos WHERE album_id = ? AND sha256 = ? AND deleted_at IS NULL",
                                (row["album_id"], row["sha256"])).fetchone()
            if live is not None:
                return "duplicate", live["id"]
            conn.execute("UPDATE photos SET deleted_at = NULL WHERE id = ?", (photo_id,))
            _restore_jobs(conn, [photo_id], now, max_attempts)
            return "restored", row["album_id"]
        return await self.writer.execute_write_fn(restore)

    # -- what is in it ------------------------------------------------------------------------------------------

    async def trashed_albums(self) -> list[dict]:
        found = await self._read_all(
            """SELECT a.id, a.name, a.created_at, a.deleted_at, count(p.id) AS photo_count,
                      min(CASE WHEN p.thumbnail_status = 'complete' THEN p.id END) AS cover_photo_id
               FROM albums a LEFT JOIN photos p ON p.album_id = a.id AND p.trashed_with_album = 1
               WHERE a.deleted_at IS NOT NULL GROUP BY a.id ORDER BY a.deleted_at DESC, a.id DESC""")
        return [dict(r) for r in found]

    async def trashed_photos(self, limit: int) -> list[dict]:
        """Photos put in the trash on their own, whose album is not in the trash, newest deletion first."""
        found = await self._read_all(
            """SELECT p.id, p.filename, p.album_id, a.name AS album_name, p.deleted_at, p.size_bytes,
                      p.thumbnail_status
               FROM photos p JOIN albums a ON a.id = p.album_id
               WHERE p.deleted_at IS NOT NULL AND p.trashed_with_album = 0 AND a.deleted_at IS NULL
               ORDER BY p.deleted_at DESC, p.id DESC LIMIT ?""", (limit,))
        return [dict(r) for r in found]

    async def trashed_photo_count(self) -> int:
        return int(await self._read_scalar(
            "SELECT count(*) FROM photos p JOIN albums a ON a.id = p.album_id "
            "WHERE p.deleted_at IS NOT NULL AND p.trashed_with_album = 0 AND a.deleted_at IS NULL") or 0)

    async def trash_older_than(self, before: float | None) -> tuple[list[int], list[int]]:
        """(album ids, photo ids) in the trash since before `before` (None: everything), to purge."""
        limit = float("inf") if before is None else before
        albums = await self._read_all("SELECT id FROM albums WHERE deleted_at IS NOT NULL AND deleted_at < ?",
                                      (limit,))
        photos = await self._read_all(
            "SELECT p.id FROM photos p JOIN albums a ON a.id = p.album_id WHERE p.deleted_at IS NOT NULL "
            "AND p.trashed_with_album = 0 AND p.deleted_at < ? AND NOT (a.deleted_at IS NOT NULL "
            "AND a.deleted_at < ?)", (limit, limit))
        return [r["id"] for r in albums], [r["id"] for r in photos]

    async def trashed_photo_album(self, photo_id: int) -> int | None:
        """The album of a photo in the trash on its own; None when there is no such photo."""
        return await self._read_scalar(
            "SELECT album_id FROM photos WHERE id = ? AND deleted_at IS NOT NULL AND trashed_with_album = 0",
            (photo_id,))

    async def album_in_trash(self, album_id: int) -> bool:
        return bool(await self._read_scalar(
            "SELECT EXISTS(SELECT 1 FROM albums WHERE id = ? AND deleted_at IS NOT NULL)", (album_id,)))

