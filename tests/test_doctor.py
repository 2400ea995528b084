"""`photoq doctor [--repair]` on a real data directory damaged for real, beside a running server; and pruning of
finished jobs."""

from __future__ import annotations

import os
import time

import aiohttp
import pytest

from photoq.db import Database
from photoq.web.keys import DB, QUEUE

from .support import AUTH, ServerProcess, jpeg, multipart, wait_for_photos
from .test_cli import photoq


@pytest.fixture
def server(tmp_path):
    server = ServerProcess(tmp_path / "data", workers=1)
    yield server
    server.stop()


def make_old(path, seconds: float = 2 * 3600) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


async def test_doctor_reports_damage_and_repairs_it_beside_a_running_server(server, tmp_path):
    data = tmp_path / "data"
    server.start()
    async with aiohttp.ClientSession(base_url=server.url) as session:
        await session.post("/api/albums", json={"name": "A"}, headers=AUTH)
        async with session.post("/api/albums/1/photos", headers=AUTH, data=multipart(
                *[(f"{i}.jpg", jpeg(seed=200 + i)) for i in range(3)])) as r:
            assert r.status == 202
            ids = [p["id"] for p in (await r.json())["photos"]]
        await wait_for_photos(session, ids)
        photos = {}
        for photo_id in ids:
            async with session.get(f"/api/photos/{photo_id}", headers=AUTH) as r:
                photos[photo_id] = await r.json()

    healthy = photoq("doctor", "--data-dir", str(data), cwd=tmp_path)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "healthy: no problems found" in healthy.stdout

    # Damage, for real.
    lost_original, lost_output, other = ids
    sha = photos[lost_original]["sha256"]
    (data / "originals" / sha[:2] / sha[2:4] / f"{sha}.jpg").unlink()
    variant_dir = lambda photo_id: data / "variants" / f"{photo_id % 256:02x}" / str(photo_id)  # noqa: E731
    thumbs = sorted(p for p in variant_dir(lost_output).iterdir() if p.name.startswith("thumb"))
    assert thumbs
    thumbs[0].unlink()
    orphan_original = data / "originals" / "ab" / "cd" / ("ab" + "cd" + "0" * 60 + ".jpg")
    orphan_original.parent.mkdir(parents=True, exist_ok=True)
    orphan_original.write_bytes(jpeg(seed=999))
    orphan_variants = variant_dir(99999)
    orphan_variants.mkdir(parents=True)
    (orphan_variants / "thumb-150.webp").write_bytes(b"not really")
    stale_partial = variant_dir(other) / ".thumb-150.deadbeef.tmp"
    stale_partial.write_bytes(b"half")
    make_old(stale_partial)
    stale_upload = data / "tmp" / "upload-old.part"
    stale_upload.write_bytes(b"x" * 100)
    make_old(stale_upload)
    young_upload = data / "tmp" / "upload-young.part"  # an upload in flight, as far as doctor can tell
    young_upload.write_bytes(b"y")

    report = photoq("doctor", "--data-dir", str(data), cwd=tmp_path)
    assert report.returncode == 1, report.stdout + report.stderr
    out = report.stdout
    assert f"missing original: photo {lost_original}" in out
    assert f"missing output: photo {lost_output} thumbnail ({thumbs[0].name})" in out
    assert f"orphan original: {orphan_original.relative_to(data)}" in out
    assert f"orphan variant folder: {orphan_variants.relative_to(data)}" in out
    assert f"stale temp file: {stale_partial.relative_to(data)}" in out
    assert f"stale temp file: {stale_upload.relative_to(data)}" in out
    assert "upload-young" not in out and "1 temp file(s) younger" in out
    assert "6 problem(s) found" in out
    # Only a report: nothing was touched.
    assert orphan_original.exists() and orphan_variants.exists() and stale_upload.exists()

    repaired = photoq("doctor", "--repair", "--data-dir", str(data), cwd=tmp_path)
    assert repaired.returncode == 1, repaired.stdout + repaired.stderr  # a lost original cannot be repaired
    out = repaired.stdout
    assert f"missing original: photo {lost_original}" in out and "photo marked failed" in out
    assert f"missing output: photo {lost_output} thumbnail ({thumbs[0].name})  -> thumbnail job re-queued" in out
    assert "6 problem(s) found, 5 repaired, 1 left" in out
    assert not orphan_original.exists() and not orphan_variants.exists()
    assert not stale_partial.exists() and not stale_upload.exists()
    assert young_upload.exists()

    async with aiohttp.ClientSession(base_url=server.url) as session:
        # The running server picks the re-queued job up (within its idle re-check) and writes the thumbnail again.
        await wait_for_photos(session, [lost_output], timeout=90)
        assert thumbs[0].is_file() and thumbs[0].stat().st_size > 0
        async with session.get(f"/api/photos/{lost_original}", headers=AUTH) as r:
            lost = await r.json()
        assert lost["processing_status"] == "failed"
        assert "original file is missing" in lost["error"]
        async with session.get(f"/api/photos/{other}", headers=AUTH) as r:
            assert (await r.json())["processing_status"] == "complete"

    again = photoq("doctor", "--data-dir", str(data), cwd=tmp_path)
    assert again.returncode == 1
    assert "1 problem(s) found" in again.stdout and f"missing original: photo {lost_original}" in again.stdout


