"""The queue's rules seen from outside: retries with backoff, dead letter, manual retry, priority, pause, breaker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from photoq.web.keys import STORAGE, WORKERS

from .support import AUTH, jpeg, multipart, wait_for_photos


async def make_album(client, name="A") -> int:
    async with client.post("/api/albums", json={"name": name}, headers=AUTH) as r:
        return (await r.json())["id"]


async def upload(client, album, *files) -> list[int]:
    async with client.post(f"/api/albums/{album}/photos", data=multipart(*files), headers=AUTH) as r:
        assert r.status == 202, await r.text()
        return [p["id"] for p in (await r.json())["photos"] if p["status"] == "pending"]


async def get(client, path):
    async with client.get(path, headers=AUTH) as r:
        assert r.status == 200, path
        return await r.json()


async def queue_until(client, predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        queue = await get(client, "/api/admin/queue")
        if predicate(queue):
            return queue
        assert time.monotonic() < deadline, f"queue never got there: {queue}"
        await asyncio.sleep(0.05)


def original_of(client, photo) -> Path:
    return client.app[STORAGE].original_path(photo["sha256"], photo["content_type"].split("/")[1])


async def upload_with_originals_gone(client, album, *files) -> tuple[list[int], list[Path]]:
    """Upload while paused, move the stored originals away (a real cause of failure), then resume."""
    await client.post("/api/admin/queue/pause", headers=AUTH)
    ids = await upload(client, album, *files)
    originals = [original_of(client, await get(client, f"/api/photos/{i}")) for i in ids]
    for original in originals:
        original.rename(original.with_suffix(".away"))
    await client.post("/api/admin/queue/resume", headers=AUTH)
    return ids, originals


def put_back(originals: list[Path]) -> None:
    for original in originals:
        original.with_suffix(".away").rename(original)


async def test_a_job_that_keeps_failing_is_retried_with_backoff_then_dead_lettered_and_retry_fixes_it(start_client):
    client = await start_client(queue={"max_attempts": 3, "breaker_threshold": 100})
    album = await make_album(client)
    [photo_id], originals = await upload_with_originals_gone(client, album, ("a.jpg", jpeg(seed=40)))

    final = await wait_for_photos(client, [photo_id], statuses=("failed",))
    await wait_for_photos(client, [photo_id], statuses=("failed",))
    await queue_until(client, lambda q: q["failed_count"] == 2)
    photo = await get(client, f"/api/photos/{photo_id}")
    assert photo["processing_status"] == "failed" and final[photo_id]["error"]
    assert "missing" in photo["error"]

    history = (await get(client, f"/api/photos/{photo_id}/history"))["attempts"]
    for kind in ("thumbnail", "variant"):
        attempts = [a for a in history if a["kind"] == kind]
        assert [a["attempt"] for a in attempts] == [1, 2, 3]
        assert [a["outcome"] for a in attempts] == ["retry", "retry", "failed"]
        for earlier, later in zip(attempts, attempts[1:]):
            # Backoff: each retry was scheduled, and the next attempt did not start before that time.
            assert earlier["retry_at"] is not None
            assert later["started_at"] >= earlier["retry_at"] >= earlier["finished_at"]
    queue = await get(client, "/api/admin/queue?status=failed")
    assert {j["kind"] for j in queue["jobs"]} == {"thumbnail", "variant"}
    assert all(j["attempts"] == j["max_attempts"] == 3 and j["error"] for j in queue["jobs"])

    put_back(originals)
    async with client.post(f"/api/photos/{photo_id}/retry", headers=AUTH) as r:
        assert r.status == 202
    await wait_for_photos(client, [photo_id])
    photo = await get(client, f"/api/photos/{photo_id}")
    assert photo["processing_status"] == "complete" and photo["error"] is None
    async with client.post(f"/api/photos/{photo_id}/retry", headers=AUTH) as r:
        assert r.status == 409


async def test_every_thumbnail_runs_before_any_variant_with_one_worker(start_client):
    client = await start_client(processing={"workers": 1})
    album = await make_album(client)
    await client.post("/api/admin/queue/pause", headers=AUTH)
    ids = await upload(client, album, *[(f"{i}.jpg", jpeg(320, 240, seed=100 + i)) for i in range(8)])
    await client.post("/api/admin/queue/resume", headers=AUTH)
    await wait_for_photos(client, ids)
    attempts = []
    for photo_id in ids:
        attempts += (await get(client, f"/api/photos/{photo_id}/history"))["attempts"]
    attempts.sort(key=lambda a: a["started_at"])
    kinds = [a["kind"] for a in attempts]
    assert kinds == ["thumbnail"] * 8 + ["variant"] * 8


async def test_pause_stops_new_claims_and_resume_continues(client, album):
    paused = await (await client.post("/api/admin/queue/pause", headers=AUTH)).json()
    assert paused["paused"] is True
    [photo_id] = await upload(client, album, ("a.jpg", jpeg(seed=41)))
    # An observation window, not a timing assertion: with workers idle, nothing may start while paused.
    await asyncio.sleep(1.0)
    queue = await get(client, "/api/admin/queue")
    assert queue["paused"] is True and queue["queue_size"] == 2 and queue["processing_count"] == 0
    assert (await get(client, f"/api/photos/{photo_id}"))["processing_status"] == "pending"
    assert queue["oldest_job_age_seconds"] >= 0.5
    resumed = await (await client.post("/api/admin/queue/resume", headers=AUTH)).json()
    assert resumed["paused"] is False
    await wait_for_photos(client, [photo_id])


async def test_retry_all_failed_and_clear_failed(start_client):
    client = await start_client(queue={"max_attempts": 1, "breaker_threshold": 100})
    album = await make_album(client)
    ids, originals = await upload_with_originals_gone(client, album, ("a.jpg", jpeg(seed=42)), ("b.jpg", jpeg(seed=43)))
    await queue_until(client, lambda q: q["failed_count"] == 4)

    async with client.delete("/api/admin/queue/failed", headers=AUTH) as r:
        assert await r.json() == {"cleared": 4}
    queue = await get(client, "/api/admin/queue")
    assert queue["failed_count"] == 0
    for photo_id in ids:
        assert (await get(client, f"/api/photos/{photo_id}"))["processing_status"] == "failed"

    put_back(originals)
    async with client.post("/api/admin/queue/retry-failed", headers=AUTH) as r:
        assert await r.json() == {"requeued": 4}
    await wait_for_photos(client, ids)


async def test_consecutive_system_failures_open_the_circuit_breaker(start_client):
    client = await start_client(
        processing={"workers": 1}, queue={"breaker_threshold": 2, "breaker_cooldown_seconds": 2, "max_attempts": 5},
    )
    album = await make_album(client)
    ids, originals = await upload_with_originals_gone(client, album, ("a.jpg", jpeg(seed=44)), ("b.jpg", jpeg(seed=45)))

    queue = await queue_until(client, lambda q: q["circuit_breaker"]["state"] == "open")
    assert queue["circuit_breaker"]["consecutive_failures"] >= 2
    assert "missing" in queue["circuit_breaker"]["last_error"]
    assert queue["failed_count"] == 0  # the breaker saved the remaining attempts

    put_back(originals)
    await wait_for_photos(client, ids)
    queue = await get(client, "/api/admin/queue")
    assert queue["circuit_breaker"]["state"] == "closed"


async def test_deleting_a_photo_removes_its_files_and_jobs(client, album):
    await client.post("/api/admin/queue/pause", headers=AUTH)
    [photo_id] = await upload(client, album, ("a.jpg", jpeg(seed=46)))
    photo = await get(client, f"/api/photos/{photo_id}")
    async with client.delete(f"/api/photos/{photo_id}", headers=AUTH) as r:
        assert r.status == 204
    async with client.get(f"/api/photos/{photo_id}", headers=AUTH) as r:
        assert r.status == 404
    assert (await get(client, "/api/admin/queue"))["queue_size"] == 0
    async with client.delete(f"/api/photos/{photo_id}", headers=AUTH) as r:
        assert r.status == 404
    # In the trash its original waits (a restore brings it back); emptying the trash removes it.
    assert original_of(client, photo).exists()
    async with client.delete("/api/trash", headers=AUTH) as r:
        assert r.status == 200
    assert not original_of(client, photo).exists()


async def test_listing_photos_pages_with_a_cursor_and_filters_by_status(client, album):
    ids = await upload(client, album, *[(f"{i}.jpg", jpeg(64, 64, seed=200 + i)) for i in range(5)])
    first = await get(client, f"/api/albums/{album}/photos?limit=2")
    assert [p["id"] for p in first["photos"]] == ids[:2] and first["next"] is not None
    second = await get(client, f"/api/albums/{album}/photos?limit=2&after={first['next']}")
    assert [p["id"] for p in second["photos"]] == ids[2:4]
    third = await get(client, f"/api/albums/{album}/photos?limit=2&after={second['next']}")
    assert [p["id"] for p in third["photos"]] == ids[4:] and third["next"] is None
    await wait_for_photos(client, ids)
    assert len((await get(client, f"/api/albums/{album}/photos?status=complete"))["photos"]) == 5
    assert (await get(client, f"/api/albums/{album}/photos?status=failed"))["photos"] == []
    async with client.get(f"/api/albums/{album}/photos?status=bogus", headers=AUTH) as r:
        assert r.status == 400
    async with client.get(f"/api/albums/{album}/photos?limit=0", headers=AUTH) as r:
        assert r.status == 400
    albums = await get(client, "/api/albums")
    assert albums["albums"][0]["photo_count"] == 5 and albums["albums"][0]["processing"] is False
    detail = await get(client, f"/api/albums/{album}")
    batch = detail["stats"].pop("batch")
    assert detail["stats"] == {"pending": 0, "processing": 0, "complete": 5, "failed": 0, "total": 5, "eta_seconds": 0}
    assert (batch["album_id"], batch["total"], batch["done"], batch["finished"]) == (album, 5, 5, True)


async def test_a_job_over_the_time_limit_is_stopped_and_failed(start_client):
    client = await start_client(processing={"workers": 1, "job_timeout_seconds": 0.01},
                                queue={"max_attempts": 1})
    album = await make_album(client)
    [photo_id] = await upload(client, album, ("a.jpg", jpeg(3000, 2000, seed=47)))
    await queue_until(client, lambda q: q["failed_count"] == 2)
    photo = await get(client, f"/api/photos/{photo_id}")
    assert photo["processing_status"] == "failed"
    assert "took longer than" in photo["error"]
    assert client.app[WORKERS].child_pids() == []  # the stuck process was killed, a new one starts with the next job
