"""A read that starts after a commit sees it, even while other reads share the reader connection.

Found by an access-control test that flaked once: an album created a moment before answered 404 to an upload.
Database._scalar (execute, fetchone, close) and _read_all (execute, fetchall) take two or three hops to the
aiosqlite thread; between them the statement is still active, another coroutine's statement runs inside the same
read transaction, and so reads a snapshot from before the commit it follows. The fix belongs in photoq/db.py (each
read in one hop, e.g. `conn.execute_fetchall`), which is not this test's author's to change: remove the xfail
marker with the fix.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from photoq.db import Database


@pytest.mark.xfail(strict=True, reason="stale reads on the shared reader connection: fix pending in photoq/db.py")
async def test_a_read_after_a_commit_sees_it_while_other_reads_run(tmp_path):
    db = Database(tmp_path / "photoq.db")
    await db.open()
    stop = asyncio.Event()

    async def background_reads():  # what the workers and the live-progress stream do all the time
        while not stop.is_set():
            await db.next_run_at()
            await db.unfinished_job_count()
            await db.stats()

    readers = [asyncio.create_task(background_reads()) for _ in range(4)]
    misses = 0
    try:
        for i in range(150):
            album = await db.create_album(f"album {i}", time.time())
            if await db.get_album(album.id) is None:
                misses += 1
    finally:
        stop.set()
        await asyncio.gather(*readers)
        await db.close()
    assert misses == 0, f"{misses} of 150 reads missed the album committed just before them"
