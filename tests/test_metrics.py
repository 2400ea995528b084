"""GET /metrics: Prometheus text format, read back with prometheus-client's own parser, from a real app."""

from __future__ import annotations

import asyncio
import time

from prometheus_client.parser import text_string_to_metric_families

from photoq.web.keys import STORAGE

from .support import AUTH, SseReader, jpeg, multipart, wait_for_photos


async def scrape(client, headers=AUTH) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) -> value."""
    async with client.get("/metrics", headers=headers) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await r.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape_until(client, predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(client)
        if predicate(samples):
            return samples
        assert time.monotonic() < deadline, "the metrics never got there"
        await asyncio.sleep(0.05)


async def make_album(client) -> int:
    async with client.post("/api/albums", json={"name": "M"}, headers=AUTH) as r:
        assert r.status == 201
        return (await r.json())["id"]


async def upload(client, album, *files) -> list[int]:
    async with client.post(f"/api/albums/{album}/photos", data=multipart(*files), headers=AUTH) as r:
        assert r.status == 202, await r.text()
        return [p["id"] for p in (await r.json())["photos"] if p["status"] == "pending"]


async def test_metrics_need_the_token_by_default(client):
    async with client.get("/metrics") as r:
        assert r.status == 401
        assert (await r.json())["error"] == "unauthorized"
    async with client.get("/metrics", headers={"Authorization": "Bearer not-the-token-but-long-enough"}) as r:
        assert r.status == 401
    samples = await scrape(client)
    assert value(samples, "photoq_jobs", state="pending") == 0
    assert value(samples, "photoq_circuit_breaker_state", state="closed") == 1
    assert value(samples, "photoq_queue_paused") == 0


async def test_public_metrics_need_no_token(start_client):
    client = await start_client(metrics={"public": True})
    samples = await scrape(client, headers={})
    assert ("photoq_photos", frozenset({("status", "complete")})) in samples
    async with client.get("/api/albums") as r:  # only /metrics is opened
        assert r.status == 401


async def test_processed_uploads_show_durations_photos_and_bytes(client):
    album = await make_album(client)
    files = [("a.jpg", jpeg(seed=1)), ("b.jpg", jpeg(seed=2, width=800))]
    ids = await upload(client, album, *files)
    assert len(ids) == 2
    await wait_for_photos(client, ids)

    samples = await scrape(client)
    assert value(samples, "photoq_photos", status="complete") == 2
    assert value(samples, "photoq_photos", status="pending") == 0
    assert value(samples, "photoq_jobs", state="complete") == 4
    assert value(samples, "photoq_jobs", state="pending") == 0
    for kind in ("thumbnail", "variant"):
        assert value(samples, "photoq_job_duration_seconds_count", kind=kind, outcome="complete") == 2
        assert value(samples, "photoq_job_duration_seconds_sum", kind=kind, outcome="complete") > 0
        assert value(samples, "photoq_job_failures_total", kind=kind) == 0
    assert value(samples, "photoq_ingested_bytes_total") == sum(len(data) for _, data in files)
    assert value(samples, "photoq_ingested_photos_total") == 2

    # A duplicate is not ingested again.
    async with client.post(f"/api/albums/{album}/photos", data=multipart(files[0]), headers=AUTH) as r:
        assert r.status == 200
    samples = await scrape(client)
    assert value(samples, "photoq_ingested_bytes_total") == sum(len(data) for _, data in files)


async def test_a_failing_job_shows_retries_and_failures(start_client):
    client = await start_client(queue={"max_attempts": 2, "breaker_threshold": 100})
    album = await make_album(client)
    await client.post("/api/admin/queue/pause", headers=AUTH)
    assert value(await scrape(client), "photoq_queue_paused") == 1
    [photo_id] = await upload(client, album, ("a.jpg", jpeg(seed=40)))
    async with client.get(f"/api/photos/{photo_id}", headers=AUTH) as r:
        photo = await r.json()
    original = client.app[STORAGE].original_path(photo["sha256"], photo["content_type"].split("/")[1])
    original.rename(original.with_name("moved-away"))  # a real cause of failure: the file is gone
    await client.post("/api/admin/queue/resume", headers=AUTH)

    samples = await scrape_until(client, lambda s: value(s, "photoq_jobs", state="failed") == 2)
    assert value(samples, "photoq_queue_paused") == 0
    assert value(samples, "photoq_photos", status="failed") == 1
    for kind in ("thumbnail", "variant"):
        assert value(samples, "photoq_job_retries_total", kind=kind) == 1
        assert value(samples, "photoq_job_failures_total", kind=kind) == 1
        assert value(samples, "photoq_job_duration_seconds_count", kind=kind, outcome="retry") == 1
        assert value(samples, "photoq_job_duration_seconds_count", kind=kind, outcome="failed") == 1
        assert value(samples, "photoq_job_duration_seconds_count", kind=kind, outcome="complete") == 0
    assert value(samples, "photoq_circuit_breaker_state", state="closed") == 1


async def test_the_sse_clients_gauge_counts_open_event_streams(client):
    assert value(await scrape(client), "photoq_sse_clients") == 0
    async with client.get("/api/events", headers=AUTH) as response:
        await SseReader(response).next()  # subscribed: the initial stats came
        assert value(await scrape(client), "photoq_sse_clients") == 1
    await scrape_until(client, lambda s: value(s, "photoq_sse_clients") == 0, timeout=10)
