"""The SQLite backend's catalogue: settings, albums, photos and their outputs and history."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..models import (
    PRIORITY,
    Album,
    Attempt,
    Batch,
    JobKind,
    NewPhoto,
    Node,
    OutputFile,
    Photo,
    Stats,
    Status,
    output_version,
)
from . import batches, rows
from .connection import SQLiteConnection
from .store import RemovePaths, RemovePhotoFiles

# Live photos only: a photo in the trash (or in a trashed album) is gone for every reader but the trash's own.
PHOTO_SELECT = """
    SELECT p.*,
           (SELECT count(*) FROM job_attempts a WHERE a.photo_id = p.id) AS attempts,
           (SELECT max(started_at) FROM job_attempts a WHERE a.photo_id = p.id) AS last_attempt
    FROM (SELECT * FROM photos WHERE deleted_at IS NULL) AS p
"""

ALBUM_SELECT = """
    SELECT a.id, a.name, a.created_at, a.cover_photo_id,
           count(p.id) AS photo_count,
           EXISTS(SELECT 1 FROM jobs j JOIN photos jp ON jp.id = j.photo_id
                  WHERE jp.album_id = a.id AND j.status IN ('pending', 'processing')) AS processing
    FROM albums a LEFT JOIN photos p ON p.album_id = a.id AND p.deleted_at IS NULL
    WHERE a.deleted_at IS NULL
