"""Album batches (SQLite): an album's work since its last idle moment, kept in the database so that every page
load, tab, device and node counts the same "n of m". Plain sqlite3 on the writer's thread, inside the caller's
transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

UNFINISHED = "('pending', 'processing')"

# Counted per album: the photos that entered the queue since the batch started, and any photo still unfinished;
# photos in the trash (their jobs are gone) count no more.
BATCHES_SELECT = f"""
    SELECT a.id AS album_id, a.name AS album_name, a.batch_started_at AS started_at,
           count(p.id) AS total,
           coalesce(sum(p.processing_status = 'complete'), 0) AS complete,
           coalesce(sum(p.processing_status = 'failed'), 0) AS failed
    FROM albums a JOIN photos p ON p.album_id = a.id AND p.deleted_at IS NULL
         AND (p.queued_at >= a.batch_started_at OR p.processing_status IN {UNFINISHED})
    WHERE a.batch_started_at IS NOT NULL AND a.deleted_at IS NULL AND (? IS NULL OR a.id = ?)
    GROUP BY a.id
"""


def join_batch(conn: sqlite3.Connection, album_id: int, now: float, key: str | None = None) -> None:
    """Work is about to enter the album's queue: it starts a new batch when nothing of the album is unfinished (its
    last batch is over), unless it continues the upload batch (`key`, X-Photoq-Batch) that started the current one,
    so a slow upload whose processing keeps catching up stays one batch. Call before the photos become unfinished."""
    conn.execute(
        f"""UPDATE albums SET batch_started_at = ?, batch_key = ?
            WHERE id = ? AND (batch_started_at IS NULL OR batch_key IS NULL OR ? IS NULL OR batch_key <> ?)
              AND NOT EXISTS (SELECT 1 FROM photos WHERE album_id = ? AND deleted_at IS NULL
                              AND processing_status IN {UNFINISHED})""",
        (now, key, album_id, key, key, album_id),
    ).close()
    if key is not None:
        conn.execute("UPDATE albums SET batch_key = ? WHERE id = ?", (key, album_id)).close()


def photos_join_batches(conn: sqlite3.Connection, photo_ids: Sequence[int], now: float) -> None:
    """Photos about to be queued again (retry, reprocess, doctor) join their albums' batches."""
    ids = list(dict.fromkeys(photo_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        albums = [r[0] for r in conn.execute(f"SELECT DISTINCT album_id FROM photos WHERE id IN ({marks})", chunk)]
        for album_id in albums:
            join_batch(conn, album_id, now)
        conn.execute(f"UPDATE photos SET queued_at = ? WHERE id IN ({marks})", (now, *chunk)).close()