def test_doctor_without_a_database_says_so(tmp_path):
    result = photoq("doctor", "--data-dir", str(tmp_path / "none"), cwd=tmp_path)
    assert result.returncode == 1 and "no database" in result.stderr


async def processed_photo(client, seed: int) -> int:
    """A new album with one photo, processed (its two jobs complete); the photo's id."""
    async with client.post("/api/albums", json={"name": "P"}, headers=AUTH) as r:
        album_id = (await r.json())["id"]
    async with client.post(f"/api/albums/{album_id}/photos", headers=AUTH,
                           data=multipart(("a.jpg", jpeg(seed=seed)))) as r:
        photo_id = (await r.json())["photos"][0]["id"]
    await wait_for_photos(client, [photo_id])
    return photo_id


async def test_finished_jobs_are_pruned_and_their_photo_and_history_stay(start_client):
    client = await start_client(queue={"keep_done_days": 30})
    photo_id = await processed_photo(client, seed=300)
    db: Database = client.app[DB]
    assert (await db.job_counts())["complete"] == 2

    # Nothing is old enough yet (the server pruned at start-up, and a cutoff in the past removes nothing) ...
    assert await db.prune_finished_jobs(older_than=time.time() - 30 * 86400) == 0
    # ... and a cutoff in the future stands in for 30 days passing.
    assert await db.prune_finished_jobs(older_than=time.time() + 1) == 2
    assert (await db.job_counts())["complete"] == 0
    async with client.get(f"/api/photos/{photo_id}", headers=AUTH) as r:
        photo = await r.json()
    assert photo["processing_status"] == "complete"
    assert len(await db.photo_attempts(photo_id)) == 2
    assert len(await db.photo_outputs(photo_id)) > 0


async def test_pruning_follows_keep_done_days(start_client):
    client = await start_client(queue={"keep_done_days": 0})
    queue = client.app[QUEUE]
    await processed_photo(client, seed=301)
    queue.clock = lambda: time.time() + 10 * 365 * 86400
    assert await queue.prune_finished_jobs() == 0, "0 keeps finished jobs forever"
    queue.settings = type(queue.settings)(keep_done_days=1)
    assert await queue.prune_finished_jobs() == 2
    assert (await client.app[DB].job_counts())["complete"] == 0


async def test_doctor_finds_and_repairs_outputs_that_are_not_their_photos(client, album, tmp_path):
    """What a reused id left behind before ids were never reused: an output rendered from another picture recorded
    under a photo, and a file in its folder that none of its outputs lists."""
    from .support import jpeg as make_jpeg

    async with client.post(f"/api/albums/{album}/photos", data=multipart(("a.jpg", make_jpeg(640, 480, seed=3))),
                           headers=AUTH) as r:
        [photo_id] = [p["id"] for p in (await r.json())["photos"]]
    await wait_for_photos(client, [photo_id])
    data = client.app[DB].path.parent
    folder = data / "variants" / f"{photo_id % 256:02x}" / str(photo_id)
    import sqlite3

    with sqlite3.connect(data / "photoq.db") as conn:
        # A display variant rendered from a square picture, as an old photo's late job recorded it.
        conn.execute("UPDATE outputs SET width = 1080, height = 1080, source_sha256 = NULL "
                     "WHERE photo_id = ? AND name = 'display-1080x1920'", (photo_id,))
        # A thumbnail that says it was rendered from another original.
        conn.execute("UPDATE outputs SET source_sha256 = ? WHERE photo_id = ? AND name = 'thumb-150'",
                     ("f" * 64, photo_id))
    stray = folder / "thumb-999.webp"
    stray.write_bytes(b"someone else's picture")
    make_old(stray, seconds=10 * 3600)  # written before this photo existed

    report = photoq("doctor", "--data-dir", str(data), cwd=tmp_path)
    assert report.returncode == 1, report.stdout + report.stderr
    assert f"output not of its photo: photo {photo_id} variant (display-1080x1920.webp" in report.stdout
    assert f"output not of its photo: photo {photo_id} thumbnail (thumb-150.webp" in report.stdout
    assert f"stray output file: {stray.relative_to(data)}" in report.stdout

    repaired = photoq("doctor", "--repair", "--data-dir", str(data), cwd=tmp_path)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert not stray.exists()
    await wait_for_photos(client, [photo_id])  # the jobs rendered them again, from this photo
    outputs = await client.app[DB].photo_outputs(photo_id)
    assert outputs["display-1080x1920"].height < outputs["display-1080x1920"].width
    assert outputs["thumb-150"].source_sha256 == outputs["display-1080x1920"].source_sha256 != "f" * 64
    healthy = photoq("doctor", "--data-dir", str(data), cwd=tmp_path)
    assert healthy.returncode == 0, healthy.stdout
