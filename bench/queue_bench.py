"""Queue throughput: no-op jobs through photoq's Database + JobQueue vs huey's SqliteStorage (synchronous=NORMAL)."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from pathlib import Path


async def photoq_jobs_per_second(directory: Path, photos: int, claim_batch: int) -> dict:
    from photoq.config import QueueSettings
    from photoq.db import Database
    from photoq.events import Broadcaster
    from photoq.models import NewPhoto
    from photoq.queue import JobQueue

    db = Database(directory / f"photoq-{claim_batch}.db")
    await db.open()

    async def compute_stats(album_id):
        return (await db.stats(album_id)).as_dict()

    events = Broadcaster(compute_stats)
    await events.start()
    queue = JobQueue(db, events, QueueSettings())
    await queue.start()
    try:
        album = await db.create_album("bench", time.time())
        new = [NewPhoto(f"{i}.jpg", hashlib.sha256(str(i).encode()).hexdigest(), 1000, 640, 480, "jpeg",
                        "image/jpeg", None, {}) for i in range(photos)]
        start = time.perf_counter()
        for i in range(0, photos, 50):  # uploads of 50 photos: one transaction each, as ingest does
            await queue.add_photos(album.id, new[i:i + 50], [])
        enqueued = time.perf_counter()
        done = 0
        while claimed := await queue.claim(claim_batch):
            for item in claimed:
                await queue.complete(item.job, [])
                done += 1
        end = time.perf_counter()
    finally:
        await events.stop()
        await db.close()
    assert done == 2 * photos, done
    return {"jobs": done, "enqueue_per_s": done / (enqueued - start), "claim_ack_per_s": done / (end - enqueued),
            "cycle_per_s": done / (end - start)}


class _NormalSqliteStorage:
    """huey's SqliteStorage with `PRAGMA synchronous = NORMAL` on its connection."""

    def __new__(cls, *args, **kwargs):
        from huey.storage import SqliteStorage

        class Storage(SqliteStorage):
            def _create_connection(self):
                conn = super()._create_connection()
                conn.execute("pragma synchronous=NORMAL")
                return conn

        return Storage(*args, **kwargs)


def huey_jobs_per_second(directory: Path, jobs: int) -> dict:
    storage = _NormalSqliteStorage(name="bench", filename=str(directory / "huey.db"))
    sync = storage.conn.execute("pragma synchronous").fetchone()[0]
    payload = b"x" * 100  # a small pickled task
    start = time.perf_counter()
    for _ in range(jobs):
        storage.enqueue(payload)
    enqueued = time.perf_counter()
    done = 0
    while storage.dequeue() is not None:
        done += 1
    end = time.perf_counter()
    storage.close()
    assert done == jobs and sync == 1, (done, sync)
    return {"jobs": done, "enqueue_per_s": done / (enqueued - start), "claim_ack_per_s": done / (end - enqueued),
            "cycle_per_s": done / (end - start)}


def run(photos: int = 1000) -> dict:
    with tempfile.TemporaryDirectory(prefix="photoq-bench-queue-") as tmp:
        directory = Path(tmp)
        huey = huey_jobs_per_second(directory, 2 * photos)
        photoq1 = asyncio.run(photoq_jobs_per_second(directory, photos, 1))
        photoq8 = asyncio.run(photoq_jobs_per_second(directory, photos, 8))
    return {"huey": huey, "photoq_claim1": photoq1, "photoq_claim8": photoq8}


if __name__ == "__main__":
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1000), indent=2))
