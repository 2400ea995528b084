"""The SQLite backend's queue: claims, leases and results (the workers' verbs), and the queue's own reads."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from ..models import (
    PRIORITY,
    ClaimedJob,
    Job,
    JobKind,
    NextJob,
    OutputFile,
    PhotoState,
    Status,
)
from . import batches, rows
from .connection import SQLiteConnection
from .rows import (
    JOB_COLUMNS,
    KIND_COLUMN,
    OTHER_KIND_COLUMN,
    PHOTO_STATE_COLUMNS,
    UNFINISHED,
)
from .writer import Transaction


class SQLiteJobs(SQLiteConnection):
    # -- the workers' verbs --------------------------------------------------------------------------------------
    # They run several times per photo, so each is one hop to the writer's thread (execute_write_fn), committed with
    # synchronous = NORMAL: a power cut may undo the last few of them, which only makes a job run again (its outputs
    # are already fsynced), while anything a client was told about (uploads, albums, retries) commits with FULL.

    async def claim_jobs(self, now: float, lease_until: float, limit: int) -> tuple[list[ClaimedJob], list[PhotoState]]:
        return await self.writer.execute_write_fn(
            lambda conn: _claim_jobs(conn, now, lease_until, limit), durable=False)

    async def claim_job(self, job_id: int, now: float, lease_until: float) -> tuple[list[ClaimedJob], list[PhotoState]]:
        return await self.writer.execute_write_fn(
            lambda conn: _claim_jobs(conn, now, lease_until, 1, job_id), durable=False)

    async def renew_leases(self, leases: Sequence[tuple[int, str]], lease_until: float) -> None:
        await self.writer.execute_write_fn(lambda conn: _renew_leases(conn, leases, lease_until), durable=False)

    async def complete_job(self, job: Job, outputs: Sequence[OutputFile], now: float) -> PhotoState | None:
        return await self.writer.execute_write_fn(lambda conn: _complete_job(conn, job, outputs, now), durable=False)

    async def fail_job(self, job: Job, error: str, retry_at: float | None, now: float) -> PhotoState | None:
        return await self.writer.execute_write_fn(
            lambda conn: _fail_job(conn, job, error, retry_at, now), durable=False)

    async def release_job(self, job: Job, now: float) -> PhotoState | None:
        return await self.writer.execute_write_fn(lambda conn: _release_job(conn, job, now), durable=False)

    async def reclaim_orphans(self, now: float) -> int:
        def reclaim(conn: sqlite3.Connection) -> int:
            count = len(conn.execute(
                """UPDATE jobs SET status = 'pending', lease_expires_at = NULL, lease_token = NULL, run_at = ?,
                       updated_at = ?, attempts = max(attempts - 1, 0)
                   WHERE status = 'processing' RETURNING id""",
                (now, now),
            ).fetchall())
            conn.execute(
                "UPDATE job_attempts SET finished_at = ?, outcome = 'interrupted' WHERE outcome IS NULL", (now,))
            for column in KIND_COLUMN.values():
                conn.execute(f"UPDATE photos SET {column} = 'pending' WHERE {column} = 'processing'")
            return count
        return await self.writer.execute_write_fn(reclaim)

    async def expired_leases(self, now: float) -> list[Job]:
        found = await self._read_all(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'processing' AND lease_expires_at < ?", (now,)
        )
        return [rows.job(r) for r in found]

    # -- the queue's reads ---------------------------------------------------------------------------------------

    async def next_runnable_job(self, now: float) -> NextJob | None:
        row = await self._read_one(
            """SELECT j.id, j.kind, p.width, p.height, p.format, p.sha256 FROM jobs j INDEXED BY jobs_runnable
               JOIN photos p ON p.id = j.photo_id
               WHERE j.status = 'pending' AND j.run_at <= ? ORDER BY j.priority, j.run_at, j.id LIMIT 1""",
            (now,),
        )
        return None if row is None else NextJob(row["id"], JobKind(row["kind"]), row["width"], row["height"],
                                                row["format"], row["sha256"])

    async def next_run_at(self) -> float | None:
        return await self._read_scalar("SELECT min(run_at) FROM jobs WHERE status = 'pending'")

    async def unfinished_job_count(self) -> int:
        return int(await self._read_scalar(f"SELECT count(*) FROM jobs WHERE status IN {UNFINISHED}"))

    async def album_has_unfinished_jobs(self, album_id: int) -> bool:
        return bool(await self._read_scalar(
            f"""SELECT EXISTS(SELECT 1 FROM jobs j JOIN photos p ON p.id = j.photo_id
                              WHERE p.album_id = ? AND j.status IN {UNFINISHED})""",
            (album_id,),
        ))

    async def unfinished_jobs_by_kind(self) -> dict[str, int]:
        found = await self._read_all(f"SELECT kind, count(*) AS n FROM jobs WHERE status IN {UNFINISHED} GROUP BY kind")
        return {r["kind"]: r["n"] for r in found}

    async def jobs_until_album_done(self, album_id: int) -> dict[str, int]:
        last = await self._read_one(
            """SELECT j.priority, j.run_at, j.id FROM jobs j JOIN photos p ON p.id = j.photo_id
               WHERE p.album_id = ? AND j.status = 'pending'
               ORDER BY j.priority DESC, j.run_at DESC, j.id DESC LIMIT 1""",
            (album_id,),
        )
        if last is None:
            found = await self._read_all(
                """SELECT j.kind, count(*) AS n FROM jobs j JOIN photos p ON p.id = j.photo_id
                   WHERE p.album_id = ? AND j.status = 'processing' GROUP BY j.kind""",
                (album_id,),
            )
        else:
            found = await self._read_all(
                """SELECT kind, count(*) AS n FROM jobs
                   WHERE status = 'processing'
                      OR (status = 'pending' AND (priority, run_at, id) <= (?, ?, ?))
                   GROUP BY kind""",
                (last["priority"], last["run_at"], last["id"]),
            )
        return {r["kind"]: r["n"] for r in found}

    async def job_counts(self) -> dict[str, int]:
        found = await self._read_all("SELECT status, count(*) AS n FROM jobs GROUP BY status")
        counts = {str(s): 0 for s in Status}
        counts.update({r["status"]: r["n"] for r in found})
        return counts

    async def oldest_unfinished_job_created_at(self) -> float | None:
        return await self._read_scalar(f"SELECT min(created_at) FROM jobs WHERE status IN {UNFINISHED}")

    async def list_jobs(self, status: Status | None, limit: int) -> list[Job]:
        if status is None:
            found = await self._read_all(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE status != 'complete' ORDER BY "
                "CASE status WHEN 'processing' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END, priority, run_at, id LIMIT ?",
                (limit,),
            )
        else:
            found = await self._read_all(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE status = ? ORDER BY priority, run_at, id LIMIT ?",
                (str(status), limit),
            )
        return [rows.job(r) for r in found]

    # -- the queue's admin verbs ---------------------------------------------------------------------------------

    async def retry_photo(self, photo_id: int, now: float, max_attempts: int) -> PhotoState | None:
        async with self.writer.transaction() as tx:
            row = await tx.fetchone(
                "SELECT thumbnail_status, variant_status FROM photos WHERE id = ? AND deleted_at IS NULL", (photo_id,))
            if row is None:
                return None
            failed_kinds = [k for k, col in KIND_COLUMN.items() if row[col] == Status.FAILED]
            if not failed_kinds:
                return None
            await self._requeue(tx, [(photo_id, k) for k in failed_kinds], now, max_attempts)
            state = await tx.fetchone(
                f"""UPDATE photos SET
                        thumbnail_status = CASE WHEN thumbnail_status = 'failed' THEN 'pending'
                                                ELSE thumbnail_status END,
                        variant_status = CASE WHEN variant_status = 'failed' THEN 'pending' ELSE variant_status END,
                        error = NULL
                    WHERE id = ? RETURNING {PHOTO_STATE_COLUMNS}""",
                (photo_id,),
            )
            assert state is not None
            return rows.photo_state(state)

    async def retry_all_failed(self, now: float, max_attempts: int) -> tuple[int, list[PhotoState]]:
        async with self.writer.transaction() as tx:
            failed = await tx.fetchall(
                "SELECT id, thumbnail_status, variant_status FROM photos "
                "WHERE processing_status = 'failed' AND deleted_at IS NULL"
            )
            parts = [(r["id"], k) for r in failed for k, col in KIND_COLUMN.items() if r[col] == Status.FAILED]
            await self._requeue(tx, parts, now, max_attempts)
            states = [rows.photo_state(r) for r in await tx.fetchall(
                f"""UPDATE photos SET
                        thumbnail_status = CASE WHEN thumbnail_status = 'failed' THEN 'pending'
                                                ELSE thumbnail_status END,
                        variant_status = CASE WHEN variant_status = 'failed' THEN 'pending' ELSE variant_status END,
                        error = NULL
                    WHERE processing_status = 'failed' AND deleted_at IS NULL RETURNING {PHOTO_STATE_COLUMNS}"""
            )]
        return len(parts), states

    @staticmethod
    async def _requeue(tx: Transaction, parts: Sequence[tuple[int, JobKind]], now: float, max_attempts: int) -> None:
        photo_ids = [photo_id for photo_id, _ in parts]
        await tx.run(lambda conn: batches.photos_join_batches(conn, photo_ids, now))
        # An upsert: the job row may have been cleared from the dead letter while its photo stayed failed.
        await tx.executemany(
            """INSERT INTO jobs (photo_id, kind, priority, max_attempts, run_at, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(photo_id, kind) DO UPDATE SET status = 'pending', attempts = 0,
                   max_attempts = excluded.max_attempts, run_at = excluded.run_at, lease_expires_at = NULL,
                   lease_token = NULL, last_error = NULL, updated_at = excluded.updated_at""",
            [(photo_id, str(kind), PRIORITY[kind], max_attempts, now, now, now) for photo_id, kind in parts],
        )

    async def clear_failed_jobs(self) -> int:
        return await self.writer.execute_write_fn(
            lambda conn: len(conn.execute("DELETE FROM jobs WHERE status = 'failed' RETURNING id").fetchall()))

    async def prune_finished_jobs(self, older_than: float) -> int:
        return await self.writer.execute_write_fn(lambda conn: len(conn.execute(
            "DELETE FROM jobs WHERE status = 'complete' AND updated_at < ? RETURNING id", (older_than,)
        ).fetchall()))


# -- the workers' bookkeeping: plain sqlite3, run on the writer's thread inside one transaction --------------------


def _claim_jobs(conn: sqlite3.Connection, now: float, lease_until: float, limit: int,
                job_id: int | None = None) -> tuple[list[ClaimedJob], list[PhotoState]]:
    # INDEXED BY: left to itself SQLite picks jobs_by_status and sorts every pending job on every claim,
    # which grows with the backlog; the partial index hands out the next job in order.
    params: tuple[float | int, ...]
    runnable, params = ("""SELECT id FROM jobs INDEXED BY jobs_runnable WHERE status = 'pending' AND run_at <= ?
                           ORDER BY priority, run_at, id LIMIT ?""", (now, limit))
    if job_id is not None:  # one chosen job (the memory budget admitted it), if it is still runnable
        runnable, params = "SELECT id FROM jobs WHERE id = ? AND status = 'pending' AND run_at <= ?", (job_id, now)
    found = conn.execute(
        f"""UPDATE jobs SET status = 'processing', attempts = attempts + 1, lease_expires_at = ?, updated_at = ?,
                lease_token = lower(hex(randomblob(16)))
            WHERE id IN ({runnable})
            RETURNING {JOB_COLUMNS}""",
        (lease_until, now, *params),
    ).fetchall()
    jobs = sorted((rows.job(r) for r in found), key=lambda j: (j.priority, j.run_at, j.id))
    claimed, states = [], []
    for job in jobs:
        row = conn.execute(
            f"""UPDATE photos SET {KIND_COLUMN[job.kind]} = 'processing' WHERE id = ?
                RETURNING {PHOTO_STATE_COLUMNS}, sha256, format, width, height""",
            (job.photo_id,),
        ).fetchone()
        claimed.append(ClaimedJob(job=job, album_id=row["album_id"], sha256=row["sha256"], format=row["format"],
                                  width=row["width"], height=row["height"]))
        states.append(rows.photo_state(row))
    conn.executemany(
        "INSERT INTO job_attempts (photo_id, job_id, kind, attempt, started_at) VALUES (?, ?, ?, ?, ?)",
        [(j.photo_id, j.id, str(j.kind), j.attempts, now) for j in jobs],
    )
    return claimed, states


def _renew_leases(conn: sqlite3.Connection, leases: Sequence[tuple[int, str]], lease_until: float) -> None:
    conn.executemany(
        "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_token = ? AND status = 'processing'",
        [(lease_until, job_id, token) for job_id, token in leases],
    )


def _complete_job(conn: sqlite3.Connection, job: Job, outputs: Sequence[OutputFile], now: float) -> PhotoState | None:
    if not _finish_leased_job(conn, job, "complete", None, None, now):
        return None
    conn.executemany(
        """INSERT INTO outputs (photo_id, name, width, height, size_bytes, created_at, format, spec, source_sha256)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT(photo_id, name) DO UPDATE SET width = excluded.width, height = excluded.height,
               size_bytes = excluded.size_bytes, created_at = excluded.created_at, format = excluded.format,
               spec = excluded.spec, source_sha256 = excluded.source_sha256""",
        [(job.photo_id, o.name, o.width, o.height, o.size_bytes, now, o.format, o.spec, o.source_sha256)
         for o in outputs],
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
    return rows.photo_state(row)


def _rerun_for_outputs_added_meanwhile(conn: sqlite3.Connection, job: Job, now: float) -> bool:
    """A job claimed for some outputs may have been asked for more while it ran (reprocess or doctor add names to
    its row rather than queue a second job): it goes back to pending for just those. True when it did."""
    if job.outputs is None:
        return False  # it rendered every output of its kind
    raw = conn.execute("SELECT outputs FROM jobs WHERE id = ?", (job.id,)).fetchone()["outputs"]
    added = sorted(set(rows.output_names(raw) or ()) - set(job.outputs))
    if not added:
        return False
    conn.execute(
        "UPDATE jobs SET status = 'pending', attempts = 0, run_at = ?, outputs = ?, updated_at = ? WHERE id = ?",
        (now, json.dumps(added), now, job.id),
    )
    return True


def _fail_job(conn: sqlite3.Connection, job: Job, error: str, retry_at: float | None, now: float) -> PhotoState | None:
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
    return rows.photo_state(row)


def _release_job(conn: sqlite3.Connection, job: Job, now: float) -> PhotoState | None:
    if not _finish_leased_job(conn, job, "interrupted", None, now, now, refund=True):
        return None
    row = conn.execute(
        f"UPDATE photos SET {KIND_COLUMN[job.kind]} = 'pending' WHERE id = ? RETURNING {PHOTO_STATE_COLUMNS}",
        (job.photo_id,),
    ).fetchone()
    return rows.photo_state(row)


def _finish_leased_job(conn: sqlite3.Connection, job: Job, outcome: str, error: str | None, run_at: float | None,
                       now: float, refund: bool = False) -> bool:
    """Close the job's current attempt; False when the caller's lease is no longer the job's (fencing: the lease expired
    and the job was claimed again, or it was deleted), and then nothing is written."""
    status = {"complete": "complete", "failed": "failed"}.get(outcome, "pending")
    if job.lease_token is None:
        return False
    held = conn.execute(
        """UPDATE jobs SET status = ?, lease_expires_at = NULL, lease_token = NULL, last_error = ?, updated_at = ?,
               run_at = coalesce(?, run_at), attempts = attempts - ?
           WHERE id = ? AND lease_token = ? AND status = 'processing' RETURNING id""",
        (status, error, now, run_at, 1 if refund else 0, job.id, job.lease_token),
    ).fetchone()
    if held is None:
        return False
    conn.execute(  # photo_id lets SQLite use job_attempts_by_photo instead of scanning all history
        """UPDATE job_attempts SET finished_at = ?, outcome = ?, error = ?, retry_at = ?
           WHERE photo_id = ? AND job_id = ? AND attempt = ? AND outcome IS NULL""",
        (now, outcome, error, run_at if outcome == "retry" else None, job.photo_id, job.id, job.attempts),
    )
    return True
