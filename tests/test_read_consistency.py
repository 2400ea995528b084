"""A read that starts after a commit sees it, even while other reads share the reader connection.

Found by an access-control test that flaked once: an album created a moment before answered 404 to an upload.
When a read took several hops to the aiosqlite thread (execute, then fetch), its statement stayed active between
them, another coroutine's statement ran inside the same read transaction, and so read a snapshot from before the
commit it followed. Each read is now one hop.
"""

from __future__ import annotations

import asyncio
import time

from photoq.db import Database


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