"""


class SQLiteCatalogue(SQLiteConnection):
    # -- settings ----------------------------------------------------------------------------------------------

    async def get_setting(self, key: str) -> str | None:
        row = await self._read_one("SELECT value FROM settings WHERE key = ?", (key,))
        return row["value"] if row else None

    async def set_setting(self, key: str, value: str) -> None:
        await self.writer.execute_write_fn(lambda conn: conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        ).close())

    # -- nodes -------------------------------------------------------------------------------------------------

    def event_bridge(self) -> None:
        return None  # one node per SQLite file: the in-process broadcaster is the whole story

    async def heartbeat_node(self, node: Node) -> None:
        await self.writer.execute_write_fn(lambda conn: conn.execute(
            """INSERT INTO nodes (id, host, port, role, workers, busy, capacity, started_at, last_seen)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(id) DO UPDATE SET busy = excluded.busy, capacity = excluded.capacity,
                   workers = excluded.workers, last_seen = excluded.last_seen""",
            (node.id, node.host, node.port, node.role, node.workers, node.busy, node.capacity, node.started_at,
             node.last_seen),
        ).close(), durable=False)  # a lost heartbeat is written again within seconds

    async def list_nodes(self) -> list[Node]:
        found = await self._read_all(
            "SELECT id, host, port, role, workers, busy, capacity, started_at, last_seen FROM nodes "
            "ORDER BY started_at, id")
        return [Node(*tuple(r)) for r in found]

    async def forget_node(self, node_id: str) -> None:
        await self.writer.execute_write_fn(
            lambda conn: conn.execute("DELETE FROM nodes WHERE id = ?", (node_id,)).close())

    async def forget_silent_nodes(self, silent_since: float) -> int:
        return await self.writer.execute_write_fn(
            lambda conn: conn.execute("DELETE FROM nodes WHERE last_seen < ?", (silent_since,)).rowcount,
            durable=False)

    # -- albums ------------------------------------------------------------------------------------------------

    async def create_album(self, name: str, now: float) -> Album:
        album_id = await self.writer.execute_write_fn(lambda conn: conn.execute(
            "INSERT INTO albums (name, created_at) VALUES (?, ?) RETURNING id", (name, now)
        ).fetchone()[0])
        return Album(id=album_id, name=name, created_at=now)

    async def list_albums(self) -> list[Album]:
        return [rows.album(r) for r in await self._read_all(ALBUM_SELECT + " GROUP BY a.id ORDER BY a.id")]

    async def get_album(self, album_id: int) -> Album | None:
        row = await self._read_one(ALBUM_SELECT + " AND a.id = ? GROUP BY a.id", (album_id,))
        return rows.album(row) if row else None

    async def album_cover_photo_ids(self) -> dict[int, int]:
        # The chosen cover while it is there with its thumbnails, else the first photo that has them.
        found = await self._read_all(
            """SELECT a.id AS album_id,
                      coalesce((SELECT c.id FROM photos c WHERE c.id = a.cover_photo_id AND c.album_id = a.id
                                AND c.deleted_at IS NULL AND c.thumbnail_status = 'complete'),
                               (SELECT min(p.id) FROM photos p WHERE p.album_id = a.id AND p.deleted_at IS NULL
                                AND p.thumbnail_status = 'complete')) AS photo_id
               FROM albums a WHERE a.deleted_at IS NULL"""
        )
        return {r["album_id"]: r["photo_id"] for r in found if r["photo_id"] is not None}

    async def delete_album(self, album_id: int, remove_files: RemovePhotoFiles) -> bool:
        return await self._delete_photos_where("album_id = ?", (album_id,), remove_files, album_id=album_id)

    async def delete_photo(self, photo_id: int, remove_files: RemovePhotoFiles) -> bool:
        return await self._delete_photos_where("id = ?", (photo_id,), remove_files)

    async def _delete_photos_where(
        self, where: str, params: Sequence, remove_files: RemovePhotoFiles, album_id: int | None = None
    ) -> bool:
        # Holding the lock past the commit keeps a concurrent upload of the same bytes from staging a file that is
        # about to be unlinked.
        async with self.writer.lock:
            async with self.writer.transaction_locked() as tx:
                doomed = await tx.fetchall(f"SELECT id, sha256, format FROM photos WHERE {where}", params)
                if album_id is not None:
                    found = await tx.fetchone("DELETE FROM albums WHERE id = ? RETURNING id", (album_id,)) is not None
                else:
                    await tx.execute(f"DELETE FROM photos WHERE {where}", params)
                    found = bool(doomed)
                orphans = []
                for sha256, fmt in {(r["sha256"], r["format"]) for r in doomed}:
                    if not await self._sha256_referenced(tx, sha256):
                        orphans.append((sha256, fmt))
            await remove_files([r["id"] for r in doomed], orphans)
        return found

    # -- ingest ------------------------------------------------------------------------------------------------

    async def stage_files(self, staged: Sequence[tuple[str, str]], now: float) -> list[int]:
        def stage(conn) -> list[int]:
            return [
                conn.execute(
                    "INSERT INTO staged_files (path, sha256, created_at) VALUES (?, ?, ?) RETURNING id",
                    (path, sha256, now),
                ).fetchone()[0]
                for path, sha256 in staged
            ]
        return await self.writer.execute_write_fn(stage)

    async def insert_photos(
        self, album_id: int, photos: Sequence[NewPhoto], staged_ids: Sequence[int], now: float, max_attempts: int,
        batch: str | None = None,
    ) -> list[tuple[int | None, int | None]]:
        def insert(conn) -> list[tuple[int | None, int | None]]:
            if not conn.execute("SELECT EXISTS(SELECT 1 FROM albums WHERE id = ? AND deleted_at IS NULL)",
                                (album_id,)).fetchone()[0]:
                raise LookupError(album_id)
            batches.join_batch(conn, album_id, now, batch)
            results: list[tuple[int | None, int | None]] = []
            for photo in photos:
                existing = conn.execute(
                    "SELECT id FROM photos WHERE album_id = ? AND sha256 = ? AND deleted_at IS NULL",
                    (album_id, photo.sha256)
                ).fetchone()
                if existing is not None:
                    results.append((None, existing[0]))
                    continue
                photo_id = conn.execute(
                    """INSERT INTO photos (album_id, filename, sha256, size_bytes, width, height, format, content_type,
                                           taken_at, exif, created_at, queued_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
                    (album_id, photo.filename, photo.sha256, photo.size_bytes, photo.width, photo.height, photo.format,
                     photo.content_type, photo.taken_at, json.dumps(photo.exif, ensure_ascii=False), now, now),
                ).fetchone()[0]
                conn.executemany(
                    """INSERT INTO jobs (photo_id, kind, priority, max_attempts, run_at, created_at, updated_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?)""",
                    [(photo_id, str(kind), PRIORITY[kind], max_attempts, now, now, now) for kind in JobKind],
                )
                results.append((photo_id, None))
            conn.executemany("DELETE FROM staged_files WHERE id = ?", [(i,) for i in staged_ids])
            return results
        return await self.writer.execute_write_fn(insert)

    async def unstage(self, staged_ids: Sequence[int] | None, remove_files: RemovePaths) -> None:
        await self._unstage(staged_ids, None, remove_files)

    async def unstage_older_than(self, before: float, remove_files: RemovePaths) -> int:
        return await self._unstage(None, before, remove_files)

    async def _unstage(self, staged_ids: Sequence[int] | None, before: float | None, remove_files: RemovePaths) -> int:
        async with self.writer.lock:
            async with self.writer.transaction_locked() as tx:
                if before is not None:
                    found = await tx.fetchall(
                        "DELETE FROM staged_files WHERE created_at < ? RETURNING path, sha256", (before,))
                elif staged_ids is None:
                    found = await tx.fetchall("DELETE FROM staged_files RETURNING path, sha256")
                else:
                    found = []
                    for staged_id in staged_ids:
                        found.extend(await tx.fetchall(
                            "DELETE FROM staged_files WHERE id = ? RETURNING path, sha256", (staged_id,)
                        ))
                unreferenced = []
                for path, sha256 in {(r["path"], r["sha256"]) for r in found}:
                    if not await self._sha256_referenced(tx, sha256):
                        unreferenced.append(path)
                await remove_files(unreferenced)  # before the commit: see Store.unstage
        return len(found)

    # -- reads -------------------------------------------------------------------------------------------------

    async def get_photo(self, photo_id: int) -> Photo | None:
        row = await self._read_one(PHOTO_SELECT + " WHERE p.id = ?", (photo_id,))
        return rows.photo(row) if row else None

    async def list_photos(self, album_id: int, status: Status | None, limit: int, after: int) -> list[Photo]:
        sql = PHOTO_SELECT + " WHERE p.album_id = ? AND p.id > ?"
        params: list = [album_id, after]
        if status is not None:
            sql += " AND p.processing_status = ?"
            params.append(str(status))
        sql += " ORDER BY p.id LIMIT ?"
        params.append(limit)
        return [rows.photo(r) for r in await self._read_all(sql, params)]

    async def album_photos_newest_first(self, album_id: int, before: int | None, limit: int) -> list[Photo]:
        found = await self._read_all(
            PHOTO_SELECT + " WHERE p.album_id = ? AND p.id < ? ORDER BY p.id DESC LIMIT ?",
            (album_id, before if before is not None else 2**63 - 1, limit),
        )
        return [rows.photo(r) for r in found]

    async def adjacent_photo_ids(self, album_id: int, photo_id: int) -> tuple[int | None, int | None]:
        newer = await self._read_scalar(
            "SELECT min(id) FROM photos WHERE album_id = ? AND id > ? AND deleted_at IS NULL", (album_id, photo_id))
        older = await self._read_scalar(
            "SELECT max(id) FROM photos WHERE album_id = ? AND id < ? AND deleted_at IS NULL", (album_id, photo_id))
        return newer, older

    async def photo_outputs(self, photo_id: int) -> dict[str, OutputFile]:
        found = await self._read_all(
            "SELECT name, width, height, size_bytes, format, spec, created_at, source_sha256 FROM outputs "
            "WHERE photo_id = ?",
            (photo_id,),
        )
        return {r["name"]: OutputFile(r["name"], r["width"], r["height"], r["size_bytes"], format=r["format"],
                                      spec=r["spec"], created_at=r["created_at"], source_sha256=r["source_sha256"])
                for r in found}

    async def output_versions(self, photo_ids: Sequence[int]) -> dict[int, dict[str, str]]:
        versions: dict[int, dict[str, str]] = {}
        for chunk in rows.chunks(list(dict.fromkeys(photo_ids))):
            found = await self._read_all(
                "SELECT o.photo_id, o.name, o.created_at, p.sha256 FROM outputs o JOIN photos p ON p.id = o.photo_id "
                f"WHERE o.photo_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for r in found:
                versions.setdefault(r["photo_id"], {})[r["name"]] = output_version(r["sha256"], r["created_at"])
        return versions

    async def photo_attempts(self, photo_id: int) -> list[Attempt]:
        found = await self._read_all(
            "SELECT job_id, kind, attempt, started_at, finished_at, outcome, error, retry_at "
            "FROM job_attempts WHERE photo_id = ? ORDER BY id",
            (photo_id,),
        )
        return [Attempt(**dict(r)) for r in found]

    async def photo_labels(self, photo_ids: Sequence[int]) -> dict[int, tuple[str, int, str]]:
        ids = list(dict.fromkeys(photo_ids))[:500]
        if not ids:
            return {}
        found = await self._read_all(
            "SELECT p.id, p.filename, p.album_id, a.name AS album_name "
            "FROM photos p JOIN albums a ON a.id = p.album_id "
            f"WHERE p.id IN ({','.join('?' * len(ids))})",
            ids,
        )
        return {r["id"]: (r["filename"], r["album_id"], r["album_name"]) for r in found}

    async def stats(self, album_id: int | None = None) -> Stats:
        if album_id is None:
            found = await self._read_all(
                "SELECT processing_status AS s, count(*) AS n FROM photos WHERE deleted_at IS NULL GROUP BY 1")
        else:
            found = await self._read_all(
                "SELECT processing_status AS s, count(*) AS n FROM photos WHERE album_id = ? AND deleted_at IS NULL "
                "GROUP BY 1", (album_id,)
            )
        return Stats(**{r["s"]: r["n"] for r in found})

    async def album_batches(self, album_id: int | None = None) -> list[Batch]:
        found = await self._read_all(batches.BATCHES_SELECT, (album_id, album_id))
        return [Batch(**dict(r)) for r in found]
