"""An album's batch lives on the server: its work since its last idle moment, the same "n of m" for every page load,
tab and device (GET /api/stats?album_id=, GET /api/albums/{id} "stats", SSE `stats`)."""

from __future__ import annotations

from .hostile import jpeg_header_then_garbage
from .support import AUTH, jpeg, multipart, until


async def get(client, path):
    async with client.get(path, headers=AUTH) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def upload(client, album, *files, batch=None):
    headers = {**AUTH, **({"X-Photoq-Batch": batch} if batch else {})}
    async with client.post(f"/api/albums/{album}/photos", data=multipart(*files), headers=headers) as r:
        assert r.status == 202, await r.text()
        return [p["id"] for p in (await r.json())["photos"]]


async def batch_of(client, album):
    return (await get(client, f"/api/stats?album_id={album}"))["batch"]


async def until_finished(client, album):
    async def finished():
        batch = await batch_of(client, album)
        return batch is not None and batch["finished"]
    await until(finished, 120, "the album's batch to finish")
    return await batch_of(client, album)


async def test_a_batch_counts_its_photos_and_a_new_one_starts_after_an_idle_moment(client, album):
    assert await batch_of(client, album) is None  # nothing uploaded yet
    await client.post("/api/admin/queue/pause", headers=AUTH)
    await upload(client, album, *[(f"{i}.jpg", jpeg(seed=100 + i)) for i in range(3)])
    batch = await batch_of(client, album)
    assert (batch["total"], batch["done"], batch["finished"]) == (3, 0, False)
    # The same numbers for everyone: the album's own stats and the list of running batches say so.
    assert (await get(client, f"/api/albums/{album}"))["stats"]["batch"] == batch
    running = (await get(client, "/api/stats"))["batches"]
    assert [(b["album_id"], b["album_name"], b["total"]) for b in running] == [(album, "Test", 3)]

    await client.post("/api/admin/queue/resume", headers=AUTH)
    batch = await until_finished(client, album)
    assert (batch["total"], batch["done"], batch["complete"], batch["failed"]) == (3, 3, 3, 0)
    assert (await get(client, "/api/stats"))["batches"] == []  # only unfinished batches are listed there

    # Work arriving while the album is idle starts a new batch: "0 of 2", not "3 of 5".
    await client.post("/api/admin/queue/pause", headers=AUTH)
    await upload(client, album, ("4.jpg", jpeg(seed=104)), ("5.jpg", jpeg(seed=105)))
    batch = await batch_of(client, album)
    assert (batch["total"], batch["done"]) == (2, 0)
    await client.post("/api/admin/queue/resume", headers=AUTH)
    assert (await until_finished(client, album))["total"] == 2


async def test_a_slow_upload_stays_one_batch_while_processing_catches_up(client, album):
    key = "slowupload0001"
    await upload(client, album, ("a.jpg", jpeg(seed=110)), batch=key)
    assert (await until_finished(client, album))["total"] == 1
    # The next file of the same selection arrives after the first one was processed: still one batch.
    await upload(client, album, ("b.jpg", jpeg(seed=111)), batch=key)
    batch = await batch_of(client, album)
    assert batch["total"] == 2 and batch["done"] >= 1
    assert (await until_finished(client, album))["done"] == 2
    # Another selection (a new key) after an idle moment is a new batch.
    await upload(client, album, ("c.jpg", jpeg(seed=112)), batch="anotherselection")
    assert (await batch_of(client, album))["total"] == 1


async def test_a_retry_is_a_batch_of_its_own_and_a_failure_is_counted_as_failed(client, album):
    await upload(client, album, ("ok.jpg", jpeg(seed=120)), ("broken.jpg", jpeg_header_then_garbage(seed=121)))
    batch = await until_finished(client, album)
    assert (batch["total"], batch["complete"], batch["failed"]) == (2, 1, 1)
    broken = (await get(client, f"/api/albums/{album}/photos?status=failed"))["photos"][0]["id"]
    async with client.post(f"/api/photos/{broken}/retry", headers=AUTH) as r:
        assert r.status == 202
    batch = await until_finished(client, album)
    # The retried photo alone, failed again: not "2 of 2 processed".
    assert (batch["total"], batch["complete"], batch["failed"]) == (1, 0, 1)


async def test_a_photo_deleted_while_queued_leaves_the_batch(client, album):
    """A photo sent to the trash before it was processed has no jobs left: it must not hold its batch open."""
    await client.post("/api/admin/queue/pause", headers=AUTH)
    kept, deleted = await upload(client, album, ("keep.jpg", jpeg(seed=130)), ("drop.jpg", jpeg(seed=131)))
    assert (await batch_of(client, album))["total"] == 2
    async with client.delete(f"/api/photos/{deleted}", headers=AUTH) as r:
        assert r.status == 204
    assert (await batch_of(client, album))["total"] == 1
    await client.post("/api/admin/queue/resume", headers=AUTH)
    batch = await until_finished(client, album)
    assert (batch["total"], batch["done"], batch["complete"]) == (1, 1, 1)
    assert (await get(client, "/api/stats"))["batches"] == []
