"""The database: one writer and one reader connection, the schema and its migrations, and every SQL statement.

This is the only module that imports aiosqlite. Each public method is one named operation; a method that
writes runs in exactly one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from importlib import resources
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Sequence

import aiosqlite

from .gallery_order import Cursor, GalleryOrder
from .models import (
    PRIORITY,
    Album,
    Attempt,
    ClaimedJob,
    Job,
    JobKind,
    NewPhoto,
    NextJob,
    OutputFile,
    Photo,
    PhotoState,
    Stats,
    Status,
)

SCHEMA_VERSION_BASE = 1
# Numbered migrations: MIGRATIONS[0] takes a database from version 1 to 2, and so on. Never edit one that has
# shipped; add a new one and update schema.sql to match the result.
MIGRATIONS: tuple[str, ...] = (
    # 1 -> 2: the ThumbHash placeholder of a photo, written by its thumbnail job.
    "ALTER TABLE photos ADD COLUMN thumbhash TEXT",
    # 2 -> 3: outputs remember what they were rendered with, so `photoq reprocess` can tell a stale output from a
    # fresh one and files are found in the format they were written in; a job may render only some outputs.
    "ALTER TABLE outputs ADD COLUMN format TEXT; ALTER TABLE outputs ADD COLUMN spec TEXT; "
    "ALTER TABLE jobs ADD COLUMN outputs TEXT",
)

BUSY_TIMEOUT_MS = 10_000
KIND_COLUMN = {JobKind.THUMBNAIL: "thumbnail_status", JobKind.VARIANT: "variant_status"}
OTHER_KIND_COLUMN = {JobKind.THUMBNAIL: "variant_status", JobKind.VARIANT: "thumbnail_status"}
PHOTO_STATE_COLUMNS = "id, album_id, processing_status, thumbnail_status, variant_status, error, thumbhash"
JOB_COLUMNS = (
    "id, photo_id, kind, priority, status, attempts, max_attempts, run_at, lease_expires_at, last_error, created_at, "
    "outputs"
)
UNFINISHED = "('pending', 'processing')"
# Gallery orders: (sort key, direction). Date taken: the EXIF time as unix seconds (a time without offset read as
# UTC), else the upload time.
ORDER_KEYS = {
    GalleryOrder.TAKEN: ("coalesce(unixepoch(p.taken_at), p.created_at)", "DESC"),
    GalleryOrder.UPLOADED: ("p.id", "DESC"),
    GalleryOrder.NAME: ("p.filename COLLATE NOCASE", "ASC"),
}


def schema_sql() -> str:
    packaged = resources.files("photoq").joinpath("schema.sql")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "schema.sql").read_text(encoding="utf-8")


def _photo_state(row) -> PhotoState:
    return PhotoState(
        id=row["id"],
        album_id=row["album_id"],
        processing_status=Status(row["processing_status"]),
        thumbnail_status=Status(row["thumbnail_status"]),
        variant_status=Status(row["variant_status"]),
        error=row["error"],
        thumbhash=row["thumbhash"],
    )


def _job(row) -> Job:
    return Job(
        id=row["id"],
        photo_id=row["photo_id"],
        kind=JobKind(row["kind"]),
        priority=row["priority"],
        status=Status(row["status"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        run_at=row["run_at"],
        lease_expires_at=row["lease_expires_at"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        outputs=_output_names(row["outputs"]),
    )


def _output_names(raw: str | None) -> tuple[str, ...] | None:
    """jobs.outputs: a JSON array of output names, or NULL for every output of the job's kind."""
    return None if raw is None else tuple(json.loads(raw))


def _photo(row) -> Photo:
    return Photo(
        id=row["id"],
        album_id=row["album_id"],
        filename=row["filename"],
        sha256=row["sha256"],
        size_bytes=row["size_bytes"],
        width=row["width"],
        height=row["height"],
        format=row["format"],
        content_type=row["content_type"],
        taken_at=row["taken_at"],
        exif_json=row["exif"],
        processing_status=Status(row["processing_status"]),
        thumbnail_status=Status(row["thumbnail_status"]),
        variant_status=Status(row["variant_status"]),
        error=row["error"],
        created_at=row["created_at"],
        completed_at=row["completed_at"],
        attempts=row["attempts"],
        last_attempt=row["last_attempt"],
        thumbhash=row["thumbhash"],
    )


PHOTO_SELECT = """
    SELECT p.*,
           (SELECT count(*) FROM job_attempts a WHERE a.photo_id = p.id) AS attempts,
           (SELECT max(started_at) FROM job_attempts a WHERE a.photo_id = p.id) AS last_attempt
    FROM photos p
"""


