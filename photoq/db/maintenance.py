"""The SQLite backend's maintenance verbs: `photoq reprocess` and `photoq doctor`.

reprocess (and doctor's repair) queue single outputs of a photo: the kind's job gets their names in jobs.outputs and
renders only those, so the photo keeps its other outputs. Never a second job for a photo's kind: an unfinished one
takes the names on (see jobs._rerun_for_outputs_added_meanwhile).

doctor runs beside a live server: it reads in pages, and every write re-checks what it acts on inside one
BEGIN IMMEDIATE, which also holds off another process's writers (a server staging the same bytes) until the files
are gone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..models import PRIORITY, JobKind, PhotoState, Status
from . import batches, rows
from .connection import SQLiteConnection
from .rows import KIND_COLUMN, PHOTO_STATE_COLUMNS
from .store import QueueOutcome, RemovePaths
from .writer import Transaction


class _RollBack(Exception):
    """Raised inside a transaction to undo it (a dry run)."""


class SQLiteMaintenance(SQLiteConnection):
    # -- reprocess -----------------------------------------------------------------------------------------------

    async def reprocess_photos_page(self, after_id: int, limit: int, album_id: int | None) -> list[dict]:
        found = await self._read_all(
            """SELECT p.id, p.album_id, p.width, p.height, p.thumbnail_status, p.variant_status,
                      (SELECT json_group_object(o.name, json_object('width', o.width, 'height', o.height,
                                                                    'format', o.format, 'spec', o.spec))
                       FROM outputs o WHERE o.photo_id = p.id) AS outputs
               FROM photos p WHERE p.id > ? AND p.deleted_at IS NULL AND (? IS NULL OR p.album_id = ?)
               ORDER BY p.id LIMIT ?""",
            (after_id, album_id, album_id, limit),
        )
        return [{**dict(r), "outputs": json.loads(r["outputs"])} for r in found]

    async def queue_outputs(
        self, parts: Sequence[tuple[int, JobKind, Sequence[str]]], now: float, max_attempts: int,
        dry_run: bool = False,
    ) -> tuple[list[QueueOutcome], list[PhotoState]]:
        outcomes: list[QueueOutcome] = []
        states: list[PhotoState] = []
        try:
            async with self.writer.transaction() as tx:
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

    @staticmethod
    async def _queue_outputs_of_part(
        tx: Transaction, photo_id: int, kind: JobKind, names: Sequence[str], now: float, max_attempts: int,
        requeue_failed: bool = False,
    ) -> tuple[str, list[str], PhotoState | None]:
        """Have the photo's `kind` job render `names`. Outcomes: "queued" (its job now renders them: a finished job
        queued again for just these, or an unfinished one given more names), "already" (its unfinished job renders
        them anyway), "failed" (dead-lettered: left for retry, unless `requeue_failed`), "gone" (no such photo).
        Also the names that were not asked for already, and the photo's new state when its status changed."""
        job = await tx.fetchone("SELECT id, status, outputs FROM jobs WHERE photo_id = ? AND kind = ?",
                                (photo_id, str(kind)))
        current = rows.output_names(job["outputs"]) if job is not None else None
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
        await tx.run(lambda conn: batches.photos_join_batches(conn, [photo_id], now))
        row = await tx.fetchone(
            f"UPDATE photos SET {KIND_COLUMN[kind]} = 'pending', completed_at = NULL WHERE id = ? "
            f"RETURNING {PHOTO_STATE_COLUMNS}", (photo_id,)
        )
        if row is None:
            return "gone", [], None
        await tx.execute(
            """INSERT INTO jobs (photo_id, kind, priority, max_attempts, run_at, created_at, updated_at, outputs)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(photo_id, kind) DO UPDATE SET status = 'pending', attempts = 0,
                   max_attempts = excluded.max_attempts, run_at = excluded.run_at, lease_expires_at = NULL,
                   lease_token = NULL, last_error = NULL, updated_at = excluded.updated_at,
                   outputs = excluded.outputs""",
            (photo_id, str(kind), PRIORITY[kind], max_attempts, now, now, now,
             None if wanted is None else json.dumps(wanted)),
        )
        return "queued", sorted(set(names)), rows.photo_state(row)

    # -- doctor --------------------------------------------------------------------------------------------------

    async def doctor_photos_page(self, after_id: int, limit: int) -> list[dict]:
        found = await self._read_all(
            """SELECT p.id, p.sha256, p.format, p.width, p.height, p.created_at, p.thumbnail_status, p.variant_status,
                      (SELECT json_group_object(o.name, json_object(
                                  'format', o.format, 'width', o.width, 'height', o.height,
                                  'created_at', o.created_at, 'source_sha256', o.source_sha256))
                       FROM outputs o WHERE o.photo_id = p.id) AS output_rows
               FROM photos p WHERE p.id > ? AND p.deleted_at IS NULL ORDER BY p.id LIMIT ?""",
            (after_id, limit),
        )
        page = []
        for r in found:
            output_rows = json.loads(r["output_rows"])
            page.append({**dict(r), "output_rows": output_rows,
                         "outputs": {name: o["format"] for name, o in output_rows.items()}})
        return page

    async def doctor_original_references(
        self, relpaths: Sequence[str], shas: Sequence[str]
    ) -> tuple[set[tuple[str, str]], set[str], set[str]]:
        photos: set[tuple[str, str]] = set()
        staged_paths: set[str] = set()
        staged_shas: set[str] = set()
        for chunk in rows.chunks(list(shas)):
            marks = ",".join("?" * len(chunk))
            found = await self._read_all(f"SELECT DISTINCT sha256, format FROM photos WHERE sha256 IN ({marks})", chunk)
            photos.update((r["sha256"], r["format"]) for r in found)
            found = await self._read_all(f"SELECT DISTINCT sha256 FROM staged_files WHERE sha256 IN ({marks})", chunk)
            staged_shas.update(r["sha256"] for r in found)
        for chunk in rows.chunks(list(relpaths)):
            found = await self._read_all(
                f"SELECT DISTINCT path FROM staged_files WHERE path IN ({','.join('?' * len(chunk))})", chunk
            )
            staged_paths.update(r["path"] for r in found)
        return photos, staged_paths, staged_shas

    async def doctor_existing_photo_ids(self, photo_ids: Sequence[int]) -> set[int]:
        existing: set[int] = set()
        for chunk in rows.chunks(list(photo_ids)):
            found = await self._read_all(f"SELECT id FROM photos WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            existing.update(r["id"] for r in found)
        return existing

    async def doctor_remove_orphan_originals(
        self, candidates: Sequence[tuple[str, str | None, str | None]], remove: RemovePaths
    ) -> list[str]:
        async with self.writer.transaction() as tx:
            doomed = []
            for relpath, sha256, fmt in candidates:
                referenced = await tx.scalar(
                    "SELECT EXISTS(SELECT 1 FROM photos WHERE sha256 = ? AND format = ?) OR "
                    "EXISTS(SELECT 1 FROM staged_files WHERE sha256 = ? OR path = ?)",
                    (sha256, fmt, sha256, relpath),
                )
                if not referenced:
                    doomed.append(relpath)
            await remove(doomed)
        return doomed

    async def doctor_remove_orphan_variant_dirs(
        self, candidates: Sequence[tuple[str, int | None]], remove: RemovePaths
    ) -> list[str]:
        async with self.writer.transaction() as tx:
            doomed = []
            for relpath, photo_id in candidates:
                if photo_id is None or not await tx.scalar(
                    "SELECT EXISTS(SELECT 1 FROM photos WHERE id = ?)", (photo_id,)
                ):
                    doomed.append(relpath)
            await remove(doomed)
        return doomed

    async def doctor_requeue_missing_outputs(
        self, parts: Sequence[tuple[int, JobKind, Sequence[str]]], now: float, max_attempts: int
    ) -> list[tuple[int, JobKind]]:
        requeued = []
        async with self.writer.transaction() as tx:
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
        marked = []
        async with self.writer.transaction() as tx:
            for photo_id in photo_ids:
                if await tx.fetchone(
                    "UPDATE photos SET thumbnail_status = 'failed', variant_status = 'failed', error = ? "
                    "WHERE id = ? RETURNING id",
                    (error, photo_id),
                ) is None:
                    continue
                await tx.executemany(
                    """INSERT INTO jobs (photo_id, kind, priority, status, max_attempts, run_at, last_error, created_at,
                                         updated_at)
                       VALUES (?, ?, ?, 'failed', ?, ?, ?, ?, ?)
                       ON CONFLICT(photo_id, kind) DO UPDATE SET status = 'failed', lease_expires_at = NULL,
                           lease_token = NULL, last_error = excluded.last_error, updated_at = excluded.updated_at""",
                    [(photo_id, str(kind), PRIORITY[kind], max_attempts, now, error, now, now) for kind in JobKind],
                )
                await tx.execute(
                    "UPDATE job_attempts SET finished_at = ?, outcome = 'failed', error = ? "
                    "WHERE photo_id = ? AND outcome IS NULL",
                    (now, error, photo_id),
                )
                marked.append(photo_id)
        return marked
