"""Ids are never reused and only the lease that claimed a job records its result (issue: a deleted photo's outputs
appeared under a new photo that reused its id)."""

from __future__ import annotations

import asyncio
import io

from PIL import Image

from photoq.db import Database
from photoq.models import NewPhoto, OutputFile, Status

from .support import AUTH, multipart, noisy_png, until, wait_for_photos
from .test_tus import create, patch


def new_photo(sha: str = "a" * 64) -> NewPhoto:
    return NewPhoto("p.jpg", sha, 10, 640, 480, "jpeg", "image/jpeg", None)


def output(name: str = "thumb-150", sha: str = "a" * 64) -> OutputFile:
    return OutputFile(name, 150, 113, 999, format="webp", spec="webp 150", source_sha256=sha)


async def open_db(tmp_path) -> Database:
    db = Database(tmp_path / "photoq.db")
    await db.open()
    return db


async def test_deleted_albums_photos_and_jobs_never_give_their_ids_to_new_rows(tmp_path):
    db = await open_db(tmp_path)
    try:
        first = await db.create_album("A", 1.0)
        [(photo_id, _)] = await db.insert_photos(first.id, [new_photo()], [], 1.0, 3)
        claimed, _ = await db.claim_jobs(2.0, 60.0, 2)
        job_ids = {c.job.id for c in claimed}
        assert await db.delete_album(first.id, _nothing)  # the newest album, photo, jobs and attempts go

        second = await db.create_album("B", 3.0)
        [(new_photo_id, _)] = await db.insert_photos(second.id, [new_photo()], [], 3.0, 3)
        again, _ = await db.claim_jobs(4.0, 60.0, 2)
        assert second.id > first.id and new_photo_id > photo_id
        assert min(c.job.id for c in again) > max(job_ids)
        assert {a.job_id for a in await db.photo_attempts(new_photo_id)}.isdisjoint(job_ids)
    finally:
        await db.close()


async def _nothing(*_):
    return None


async def test_a_lease_that_expired_and_was_claimed_again_cannot_record_its_result(tmp_path):
    db = await open_db(tmp_path)
    try:
        album = await db.create_album("A", 1.0)
        [(photo_id, _)] = await db.insert_photos(album.id, [new_photo()], [], 1.0, 3)
        [old], _ = await db.claim_jobs(2.0, 3.0, 1)
        assert old.job.kind == "thumbnail" and old.job.lease_token

        # The lease runs out (the worker hung); the sweep counts the attempt as failed and the job runs again.
        [expired] = await db.expired_leases(4.0)
        assert expired.lease_token == old.job.lease_token
        assert await db.fail_job(expired, "lease expired", retry_at=4.0, now=4.0) is not None
        [new], _ = await db.claim_jobs(5.0, 10.0, 1)
        assert new.job.id == old.job.id and new.job.lease_token != old.job.lease_token

        # The old holder wakes up: it can neither extend, fail, release nor complete the job.
        await db.renew_leases([(old.job.id, old.job.lease_token)], 1000.0)
        [running] = await db.list_jobs(Status.PROCESSING, 10)
        assert running.lease_expires_at == 10.0
        assert await db.fail_job(old.job, "late", retry_at=None, now=6.0) is None
        assert await db.release_job(old.job, 6.0) is None
        assert await db.complete_job(old.job, [output()], 6.0) is None
        assert await db.photo_outputs(photo_id) == {}

        # The new holder records its result.
        await db.renew_leases([(new.job.id, new.job.lease_token)], 20.0)
        state = await db.complete_job(new.job, [output()], 7.0)
        assert state is not None and state.thumbnail_status == "complete"
        assert (await db.photo_outputs(photo_id))["thumb-150"].source_sha256 == "a" * 64
    finally:
        await db.close()


async def test_a_released_and_reclaimed_job_fences_the_old_lease_though_the_attempt_number_repeats(tmp_path):
    db = await open_db(tmp_path)
    try:
        album = await db.create_album("A", 1.0)
        [(photo_id, _)] = await db.insert_photos(album.id, [new_photo()], [], 1.0, 3)
        [old], _ = await db.claim_jobs(2.0, 30.0, 1)
        assert await db.release_job(old.job, 3.0) is not None  # shutdown gives it back, attempt refunded
        [new], _ = await db.claim_jobs(4.0, 30.0, 1)
        assert new.job.attempts == old.job.attempts == 1  # the numbers repeat; the token does not
        assert await db.complete_job(old.job, [output()], 5.0) is None
        assert await db.complete_job(new.job, [output()], 5.0) is not None
    finally:
        await db.close()


# -- the reproduction, on a real server with real image processes -----------------------------------------------------


def solid_jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


async def test_a_photo_deleted_while_its_thumbnail_renders_never_shows_under_a_new_upload(client, album):
    async with client.post(f"/api/albums/{album}/photos", data=multipart(("big.png", noisy_png(5000, 5000))),
                           headers=AUTH) as r:
        assert r.status == 202, await r.text()
        [big] = [p["id"] for p in (await r.json())["photos"]]

    async def rendering() -> bool:
        async with client.get(f"/api/photos/{big}", headers=AUTH) as r:
            return (await r.json())["thumbnail_status"] == "processing"

    await until(rendering, timeout=60, what="the big PNG's thumbnail job running")
    async with client.delete(f"/api/photos/{big}", headers=AUTH) as r:
        assert r.status == 204

    red = (220, 20, 20)
    async with client.post(f"/api/albums/{album}/photos", data=multipart(("small.jpg", solid_jpeg(red))),
                           headers=AUTH) as r:
        [small] = [p["id"] for p in (await r.json())["photos"]]
    assert small != big and small > big
    await wait_for_photos(client, [small])
    await asyncio.sleep(1)  # time for the deleted photo's job to finish and be dropped, if it has not yet

    async with client.get(f"/api/photos/{big}", headers=AUTH) as r:
        assert r.status == 404
    async with client.get(f"/api/photos/{big}/file?variant=thumb-150", headers=AUTH) as r:
        assert r.status == 404
    async with client.get(f"/api/photos/{small}", headers=AUTH) as r:
        urls = (await r.json())["urls"]
    for variant, url in urls.items():
        assert "&v=" in url
        async with client.get(url, headers=AUTH) as r:
            assert r.status == 200 and "X-Photoq-Fallback" not in r.headers, variant
            picture = Image.open(io.BytesIO(await r.read())).convert("RGB")
        r_, g, b = picture.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
        assert r_ > 180 and g < 70 and b < 70, (variant, (r_, g, b))  # the red JPEG, not the noise


async def test_a_resumable_upload_for_a_deleted_album_never_lands_in_a_new_album(client):
    ids = []
    for name in ("one", "two", "three"):
        async with client.post("/api/albums", json={"name": name}, headers=AUTH) as r:
            ids.append((await r.json())["id"])
    doomed = ids[-1]
    body = solid_jpeg((10, 200, 10))
    created = await create(client, doomed, len(body))
    assert created.status == 201
    path = created.headers["Location"]
    r = await patch(client, path, 0, body[:100])
    assert r.status == 204

    async with client.delete(f"/api/albums/{doomed}", headers=AUTH) as r:
        assert r.status == 204
    async with client.post("/api/albums", json={"name": "new"}, headers=AUTH) as r:
        newest = (await r.json())["id"]
    assert newest > doomed

    r = await patch(client, path, 100, body[100:])
    assert r.status in (404, 409), (r.status, await r.text())
    async with client.get(f"/api/albums/{newest}/photos", headers=AUTH) as r:
        assert (await r.json())["photos"] == []