class Database:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._connect()
        await self._migrate()
        self._reader = await self._connect()

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        await conn.execute("PRAGMA journal_mode = WAL")
        # FULL, not NORMAL: we answer 202 only after the commit, and with NORMAL a commit acknowledged in WAL mode
        # can roll back on a power cut. FULL costs one fsync per transaction, which photoq batches to a handful
        # per photo: noise next to the image work.
        await conn.execute("PRAGMA synchronous = FULL")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return conn

    async def _migrate(self) -> None:
        assert self._writer is not None
        version = await self._scalar(self._writer, "PRAGMA user_version")
        target = SCHEMA_VERSION_BASE + len(MIGRATIONS)
        if version > target:
            raise RuntimeError(
                f"database {self.path} has schema version {version}, newer than this photoq knows ({target})"
            )
        if version == 0:
            await self._writer.executescript(
                f"BEGIN IMMEDIATE; {schema_sql()}; PRAGMA user_version = {target}; COMMIT;"
            )
            return
        for number in range(version, target):
            sql = MIGRATIONS[number - SCHEMA_VERSION_BASE]
            await self._writer.executescript(f"BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {number + 1}; COMMIT;")

    @staticmethod
    async def _scalar(conn: aiosqlite.Connection, sql: str, params: Sequence = ()):
        # One hop to the connection's thread: a statement left open between hops would keep a read transaction
        # open, and another coroutine's read on the same connection would see a snapshot older than its own start.
        rows = await conn.execute_fetchall(sql, params)
        return rows[0][0] if rows else None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """The one way to write: a process-wide lock around BEGIN IMMEDIATE ... COMMIT."""
        async with self._write_lock:
            async with self._transaction_unlocked() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def _transaction_unlocked(self) -> AsyncIterator[aiosqlite.Connection]:
        conn = self._writer
        assert conn is not None, "database is not open"
        await conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        else:
            await conn.execute("COMMIT")

    async def _read_all(self, sql: str, params: Sequence = ()) -> list[sqlite3.Row]:
        assert self._reader is not None, "database is not open"
        return list(await self._reader.execute_fetchall(sql, params))  # one hop, see _scalar

    async def _read_one(self, sql: str, params: Sequence = ()) -> sqlite3.Row | None:
        rows = await self._read_all(sql, params)
        return rows[0] if rows else None

    # -- settings ----------------------------------------------------------------------------------------------

    async def get_setting(self, key: str) -> str | None:
        row = await self._read_one("SELECT value FROM settings WHERE key = ?", (key,))
        return row["value"] if row else None

    async def set_setting(self, key: str, value: str) -> None:
        async with self.transaction() as tx:
            await tx.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- albums ------------------------------------------------------------------------------------------------

    async def create_album(self, name: str, now: float) -> Album:
        async with self.transaction() as tx:
            async with tx.execute(
                "INSERT INTO albums (name, created_at) VALUES (?, ?) RETURNING id", (name, now)
            ) as cur:
                album_id = (await cur.fetchone())[0]
        return Album(id=album_id, name=name, created_at=now)

    ALBUM_SELECT = """
        SELECT a.id, a.name, a.created_at,
               count(p.id) AS photo_count,
               EXISTS(SELECT 1 FROM jobs j JOIN photos jp ON jp.id = j.photo_id
                      WHERE jp.album_id = a.id AND j.status IN ('pending', 'processing')) AS processing
        FROM albums a LEFT JOIN photos p ON p.album_id = a.id
    """

    async def list_albums(self) -> list[Album]:
        rows = await self._read_all(self.ALBUM_SELECT + " GROUP BY a.id ORDER BY a.id")
        return [self._album(r) for r in rows]

    async def get_album(self, album_id: int) -> Album | None:
        row = await self._read_one(self.ALBUM_SELECT + " WHERE a.id = ? GROUP BY a.id", (album_id,))
        return self._album(row) if row else None

    @staticmethod
    def _album(row) -> Album:
        return Album(
            id=row["id"],
            name=row["name"],
            created_at=row["created_at"],
            photo_count=row["photo_count"],
            processing=bool(row["processing"]),
        )

    async def album_cover_photo_ids(self) -> dict[int, int]:
        """album id -> the first photo whose thumbnails exist."""
        rows = await self._read_all(
            "SELECT album_id, min(id) AS photo_id FROM photos WHERE thumbnail_status = 'complete' GROUP BY album_id"
        )
        return {r["album_id"]: r["photo_id"] for r in rows}

    async def delete_album(
        self, album_id: int, remove_files: Callable[[list[int], list[tuple[str, str]]], Awaitable[None]]
    ) -> bool:
        """Delete an album, its photos and jobs; then, still holding the write lock, remove their files.

        `remove_files(photo_ids, orphaned_originals)` gets the deleted photo ids and the (sha256, format) of originals
        that no photo references any more. Holding the lock keeps a concurrent upload of the same bytes from
        staging a file that is about to be unlinked.
        """
        return await self._delete_photos_where("album_id = ?", (album_id,), remove_files, album_id=album_id)

    async def delete_photo(
        self, photo_id: int, remove_files: Callable[[list[int], list[tuple[str, str]]], Awaitable[None]]
    ) -> bool:
        return await self._delete_photos_where("id = ?", (photo_id,), remove_files)

    async def _delete_photos_where(self, where: str, params: Sequence, remove_files, album_id: int | None = None) -> bool:
        async with self._write_lock:
            async with self._transaction_unlocked() as tx:
                async with tx.execute(f"SELECT id, sha256, format FROM photos WHERE {where}", params) as cur:
                    doomed = list(await cur.fetchall())
                if album_id is not None:
                    async with tx.execute("DELETE FROM albums WHERE id = ? RETURNING id", (album_id,)) as cur:
                        found = await cur.fetchone() is not None
                else:
                    await tx.execute(f"DELETE FROM photos WHERE {where}", params)
                    found = bool(doomed)
                orphans = []
                for sha256, fmt in {(r["sha256"], r["format"]) for r in doomed}:
                    if not await self._sha256_referenced(tx, sha256):
                        orphans.append((sha256, fmt))
            await remove_files([r["id"] for r in doomed], orphans)
        return found

    # -- photos ------------------------------------------------------------------------------------------------

    async def stage_files(self, staged: Sequence[tuple[str, str]], now: float) -> list[int]:
        """Record (path, sha256) of originals about to be renamed into the store, before the rename."""
        ids = []
        async with self.transaction() as tx:
            for path, sha256 in staged:
                async with tx.execute(
                    "INSERT INTO staged_files (path, sha256, created_at) VALUES (?, ?, ?) RETURNING id",
                    (path, sha256, now),
                ) as cur:
                    ids.append((await cur.fetchone())[0])
        return ids

    async def insert_photos(
        self, album_id: int, photos: Sequence[NewPhoto], staged_ids: Sequence[int], now: float, max_attempts: int
    ) -> list[tuple[int | None, int | None]]:
        """Insert photos and their two jobs in one transaction; the staged rows go in the same commit.

        Returns, per photo, (new photo id, None) or (None, id of the photo in this album with the same bytes).
        Raises LookupError when the album no longer exists.
        """
        results: list[tuple[int | None, int | None]] = []
        async with self.transaction() as tx:
            if not await self._scalar(tx, "SELECT EXISTS(SELECT 1 FROM albums WHERE id = ?)", (album_id,)):
                raise LookupError(album_id)
            for photo in photos:
                existing = await self._scalar(
                    tx, "SELECT id FROM photos WHERE album_id = ? AND sha256 = ?", (album_id, photo.sha256)
                )
                if existing is not None:
                    results.append((None, existing))
                    continue
                async with tx.execute(
                    """INSERT INTO photos (album_id, filename, sha256, size_bytes, width, height, format, content_type,
                                           taken_at, exif, created_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
                    (album_id, photo.filename, photo.sha256, photo.size_bytes, photo.width, photo.height, photo.format,
                     photo.content_type, photo.taken_at, json.dumps(photo.exif, ensure_ascii=False), now),
                ) as cur:
                    photo_id = (await cur.fetchone())[0]
                await tx.executemany(
                    """INSERT INTO jobs (photo_id, kind, priority, max_attempts, run_at, created_at, updated_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?)""",
                    [(photo_id, str(kind), PRIORITY[kind], max_attempts, now, now, now) for kind in JobKind],
                )
                results.append((photo_id, None))
            await tx.executemany("DELETE FROM staged_files WHERE id = ?", [(i,) for i in staged_ids])
        return results

    async def unstage(
        self, staged_ids: Sequence[int] | None, remove_files: Callable[[list[str]], Awaitable[None]]
    ) -> None:
        """Forget staged rows (all of them when `staged_ids` is None, as at start-up) and, holding the write lock,
        remove their files unless a photo or another upload in flight still references the same bytes."""
        async with self._write_lock:
            async with self._transaction_unlocked() as tx:
                if staged_ids is None:
                    async with tx.execute("DELETE FROM staged_files RETURNING path, sha256") as cur:
                        rows = list(await cur.fetchall())
                else:
                    rows = []
                    for staged_id in staged_ids:
                        async with tx.execute(
                            "DELETE FROM staged_files WHERE id = ? RETURNING path, sha256", (staged_id,)
                        ) as cur:
                            rows.extend(await cur.fetchall())
                unreferenced = []
                for path, sha256 in {(r["path"], r["sha256"]) for r in rows}:
                    if not await self._sha256_referenced(tx, sha256):
                        unreferenced.append(path)
            await remove_files(unreferenced)

    async def _sha256_referenced(self, tx, sha256: str) -> bool:
        return bool(
            await self._scalar(
                tx,
                "SELECT EXISTS(SELECT 1 FROM photos WHERE sha256 = ?) OR "
                "EXISTS(SELECT 1 FROM staged_files WHERE sha256 = ?)",
                (sha256, sha256),
            )
        )

    async def get_photo(self, photo_id: int) -> Photo | None:
        row = await self._read_one(PHOTO_SELECT + " WHERE p.id = ?", (photo_id,))
        return _photo(row) if row else None

    async def list_photos(self, album_id: int, status: Status | None, limit: int, after: int) -> list[Photo]:
        sql = PHOTO_SELECT + " WHERE p.album_id = ? AND p.id > ?"
        params: list = [album_id, after]
        if status is not None:
            sql += " AND p.processing_status = ?"
            params.append(str(status))
        sql += " ORDER BY p.id LIMIT ?"
        params.append(limit)
        return [_photo(r) for r in await self._read_all(sql, params)]

    async def photo_outputs(self, photo_id: int) -> dict[str, OutputFile]:
        rows = await self._read_all(
            "SELECT name, width, height, size_bytes, format, spec, created_at FROM outputs WHERE photo_id = ?",
            (photo_id,),
        )
        return {r["name"]: OutputFile(r["name"], r["width"], r["height"], r["size_bytes"], format=r["format"],
                                      spec=r["spec"], created_at=r["created_at"]) for r in rows}

    async def photo_attempts(self, photo_id: int) -> list[Attempt]:
        rows = await self._read_all(
            "SELECT job_id, kind, attempt, started_at, finished_at, outcome, error, retry_at "
            "FROM job_attempts WHERE photo_id = ? ORDER BY id",
            (photo_id,),
        )
        return [Attempt(**dict(r)) for r in rows]

    async def stats(self, album_id: int | None = None) -> Stats:
        if album_id is None:
            rows = await self._read_all("SELECT processing_status AS s, count(*) AS n FROM photos GROUP BY 1")
        else:
            rows = await self._read_all(
                "SELECT processing_status AS s, count(*) AS n FROM photos WHERE album_id = ? GROUP BY 1", (album_id,)
            )
        return Stats(**{r["s"]: r["n"] for r in rows})

    # -- eta queries -------------------------------------------------------------------------------------------

    async def next_runnable_job(self, now: float) -> NextJob | None:
        """The job the next claim would take, with its photo's size (what the memory budget needs to know)."""
        row = await self._read_one(
            """SELECT j.id, j.kind, p.width, p.height, p.format FROM jobs j INDEXED BY jobs_runnable
               JOIN photos p ON p.id = j.photo_id
               WHERE j.status = 'pending' AND j.run_at <= ? ORDER BY j.priority, j.run_at, j.id LIMIT 1""",
            (now,),
        )
        return None if row is None else NextJob(row["id"], JobKind(row["kind"]), row["width"], row["height"],
                                                row["format"])

    async def unfinished_jobs_by_kind(self) -> dict[str, int]:
        rows = await self._read_all(f"SELECT kind, count(*) AS n FROM jobs WHERE status IN {UNFINISHED} GROUP BY kind")
        return {r["kind"]: r["n"] for r in rows}

    async def jobs_until_album_done(self, album_id: int) -> dict[str, int]:
        """By kind, the jobs that finish before the album's last one can: every running job and every pending one up
        to the album's last in claim order (priority, run_at, id); only its own running jobs when none is pending."""
        last = await self._read_one(
            """SELECT j.priority, j.run_at, j.id FROM jobs j JOIN photos p ON p.id = j.photo_id
               WHERE p.album_id = ? AND j.status = 'pending'
               ORDER BY j.priority DESC, j.run_at DESC, j.id DESC LIMIT 1""",
            (album_id,),
        )
        if last is None:
            rows = await self._read_all(
                """SELECT j.kind, count(*) AS n FROM jobs j JOIN photos p ON p.id = j.photo_id
                   WHERE p.album_id = ? AND j.status = 'processing' GROUP BY j.kind""",
                (album_id,),
            )
        else:
            rows = await self._read_all(
                """SELECT kind, count(*) AS n FROM jobs
                   WHERE status = 'processing'
                      OR (status = 'pending' AND (priority, run_at, id) <= (?, ?, ?))
                   GROUP BY kind""",
                (last["priority"], last["run_at"], last["id"]),
            )
        return {r["kind"]: r["n"] for r in rows}

    # -- jobs --------------------------------------------------------------------------------------------------

    async def unfinished_job_count(self) -> int:
        return await self._scalar(self._reader, f"SELECT count(*) FROM jobs WHERE status IN {UNFINISHED}")

    async def album_has_unfinished_jobs(self, album_id: int) -> bool:
        return bool(
            await self._scalar(
                self._reader,
                f"""SELECT EXISTS(SELECT 1 FROM jobs j JOIN photos p ON p.id = j.photo_id
                                  WHERE p.album_id = ? AND j.status IN {UNFINISHED})""",
                (album_id,),
            )
        )

    async def next_run_at(self) -> float | None:
        return await self._scalar(self._reader, "SELECT min(run_at) FROM jobs WHERE status = 'pending'")

    async def _bookkeeping(self, fn: Callable, *args):
        """Run `fn(sqlite3_connection, *args)` as one transaction in a single hop to the writer's thread.

        For the workers' own records (claims, leases, results), which run several times per photo: every hop to
        aiosqlite's thread costs more than the statements. They commit with synchronous = NORMAL: a power cut may
        undo the last few of them, which only makes a job run again (its outputs are already fsynced), while
        anything a client was told about (uploads, albums, retries) keeps committing with FULL.
        """
        async with self._write_lock:
            return await self._writer._execute(_bookkeeping_transaction, self._writer._conn, fn, args)

    async def claim_jobs(self, now: float, lease_until: float, limit: int) -> tuple[list[ClaimedJob], list[PhotoState]]:
        """Lease up to `limit` runnable jobs in priority order, in one transaction."""
        return await self._bookkeeping(_claim_jobs, now, lease_until, limit)

    async def claim_job(self, job_id: int, now: float, lease_until: float) -> tuple[list[ClaimedJob], list[PhotoState]]:
        """Lease this job if it is still runnable (nothing when it was deleted or claimed meanwhile)."""
        return await self._bookkeeping(_claim_jobs, now, lease_until, 1, job_id)

    async def renew_leases(self, leases: Sequence[tuple[int, int]], lease_until: float) -> None:
        """Extend the lease of each (job id, attempt) still held."""
        await self._bookkeeping(_renew_leases, leases, lease_until)

    async def complete_job(self, job: Job, outputs: Sequence[OutputFile], now: float) -> PhotoState | None:
        """Mark a leased job done and record its outputs. None when the lease was lost or the photo deleted."""
        return await self._bookkeeping(_complete_job, job, outputs, now)

    async def fail_job(self, job: Job, error: str, retry_at: float | None, now: float) -> PhotoState | None:
        """A leased job's attempt failed: back to pending until `retry_at`, or dead-lettered when retry_at is None."""
        return await self._bookkeeping(_fail_job, job, error, retry_at, now)

    async def release_job(self, job: Job, now: float) -> PhotoState | None:
        """Give back a job interrupted by shutdown: runnable at once, its attempt refunded."""
        return await self._bookkeeping(_release_job, job, now)

    async def reclaim_orphans(self, now: float) -> int:
        """At start-up every job still marked processing belongs to a run that died: make it runnable now.

        The interrupted attempt is refunded: a crash of the whole service is not the photo's fault.
        """
        async with self.transaction() as tx:
            async with tx.execute(
                """UPDATE jobs SET status = 'pending', lease_expires_at = NULL, run_at = ?, updated_at = ?,
                       attempts = max(attempts - 1, 0)
                   WHERE status = 'processing' RETURNING id""",
                (now, now),
            ) as cur:
                count = len(await cur.fetchall())
            await tx.execute(
                "UPDATE job_attempts SET finished_at = ?, outcome = 'interrupted' WHERE outcome IS NULL", (now,)
            )
            for column in KIND_COLUMN.values():
                await tx.execute(f"UPDATE photos SET {column} = 'pending' WHERE {column} = 'processing'")
        return count

    async def expired_leases(self, now: float) -> list[Job]:
        rows = await self._read_all(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'processing' AND lease_expires_at < ?", (now,)
        )
        return [_job(r) for r in rows]

    async def retry_photo(self, photo_id: int, now: float, max_attempts: int) -> PhotoState | None:
        """Queue again every failed part of a photo with fresh attempts. None when nothing of it has failed."""
        async with self.transaction() as tx:
            async with tx.execute(
                "SELECT thumbnail_status, variant_status FROM photos WHERE id = ?", (photo_id,)
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                return None
            failed_kinds = [k for k, col in KIND_COLUMN.items() if row[col] == Status.FAILED]
            if not failed_kinds:
                return None
            await self._requeue(tx, [(photo_id, k) for k in failed_kinds], now, max_attempts)
            async with tx.execute(
                f"""UPDATE photos SET
                        thumbnail_status = CASE WHEN thumbnail_status = 'failed' THEN 'pending' ELSE thumbnail_status END,
                        variant_status = CASE WHEN variant_status = 'failed' THEN 'pending' ELSE variant_status END,
                        error = NULL
                    WHERE id = ? RETURNING {PHOTO_STATE_COLUMNS}""",
                (photo_id,),
            ) as cur:
                return _photo_state(await cur.fetchone())

    async def retry_all_failed(self, now: float, max_attempts: int) -> tuple[int, list[PhotoState]]:
        async with self.transaction() as tx:
            async with tx.execute(
                "SELECT id, thumbnail_status, variant_status FROM photos WHERE processing_status = 'failed'"
            ) as cur:
                rows = list(await cur.fetchall())
            parts = [(r["id"], k) for r in rows for k, col in KIND_COLUMN.items() if r[col] == Status.FAILED]
            await self._requeue(tx, parts, now, max_attempts)
            async with tx.execute(
                f"""UPDATE photos SET
                        thumbnail_status = CASE WHEN thumbnail_status = 'failed' THEN 'pending' ELSE thumbnail_status END,
                        variant_status = CASE WHEN variant_status = 'failed' THEN 'pending' ELSE variant_status END,
                        error = NULL
                    WHERE processing_status = 'failed' RETURNING {PHOTO_STATE_COLUMNS}"""
            ) as cur:
                states = [_photo_state(r) for r in await cur.fetchall()]
        return len(parts), states

    @staticmethod
    async def _requeue(tx, parts: Sequence[tuple[int, JobKind]], now: float, max_attempts: int) -> None:
        # An upsert: the job row may have been cleared from the dead letter while its photo stayed failed.
        await tx.executemany(
            """INSERT INTO jobs (photo_id, kind, priority, max_attempts, run_at, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(photo_id, kind) DO UPDATE SET status = 'pending', attempts = 0,
                   max_attempts = excluded.max_attempts, run_at = excluded.run_at, lease_expires_at = NULL,
                   last_error = NULL, updated_at = excluded.updated_at""",
            [(photo_id, str(kind), PRIORITY[kind], max_attempts, now, now, now) for photo_id, kind in parts],
        )

    async def clear_failed_jobs(self) -> int:
        async with self.transaction() as tx:
            async with tx.execute("DELETE FROM jobs WHERE status = 'failed' RETURNING id") as cur:
                return len(await cur.fetchall())

    async def job_counts(self) -> dict[str, int]:
        rows = await self._read_all("SELECT status, count(*) AS n FROM jobs GROUP BY status")
        counts = {str(s): 0 for s in Status}
        counts.update({r["status"]: r["n"] for r in rows})
        return counts

    async def oldest_unfinished_job_created_at(self) -> float | None:
        return await self._scalar(self._reader, f"SELECT min(created_at) FROM jobs WHERE status IN {UNFINISHED}")

    async def list_jobs(self, status: Status | None, limit: int) -> list[Job]:
        if status is None:
            rows = await self._read_all(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE status != 'complete' ORDER BY "
                "CASE status WHEN 'processing' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END, priority, run_at, id LIMIT ?",
                (limit,),
            )
        else:
            rows = await self._read_all(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE status = ? ORDER BY priority, run_at, id LIMIT ?",
                (str(status), limit),
            )
        return [_job(r) for r in rows]

    # -- web UI queries ----------------------------------------------------------------------------------------

    async def album_photos_newest_first(self, album_id: int, before: int | None, limit: int) -> list[Photo]:
        """A page of an album's photos, newest first, below the id `before` (None: from the newest)."""
        rows = await self._read_all(
            PHOTO_SELECT + " WHERE p.album_id = ? AND p.id < ? ORDER BY p.id DESC LIMIT ?",
            (album_id, before if before is not None else 2**63 - 1, limit),
        )
        return [_photo(r) for r in rows]

    async def adjacent_photo_ids(self, album_id: int, photo_id: int) -> tuple[int | None, int | None]:
        """(the next newer, the next older) photo of the same album."""
        newer = await self._scalar(
            self._reader, "SELECT min(id) FROM photos WHERE album_id = ? AND id > ?", (album_id, photo_id)
        )
        older = await self._scalar(
            self._reader, "SELECT max(id) FROM photos WHERE album_id = ? AND id < ?", (album_id, photo_id)
        )
        return newer, older

    # -- gallery order (gallery_order.py says what the orders mean) ---------------------------------------------

    async def album_photos_in_order(
        self, album_id: int, order: GalleryOrder, after: Cursor | None, limit: int, status: Status | None = None
    ) -> list[tuple[Photo, float | int | str]]:
        """A page of an album's photos in a gallery order, after a cursor; each with its sort key."""
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
        return [(_photo(r), r["sort_key"]) for r in await self._read_all(sql, params)]

    async def album_photo_ids_in_order(self, album_id: int, order: GalleryOrder) -> list[int]:
        key, direction = ORDER_KEYS[order]
        rows = await self._read_all(
            f"SELECT p.id FROM photos p WHERE p.album_id = ? ORDER BY {key} {direction}, p.id {direction}", (album_id,)
        )
        return [r["id"] for r in rows]

    async def album_photos_with_sha256(self, album_id: int, hashes: Sequence[str]) -> dict[str, int]:
        """sha256 -> photo id, for the given hashes the album has."""
        found: dict[str, int] = {}
        for chunk in _chunks(list(dict.fromkeys(hashes))):
            rows = await self._read_all(
                f"SELECT sha256, id FROM photos WHERE album_id = ? AND sha256 IN ({','.join('?' * len(chunk))})",
                [album_id, *chunk],
            )
            found.update((r["sha256"], r["id"]) for r in rows)
        return found

    async def photos_by_ids(self, photo_ids: Sequence[int]) -> dict[int, Photo]:
        found: dict[int, Photo] = {}
        for chunk in _chunks(list(dict.fromkeys(photo_ids))):
            rows = await self._read_all(PHOTO_SELECT + f" WHERE p.id IN ({','.join('?' * len(chunk))})", chunk)
            found.update((r["id"], _photo(r)) for r in rows)
        return found

    async def output_versions(self, photo_ids: Sequence[int]) -> dict[int, dict[str, float]]:
        """photo id -> {output name: when it was written}, for file URLs that change when an output is rendered
        again."""
        ids = list(dict.fromkeys(photo_ids))
        versions: dict[int, dict[str, float]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = await self._read_all(
                f"SELECT photo_id, name, created_at FROM outputs WHERE photo_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for r in rows:
                versions.setdefault(r["photo_id"], {})[r["name"]] = r["created_at"]
        return versions

    async def photo_labels(self, photo_ids: Sequence[int]) -> dict[int, tuple[str, int, str]]:
        """photo id -> (filename, album id, album name), for lists of jobs."""
        ids = list(dict.fromkeys(photo_ids))[:500]
        if not ids:
            return {}
        rows = await self._read_all(
            "SELECT p.id, p.filename, p.album_id, a.name AS album_name FROM photos p JOIN albums a ON a.id = p.album_id "
            f"WHERE p.id IN ({','.join('?' * len(ids))})",
            ids,
        )
        return {r["id"]: (r["filename"], r["album_id"], r["album_name"]) for r in rows}

    # -- pruning -----------------------------------------------------------------------------------------------

    async def prune_finished_jobs(self, older_than: float) -> int:
        """Delete complete jobs last updated before `older_than`; their photos, outputs and job_attempts stay."""
        async with self.transaction() as tx:
            async with tx.execute(
                "DELETE FROM jobs WHERE status = 'complete' AND updated_at < ? RETURNING id", (older_than,)
            ) as cur:
                return len(await cur.fetchall())

    # -- reprocess queries -------------------------------------------------------------------------------------
    # `photoq reprocess` (and doctor's repair) queue single outputs of a photo: the kind's job gets their names in
    # jobs.outputs and renders only those, so the photo keeps its other outputs. Never a second job for a photo's
    # kind: an unfinished one takes the names on (see _rerun_for_outputs_added_meanwhile).

    async def reprocess_photos_page(self, after_id: int, limit: int, album_id: int | None) -> list[dict]:
        """A page of photos by id: id, album_id, width, height, both part statuses and their output rows as
        {name: {width, height, format, spec}}."""
        rows = await self._read_all(
            """SELECT p.id, p.album_id, p.width, p.height, p.thumbnail_status, p.variant_status,
                      (SELECT json_group_object(o.name, json_object('width', o.width, 'height', o.height,
                                                                    'format', o.format, 'spec', o.spec))
                       FROM outputs o WHERE o.photo_id = p.id) AS outputs
               FROM photos p WHERE p.id > ? AND (? IS NULL OR p.album_id = ?) ORDER BY p.id LIMIT ?""",
            (after_id, album_id, album_id, limit),
        )
        return [{**dict(r), "outputs": json.loads(r["outputs"])} for r in rows]

    async def queue_outputs(
        self, parts: Sequence[tuple[int, JobKind, Sequence[str]]], now: float, max_attempts: int,
        dry_run: bool = False,
    ) -> tuple[list[tuple[str, list[str]]], list[PhotoState]]:
        """For each (photo id, kind, output names), in order, the outcome of asking for those outputs and the names
        that added to what was queued (see _queue_outputs_of_part); and the states of the photos whose status
        changed. With `dry_run` the same decisions are made and rolled back."""
        outcomes: list[tuple[str, list[str]]] = []
        states: list[PhotoState] = []
        try:
            async with self.transaction() as tx:
                for photo_id, kind, names in parts:
                    outcome, added, state = await self._queue_outputs_of_part(
                        tx, photo_id, kind, names, now, max_attempts)
                    outcomes.append((outcome, added))
                    if state is not None:
                        states.append(state)
                if dry_run:
                    raise _RollBack()
        except _RollBack:
            return outcomes, []
        return outcomes, states

    async def _queue_outputs_of_part(
        self, tx, photo_id: int, kind: JobKind, names: Sequence[str], now: float, max_attempts: int,
        requeue_failed: bool = False,
    ) -> tuple[str, list[str], PhotoState | None]:
        """Have the photo's `kind` job render `names`. Outcomes: "queued" (its job now renders them: a finished job
        queued again for just these, or an unfinished one given more names), "already" (its unfinished job renders
        them anyway), "failed" (dead-lettered: left for retry, unless `requeue_failed`), "gone" (no such photo).
        Also the names that were not asked for already, and the photo's new state when its status changed."""
        async with tx.execute(
            "SELECT id, status, outputs FROM jobs WHERE photo_id = ? AND kind = ?", (photo_id, str(kind))
        ) as cur:
            job = await cur.fetchone()
        current = _output_names(job["outputs"]) if job is not None else None
        if job is not None and job["status"] in (Status.PENDING, Status.PROCESSING):
            if current is None or set(names) <= set(current):
                return "already", [], None
            await tx.execute("UPDATE jobs SET outputs = ?, updated_at = ? WHERE id = ?",
                             (json.dumps(sorted({*current, *names})), now, job["id"]))
            return "queued", sorted(set(names) - set(current)), None
        if job is not None and job["status"] == Status.FAILED:
            if not requeue_failed:
                return "failed", [], None
            wanted = None if current is None else sorted({*current, *names})
        else:
            wanted = sorted(set(names))
        async with tx.execute(
            f"UPDATE photos SET {KIND_COLUMN[kind]} = 'pending', completed_at = NULL WHERE id = ? "
            f"RETURNING {PHOTO_STATE_COLUMNS}", (photo_id,)
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return "gone", [], None
        await tx.execute(
            """INSERT INTO jobs (photo_id, kind, priority, max_attempts, run_at, created_at, updated_at, outputs)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(photo_id, kind) DO UPDATE SET status = 'pending', attempts = 0,
                   max_attempts = excluded.max_attempts, run_at = excluded.run_at, lease_expires_at = NULL,
                   last_error = NULL, updated_at = excluded.updated_at, outputs = excluded.outputs""",
            (photo_id, str(kind), PRIORITY[kind], max_attempts, now, now, now,
             None if wanted is None else json.dumps(wanted)),
        )
        return "queued", sorted(set(names)), _photo_state(row)

    # -- doctor queries ----------------------------------------------------------------------------------------
    # `photoq doctor` runs beside a live server: it reads in pages, and every write re-checks what it acts on inside
    # one BEGIN IMMEDIATE, which also holds off another process's writers (a server staging the same bytes) until
    # the files are gone.

    async def doctor_photos_page(self, after_id: int, limit: int) -> list[dict]:
        """A page of photos by id: id, sha256, format, both part statuses and their output rows as {name: the format
        the file was written in (None when recorded before schema version 3)}."""
        rows = await self._read_all(
            """SELECT p.id, p.sha256, p.format, p.thumbnail_status, p.variant_status,
                      (SELECT json_group_object(o.name, o.format) FROM outputs o WHERE o.photo_id = p.id) AS outputs
               FROM photos p WHERE p.id > ? ORDER BY p.id LIMIT ?""",
            (after_id, limit),
        )
        return [{**dict(r), "outputs": json.loads(r["outputs"])} for r in rows]

    async def doctor_original_references(
        self, relpaths: Sequence[str], shas: Sequence[str]
    ) -> tuple[set[tuple[str, str]], set[str], set[str]]:
        """For the files of one originals folder: ((sha256, format) of photos with those hashes, staged paths among
        `relpaths`, staged sha256s among `shas`)."""
        photos: set[tuple[str, str]] = set()
        staged_paths: set[str] = set()
        staged_shas: set[str] = set()
        for chunk in _chunks(list(shas)):
            marks = ",".join("?" * len(chunk))
            rows = await self._read_all(f"SELECT DISTINCT sha256, format FROM photos WHERE sha256 IN ({marks})", chunk)
            photos.update((r["sha256"], r["format"]) for r in rows)
            rows = await self._read_all(f"SELECT DISTINCT sha256 FROM staged_files WHERE sha256 IN ({marks})", chunk)
            staged_shas.update(r["sha256"] for r in rows)
        for chunk in _chunks(list(relpaths)):
            rows = await self._read_all(
                f"SELECT DISTINCT path FROM staged_files WHERE path IN ({','.join('?' * len(chunk))})", chunk
            )
            staged_paths.update(r["path"] for r in rows)
        return photos, staged_paths, staged_shas

    async def doctor_existing_photo_ids(self, photo_ids: Sequence[int]) -> set[int]:
        found: set[int] = set()
        for chunk in _chunks(list(photo_ids)):
            rows = await self._read_all(f"SELECT id FROM photos WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            found.update(r["id"] for r in rows)
        return found

    async def doctor_remove_orphan_originals(
        self, candidates: Sequence[tuple[str, str | None, str | None]],
        remove: Callable[[list[str]], Awaitable[None]],
    ) -> list[str]:
        """`candidates` are (relpath, sha256, format) of files nothing referenced (sha256/format None when the name is
        not an original's). Re-checked and removed inside one write transaction; returns the relpaths removed."""
        async with self._write_lock:
            async with self._transaction_unlocked() as tx:
                doomed = []
                for relpath, sha256, fmt in candidates:
                    referenced = await self._scalar(
                        tx,
                        "SELECT EXISTS(SELECT 1 FROM photos WHERE sha256 = ? AND format = ?) OR "
                        "EXISTS(SELECT 1 FROM staged_files WHERE sha256 = ? OR path = ?)",
                        (sha256, fmt, sha256, relpath),
                    )
                    if not referenced:
                        doomed.append(relpath)
                await remove(doomed)
        return doomed

    async def doctor_remove_orphan_variant_dirs(
        self, candidates: Sequence[tuple[str, int | None]], remove: Callable[[list[str]], Awaitable[None]]
    ) -> list[str]:
        """`candidates` are (relpath, photo id or None) of variant folders or stray files no photo owns. Re-checked and
        removed inside one write transaction (a new photo may reuse a deleted photo's id); returns those removed."""
        async with self._write_lock:
            async with self._transaction_unlocked() as tx:
                doomed = []
                for relpath, photo_id in candidates:
                    if photo_id is None or not await self._scalar(
                        tx, "SELECT EXISTS(SELECT 1 FROM photos WHERE id = ?)", (photo_id,)
                    ):
                        doomed.append(relpath)
                await remove(doomed)
        return doomed

    async def doctor_requeue_missing_outputs(
        self, parts: Sequence[tuple[int, JobKind, Sequence[str]]], now: float, max_attempts: int
    ) -> list[tuple[int, JobKind]]:
        """For each (photo id, kind, missing output names): delete those stale output rows and have the kind's job
        render just those outputs again (see _queue_outputs_of_part; a dead-lettered job is queued again too).
        Skips photos since deleted. Returns the parts re-queued."""
        requeued = []
        async with self.transaction() as tx:
            for photo_id, kind, names in parts:
                await tx.executemany(
                    "DELETE FROM outputs WHERE photo_id = ? AND name = ?", [(photo_id, n) for n in names]
                )
                outcome, _, _ = await self._queue_outputs_of_part(
                    tx, photo_id, kind, names, now, max_attempts, requeue_failed=True)
                if outcome != "gone":
                    requeued.append((photo_id, kind))
        return requeued

    async def doctor_fail_missing_originals(
        self, photo_ids: Sequence[int], error: str, now: float, max_attempts: int
    ) -> list[int]:
        """Photos whose original is gone can never be processed: both parts and both jobs failed with `error`, any
        open attempt closed. Returns the photo ids marked (those still existing)."""
        marked = []
        async with self.transaction() as tx:
            for photo_id in photo_ids:
                async with tx.execute(
                    "UPDATE photos SET thumbnail_status = 'failed', variant_status = 'failed', error = ? "
                    "WHERE id = ? RETURNING id",
                    (error, photo_id),
                ) as cur:
                    if await cur.fetchone() is None:
                        continue
                await tx.executemany(
                    """INSERT INTO jobs (photo_id, kind, priority, status, max_attempts, run_at, last_error, created_at,
                                         updated_at)
                       VALUES (?, ?, ?, 'failed', ?, ?, ?, ?, ?)
                       ON CONFLICT(photo_id, kind) DO UPDATE SET status = 'failed', lease_expires_at = NULL,
                           last_error = excluded.last_error, updated_at = excluded.updated_at""",
                    [(photo_id, str(kind), PRIORITY[kind], max_attempts, now, error, now, now) for kind in JobKind],
                )
                await tx.execute(
                    "UPDATE job_attempts SET finished_at = ?, outcome = 'failed', error = ? "
                    "WHERE photo_id = ? AND outcome IS NULL",
                    (now, error, photo_id),
                )
                marked.append(photo_id)
        return marked


class _RollBack(Exception):
    """Raised inside a transaction to undo it (a dry run)."""


def _chunks(items: list, size: int = 500) -> list[list]:
    """Slices small enough for one IN (...) list."""
    return [items[i:i + size] for i in range(0, len(items), size)]


# -- the workers' bookkeeping: plain sqlite3, run inside the writer's thread by Database._bookkeeping ------------


def _bookkeeping_transaction(conn: sqlite3.Connection, fn: Callable, args: tuple):
    conn.execute("PRAGMA synchronous = NORMAL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn, *args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result
    finally:
        conn.execute("PRAGMA synchronous = FULL")


def _claim_jobs(conn: sqlite3.Connection, now: float, lease_until: float, limit: int, job_id: int | None = None):
    # INDEXED BY: left to itself SQLite picks jobs_by_status and sorts every pending job on every claim,
    # which grows with the backlog; the partial index hands out the next job in order.
    runnable, params = ("""SELECT id FROM jobs INDEXED BY jobs_runnable WHERE status = 'pending' AND run_at <= ?
                           ORDER BY priority, run_at, id LIMIT ?""", (now, limit))
    if job_id is not None:  # one chosen job (the memory budget admitted it), if it is still runnable
        runnable, params = "SELECT id FROM jobs WHERE id = ? AND status = 'pending' AND run_at <= ?", (job_id, now)
    rows = conn.execute(
        f"""UPDATE jobs SET status = 'processing', attempts = attempts + 1, lease_expires_at = ?, updated_at = ?
            WHERE id IN ({runnable})
            RETURNING {JOB_COLUMNS}""",
        (lease_until, now, *params),
    ).fetchall()
    jobs = sorted((_job(r) for r in rows), key=lambda j: (j.priority, j.run_at, j.id))
    claimed, states = [], []
    for job in jobs:
        row = conn.execute(
            f"""UPDATE photos SET {KIND_COLUMN[job.kind]} = 'processing' WHERE id = ?
                RETURNING {PHOTO_STATE_COLUMNS}, sha256, format, width, height""",
            (job.photo_id,),
        ).fetchone()
        claimed.append(ClaimedJob(job=job, album_id=row["album_id"], sha256=row["sha256"], format=row["format"],
                                  width=row["width"], height=row["height"]))
        states.append(_photo_state(row))
    conn.executemany(
        "INSERT INTO job_attempts (photo_id, job_id, kind, attempt, started_at) VALUES (?, ?, ?, ?, ?)",
        [(j.photo_id, j.id, str(j.kind), j.attempts, now) for j in jobs],
    )
    return claimed, states


def _renew_leases(conn: sqlite3.Connection, leases: Sequence[tuple[int, int]], lease_until: float) -> None:
    conn.executemany(
        "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND attempts = ? AND status = 'processing'",
        [(lease_until, job_id, attempt) for job_id, attempt in leases],
    )


def _complete_job(conn: sqlite3.Connection, job: Job, outputs: Sequence[OutputFile], now: float):
    if not _finish_leased_job(conn, job, "complete", None, None, now):
        return None
    conn.executemany(
        """INSERT INTO outputs (photo_id, name, width, height, size_bytes, created_at, format, spec)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT(photo_id, name) DO UPDATE SET width = excluded.width, height = excluded.height,
               size_bytes = excluded.size_bytes, created_at = excluded.created_at, format = excluded.format,
               spec = excluded.spec""",
        [(job.photo_id, o.name, o.width, o.height, o.size_bytes, now, o.format, o.spec) for o in outputs],
    )
    # The thumbnail job's smallest output carries the placeholder; a job without one keeps what is stored.
    thumbhash = next((o.thumbhash for o in outputs if o.thumbhash), None) if job.kind == JobKind.THUMBNAIL else None
    status = "pending" if _rerun_for_outputs_added_meanwhile(conn, job, now) else "complete"
    row = conn.execute(
        f"""UPDATE photos SET {KIND_COLUMN[job.kind]} = ?,
                completed_at = CASE WHEN ? = 'complete' AND {OTHER_KIND_COLUMN[job.kind]} = 'complete' THEN ?
                                    ELSE completed_at END,
                thumbhash = coalesce(?, thumbhash)
            WHERE id = ? RETURNING {PHOTO_STATE_COLUMNS}""",
        (status, status, now, thumbhash, job.photo_id),
    ).fetchone()
    return _photo_state(row)


def _rerun_for_outputs_added_meanwhile(conn: sqlite3.Connection, job: Job, now: float) -> bool:
    """A job claimed for some outputs may have been asked for more while it ran (reprocess or doctor add names to
    its row rather than queue a second job): it goes back to pending for just those. True when it did."""
    if job.outputs is None:
        return False  # it rendered every output of its kind
    raw = conn.execute("SELECT outputs FROM jobs WHERE id = ?", (job.id,)).fetchone()["outputs"]
    added = sorted(set(_output_names(raw) or ()) - set(job.outputs))
    if not added:
        return False
    conn.execute(
        "UPDATE jobs SET status = 'pending', attempts = 0, run_at = ?, outputs = ?, updated_at = ? WHERE id = ?",
        (now, json.dumps(added), now, job.id),
    )
    return True


def _fail_job(conn: sqlite3.Connection, job: Job, error: str, retry_at: float | None, now: float):
    outcome = "retry" if retry_at is not None else "failed"
    if not _finish_leased_job(conn, job, outcome, error, retry_at, now):
        return None
    status = Status.PENDING if retry_at is not None else Status.FAILED
    row = conn.execute(
        f"""UPDATE photos SET {KIND_COLUMN[job.kind]} = ?,
                error = CASE WHEN ? = 'failed' THEN ? ELSE error END
            WHERE id = ? RETURNING {PHOTO_STATE_COLUMNS}""",
        (str(status), str(status), error, job.photo_id),
    ).fetchone()
    return _photo_state(row)


def _release_job(conn: sqlite3.Connection, job: Job, now: float):
    if not _finish_leased_job(conn, job, "interrupted", None, now, now, refund=True):
        return None
    row = conn.execute(
        f"UPDATE photos SET {KIND_COLUMN[job.kind]} = 'pending' WHERE id = ? RETURNING {PHOTO_STATE_COLUMNS}",
        (job.photo_id,),
    ).fetchone()
    return _photo_state(row)


def _finish_leased_job(conn: sqlite3.Connection, job: Job, outcome: str, error, run_at, now,
                       refund: bool = False) -> bool:
    """Close the job's current attempt; False when that attempt no longer holds the lease (fencing)."""
    status = {"complete": "complete", "failed": "failed"}.get(outcome, "pending")
    held = conn.execute(
        """UPDATE jobs SET status = ?, lease_expires_at = NULL, last_error = ?, updated_at = ?,
               run_at = coalesce(?, run_at), attempts = attempts - ?
           WHERE id = ? AND attempts = ? AND status = 'processing' RETURNING id""",
        (status, error, now, run_at, 1 if refund else 0, job.id, job.attempts),
    ).fetchone()
    if held is None:
        return False
    conn.execute(  # photo_id lets SQLite use job_attempts_by_photo instead of scanning all history
        """UPDATE job_attempts SET finished_at = ?, outcome = ?, error = ?, retry_at = ?
           WHERE photo_id = ? AND job_id = ? AND attempt = ? AND outcome IS NULL""",
        (now, outcome, error, run_at if outcome == "retry" else None, job.photo_id, job.id, job.attempts),
    )
    return True
