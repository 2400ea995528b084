"""Live progress over SSE: initial stats, photo events, coalesced stats changes, filters, and no leaks."""

from __future__ import annotations

import asyncio
import time

from photoq.web import sse
from photoq.web.keys import EVENTS

from .support import AUTH, SseReader, jpeg, multipart


async def test_stream_sends_stats_then_photo_events_and_stats_changes(client, album):
    async with client.get("/api/events", headers=AUTH) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        reader = SseReader(response)
        first = await reader.next()
        assert first.name == "stats"
        assert first.data == {"pending": 0, "processing": 0, "complete": 0, "failed": 0, "total": 0, "eta_seconds": 0,
                              "batches": []}

        async with client.post(f"/api/albums/{album}/photos", data=multipart(("a.jpg", jpeg(seed=50))),
                               headers=AUTH) as r:
            photo_id = (await r.json())["photos"][0]["id"]

        events, ids = [], [first.id]
        while not any(e.name == "stats" and e.data["complete"] == 1 for e in events):
            event = await reader.next()
            events.append(event)
            ids.append(event.id)
        assert ids == sorted(ids) and len(set(ids)) == len(ids), "ids must increase"
        photo_events = [e.data for e in events if e.name == "photo"]
        assert all(set(e) == {"id", "album_id", "processing_status", "thumbnail_status", "variant_status", "error",
                              "thumbhash"}
                   for e in photo_events)
        assert photo_events[0]["id"] == photo_id and photo_events[0]["processing_status"] == "pending"
        assert photo_events[-1]["processing_status"] == "complete"
        assert "processing" in [e["processing_status"] for e in photo_events]
        stats = [e.data for e in events if e.name == "stats"]
        assert stats[-1] == {"pending": 0, "processing": 0, "complete": 1, "failed": 0, "total": 1, "eta_seconds": 0,
                             "batches": []}
        # While it ran, the album's batch was listed: 0 of 1 done.
        running = next(s for s in stats if s["batches"])
        assert [(b["album_id"], b["total"], b["done"], b["finished"]) for b in running["batches"]] == \
            [(album, 1, 0, False)]


async def test_album_filter_only_sends_that_albums_events(client, album):
    async with client.post("/api/albums", json={"name": "Other"}, headers=AUTH) as r:
        other = (await r.json())["id"]
    async with client.get(f"/api/events?album_id={other}", headers=AUTH) as response:
        reader = SseReader(response)
        assert (await reader.next()).data["total"] == 0
        await client.post(f"/api/albums/{album}/photos", data=multipart(("a.jpg", jpeg(seed=51))), headers=AUTH)
        async with client.post(f"/api/albums/{other}/photos", data=multipart(("b.jpg", jpeg(seed=52))),
                               headers=AUTH) as r:
            other_photo = (await r.json())["photos"][0]["id"]
        while True:
            event = await reader.next()
            if event.name == "photo":
                assert event.data["album_id"] == other and event.data["id"] == other_photo
            else:
                assert event.data["total"] == 1  # counted over this album only
            if event.name == "stats" and event.data["complete"] == 1:
                break


async def test_stats_events_are_coalesced(client, album):
    """Twenty photos make well over a hundred status changes; stats go out at most about 4 times a second."""
    async with client.get("/api/events", headers=AUTH) as response:
        reader = SseReader(response)
        await reader.next()
        started = time.monotonic()
        files = [(f"{i}.jpg", jpeg(96, 64, seed=300 + i)) for i in range(20)]
        await client.post(f"/api/albums/{album}/photos", data=multipart(*files), headers=AUTH)
        photo_events = stats_events = 0
        while True:
            event = await reader.next()
            if event.name == "photo":
                photo_events += 1
            else:
                stats_events += 1
                if event.data["complete"] == 20:
                    break
        elapsed = time.monotonic() - started
        assert photo_events >= 20 * 4
        # A structural bound (one per 0.25 s interval, plus the first), not a speed requirement.
        assert stats_events <= elapsed / 0.25 + 2


async def test_heartbeat_comments_keep_idle_streams_alive(client, monkeypatch):
    monkeypatch.setattr(sse, "PING_SECONDS", 0.2)
    async with client.get("/api/events", headers=AUTH) as response:
        reader = SseReader(response)
        await reader.next()
        line = await asyncio.wait_for(response.content.readline(), 5)
        assert line == b": ping\n"


async def test_clients_that_go_away_leave_no_subscription_behind(client, album):
    broadcaster = client.app[EVENTS]
    before = broadcaster.subscriber_count
    responses = []
    for _ in range(5):
        response = await client.get("/api/events", headers=AUTH)
        await SseReader(response).next()
        responses.append(response)
    assert broadcaster.subscriber_count == before + 5
    tasks_before = len(asyncio.all_tasks())
    for response in responses:
        response.close()
    deadline = time.monotonic() + 10
    while broadcaster.subscriber_count != before:
        assert time.monotonic() < deadline, "subscriptions of closed clients were not dropped"
        await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) <= tasks_before
    # Events still flow to new clients afterwards.
    async with client.get("/api/events", headers=AUTH) as response:
        assert (await SseReader(response).next()).name == "stats"


async def test_pause_resume_and_clearing_are_announced_to_every_stream(client, album):
    async with client.get(f"/api/events?album_id={album}", headers=AUTH) as response:
        reader = SseReader(response)
        await reader.next()
        seen = []
        for action in ("pause", "resume"):
            await client.post(f"/api/admin/queue/{action}", headers=AUTH)
            event = await reader.next()
            assert event.name == "queue"
            seen.append(event.data)
        await client.delete("/api/admin/queue/failed", headers=AUTH)
        cleared = await reader.next()
    assert seen == [{"paused": True, "circuit_breaker": "closed"}, {"paused": False, "circuit_breaker": "closed"}]
    assert cleared.name == "queue" and cleared.data["paused"] is False
