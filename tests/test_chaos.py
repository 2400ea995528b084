"""Chaos: a real `photoq serve` is SIGKILLed (with its image processes) at random moments while a client uploads
200 photos over several connections, and restarted each time. Nothing accepted is lost, nothing is duplicated,
nothing half-written survives, and every photo ends complete with decodable outputs.

The moments are drawn from a fixed seed, printed at the start; set PHOTOQ_CHAOS_SEED to replay or vary a run.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from PIL import Image

from photoq.config import DEFAULT_OUTPUTS

from .support import AUTH, ServerProcess, jpeg, multipart, wait_for_photos

SEED = int(os.environ.get("PHOTOQ_CHAOS_SEED", "4242"))
PHOTOS = 200
CONNECTIONS = 4
KILLS = 5
EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "gif": ".gif", "tiff": ".tif"}


@dataclass
class Run:
    files: list[tuple[str, bytes]]
    shas: list[str]
    photo_id: dict[int, int] = field(default_factory=dict)  # file index -> photo id, from a 202/200 answer
    in_flight: set[int] = field(default_factory=set)
    kills: list[dict] = field(default_factory=list)
    retried_after_kill: int = 0

    def record(self, batch: list[int], entries: list[dict]) -> None:
        for index, entry in zip(batch, entries):
            assert entry["status"] in ("pending", "duplicate"), entry
            photo_id = entry["id"] if entry["status"] == "pending" else entry["duplicate_of"]
            # A retry of an upload whose answer was lost in a kill finds the first copy: same photo, never a second.
            assert self.photo_id.setdefault(index, photo_id) == photo_id, (index, photo_id, self.photo_id[index])


def read_db(data_dir: Path, sql: str) -> list[tuple]:
    """Read-only, and closed at once: it never checkpoints the WAL, and leaves no file open (an unmount waits)."""
    with closing(sqlite3.connect(f"file:{data_dir / 'photoq.db'}?mode=ro", uri=True, timeout=30)) as conn:
        return conn.execute(sql).fetchall()


def check_store(data_dir: Path) -> dict[str, int]:
    """After a (re)start: every photo row has its whole original and every original has a row; no temp files,
    no staged leftovers. Returns sha256 -> photo id."""
    rows = read_db(data_dir, "SELECT id, sha256, format FROM photos")
    assert read_db(data_dir, "SELECT * FROM staged_files") == []
    assert list((data_dir / "tmp").iterdir()) == []
    expected = {}
    for photo_id, sha256, fmt in rows:
        path = data_dir / "originals" / sha256[:2] / sha256[2:4] / f"{sha256}{EXTENSIONS[fmt]}"
        assert path.is_file(), f"photo {photo_id} has a row but no original"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256, f"photo {photo_id}'s original is not whole"
        expected[str(path.relative_to(data_dir))] = photo_id
    on_disk = {str(p.relative_to(data_dir)) for p in (data_dir / "originals").rglob("*") if p.is_file()}
    assert on_disk == set(expected), f"originals without a row: {sorted(on_disk - set(expected))}"
    assert len({sha for _, sha, _ in rows}) == len(rows)
    return {sha: photo_id for photo_id, sha, _ in rows}


def check_outputs(data_dir: Path, photo_ids: set[int]) -> None:
    names = {f"{o.name}.{o.format}" if o.format != "jpeg" else f"{o.name}.jpg" for o in DEFAULT_OUTPUTS}
    for bucket in (data_dir / "variants").iterdir():
        for photo_dir in bucket.iterdir():
            assert photo_dir.name.isdigit() and int(photo_dir.name) in photo_ids, f"orphan outputs: {photo_dir}"
            assert bucket.name == f"{int(photo_dir.name) % 256:02x}"
    for photo_id in photo_ids:
        photo_dir = data_dir / "variants" / f"{photo_id % 256:02x}" / str(photo_id)
        assert {p.name for p in photo_dir.iterdir()} == names, photo_id
        for name in names:
            with Image.open(photo_dir / name) as image:
                image.load()
    outputs = read_db(data_dir, "SELECT photo_id, count(*) FROM outputs GROUP BY photo_id")
    assert dict(outputs) == {photo_id: len(names) for photo_id in photo_ids}
    assert [p for p in data_dir.rglob("*.tmp")] == []


def make_files(rng: random.Random) -> list[tuple[str, bytes]]:
    files = []
    for i in range(PHOTOS):
        width = rng.randrange(320, 801)
        height = rng.randrange(240, 601)
        files.append((f"IMG_{i:04d}.jpg", jpeg(width, height, seed=rng.randrange(1 << 30))))
    return files


async def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path):
    print(f"\nchaos seed {SEED} (PHOTOQ_CHAOS_SEED={SEED} replays this run)")
    rng = random.Random(SEED)
    files = make_files(rng)
    run = Run(files, [hashlib.sha256(data).hexdigest() for _, data in files])
    assert len(set(run.shas)) == PHOTOS
    # Kill moments: two or three while photos are being accepted (after the n-th 202), the rest while they are
    # processed (after the n-th photo is complete; thumbnails of the whole queue come first, so photos complete
    # mostly after the uploads are done).
    during_ingest = rng.choice([2, 3])
    thresholds = [("accepted", n) for n in sorted(rng.sample(range(10, PHOTOS - 10), during_ingest))]
    thresholds += [("complete", n) for n in sorted(rng.sample(range(10, PHOTOS - 10), KILLS - during_ingest))]
    batches = []
    index = 0
    while index < PHOTOS:
        size = rng.choice([1, 1, 2, 3])
        batches.append(list(range(index, min(index + size, PHOTOS))))
        index += size

    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, workers=2)
    server.start()
    up = asyncio.Event()
    up.set()
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession(base_url=server.url,
                                         connector=aiohttp.TCPConnector(limit=CONNECTIONS + 2)) as session:
            async with session.post("/api/albums", json={"name": "Chaos"}, headers=AUTH) as r:
                album = (await r.json())["id"]
            pending: asyncio.Queue[list[int]] = asyncio.Queue()
            for batch in batches:
                pending.put_nowait(batch)
            all_accepted = asyncio.Event()
            complete = {"count": 0}

            async def uploader() -> None:
                while not all_accepted.is_set():
                    try:
                        batch = await asyncio.wait_for(pending.get(), 0.2)
                    except TimeoutError:
                        continue
                    await up.wait()
                    run.in_flight.update(batch)
                    try:
                        async with session.post(f"/api/albums/{album}/photos", headers=AUTH,
                                                data=multipart(*[files[i] for i in batch]),
                                                timeout=aiohttp.ClientTimeout(total=60)) as r:
                            status, body = r.status, await r.json()
                    except (aiohttp.ClientError, ConnectionError, TimeoutError):
                        run.retried_after_kill += len(batch)
                        pending.put_nowait(batch)  # the answer was lost: send the same files again
                        await asyncio.sleep(0.05)
                        continue
                    finally:
                        run.in_flight.difference_update(batch)
                    if status in (429, 503):
                        pending.put_nowait(batch)
                        await asyncio.sleep(1)
                        continue
                    assert status in (200, 202), (status, body)
                    run.record(batch, body["photos"])
                    if len(run.photo_id) == PHOTOS:
                        all_accepted.set()

            async def chaos_monkey() -> None:
                for kind, threshold in thresholds:
                    while (len(run.photo_id) if kind == "accepted" else complete["count"]) < threshold:
                        try:
                            async with session.get("/api/stats", headers=AUTH) as r:
                                complete["count"] = (await r.json())["complete"]
                        except (aiohttp.ClientError, ConnectionError):
                            pass
                        await asyncio.sleep(0.1)
                    up.clear()
                    in_flight = set(run.in_flight)
                    moment = {"after": f"{threshold} {kind}", "accepted": len(run.photo_id),
                              "complete": complete["count"], "in_flight": len(in_flight),
                              "t": round(time.monotonic() - started, 1)}
                    server.kill9()
                    await asyncio.to_thread(server.start)
                    # Recovery is done before the server listens: rows and originals match one to one, every
                    # original is whole, nothing temporary is left. An upload cut off by the kill is all or nothing.
                    stored = check_store(data_dir)
                    moment["in_flight_stored"] = sum(run.shas[i] in stored for i in in_flight)
                    run.kills.append(moment)
                    print(f"kill {len(run.kills)}: {moment}")
                    up.set()

            await asyncio.gather(chaos_monkey(), *(uploader() for _ in range(CONNECTIONS)))

            ids = list(run.photo_id.values())
            await wait_for_photos(session, ids, timeout=180)
            async with session.get(f"/api/albums/{album}/photos?limit=500", headers=AUTH) as r:
                photos = (await r.json())["photos"]
    finally:
        server.stop()

    print(f"{len(run.kills)} kills, {run.retried_after_kill} uploads sent again, "
          f"{time.monotonic() - started:.1f}s")
    assert len(run.kills) == KILLS
    assert any(k["accepted"] < PHOTOS for k in run.kills), "no kill landed during ingest"
    assert any(0 < k["complete"] < PHOTOS for k in run.kills), "no kill landed during processing"

    # Every file that got a 202 is one photo, complete, with its own bytes; none twice.
    assert sorted(run.photo_id) == list(range(PHOTOS))
    assert len(set(run.photo_id.values())) == PHOTOS
    assert len(photos) == PHOTOS and all(p["processing_status"] == "complete" for p in photos)
    by_id = {p["id"]: p for p in photos}
    for index, photo_id in run.photo_id.items():
        assert by_id[photo_id]["sha256"] == run.shas[index]
        assert by_id[photo_id]["filename"] == files[index][0]
    sha_to_id = check_store(data_dir)
    assert set(sha_to_id) == set(run.shas)
    check_outputs(data_dir, set(sha_to_id.values()))
    assert read_db(data_dir, "SELECT status, count(*) FROM jobs GROUP BY status") == [("complete", 2 * PHOTOS)]
