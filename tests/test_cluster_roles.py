"""Cluster mode in one process: node roles, the nodes registry, the shared pause switch, expired leases taken back
without a restart, and a database outage answered with 503.

Several apps here share one SQLite file, as nodes share one database: the queue rules above the Store are the same
for both backends (the PostgreSQL runs with real `photoq serve` processes are in test_cluster_processes.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from photoq.app import create_app
from photoq.cluster import FORGET_AFTER_SECONDS, SILENT_AFTER_SECONDS
from photoq.models import Node
from photoq.web.keys import CLUSTER, DB, QUEUE, STORAGE, WORKERS

from .conftest import make_settings
from .support import AUTH, jpeg, multipart, until

QUICK = {"lease_seconds": 2.0, "sweep_interval_seconds": 0.2}  # heartbeats every 0.5 s


async def start_node(aiohttp_client, data_dir, role: str, workers: int = 1, **sections):
    # Polled often by these tests: no rate limit (it is per node, and tested on its own).
    settings = make_settings(data_dir, server={"role": role}, processing={"workers": workers},
                             queue={**QUICK, **sections.pop("queue", {})}, ratelimit={"enabled": False}, **sections)
    return await aiohttp_client(create_app(settings))


async def new_album(client) -> int:
    async with client.post("/api/albums", json={"name": "Cluster"}, headers=AUTH) as r:
        assert r.status == 201
        return (await r.json())["id"]


async def upload(client, album: int, count: int, first_seed: int = 0) -> list[int]:
    files = [(f"p{i}.jpg", jpeg(320, 240, seed=first_seed + i)) for i in range(count)]
    async with client.post(f"/api/albums/{album}/photos", data=multipart(*files), headers=AUTH) as r:
        assert r.status == 202, await r.text()
        return [p["id"] for p in (await r.json())["photos"]]


async def statuses(client, photo_ids) -> list[str]:
    found = []
    for photo_id in photo_ids:
        async with client.get(f"/api/photos/{photo_id}", headers=AUTH) as r:
            body = await r.json()
            assert r.status == 200, body
            found.append(body["processing_status"])
    return found


async def queue_object(client) -> dict:
    async with client.get("/api/admin/queue", headers=AUTH) as r:
        assert r.status == 200
        return await r.json()


async def test_a_worker_node_answers_only_health_and_metrics(aiohttp_client, tmp_path):
    worker = await start_node(aiohttp_client, tmp_path / "data", "worker", workers=2)
    async with worker.get("/healthz") as r:
        assert r.status == 200 and await r.json() == {"status": "ok"}
    async with worker.get("/metrics", headers=AUTH) as r:
        assert r.status == 200 and "photoq_" in await r.text()
    async with worker.get("/metrics") as r:
        assert r.status == 401  # still behind the token unless [metrics] public
    for path in ("/api/albums", "/api/admin/queue", "/api/events", "/", "/queue", "/login", "/static/photoq.css"):
        async with worker.get(path, headers=AUTH, allow_redirects=False) as r:
            assert r.status == 404, path
    async with worker.post("/api/albums", json={"name": "x"}, headers=AUTH) as r:
        assert r.status in (404, 405)
    assert worker.app[WORKERS].size == 2


async def test_a_web_node_takes_uploads_and_renders_nothing(aiohttp_client, tmp_path):
    web = await start_node(aiohttp_client, tmp_path / "data", "web", workers=3)
    assert WORKERS not in web.app  # no worker pool, so no image process is ever started
    album = await new_album(web)
    ids = await upload(web, album, 2)
    queue = await queue_object(web)
    assert queue["queue_size"] == 4 and queue["processing_count"] == 0
    [node] = queue["nodes"]
    assert node["role"] == "web" and node["workers"] == 0 and node["busy"] == 0 and node["state"] == "live"
    assert set(node) >= {"id", "host", "role", "workers", "busy", "last_seen"}
    assert await statuses(web, ids) == ["pending", "pending"]


async def test_web_and_worker_nodes_share_the_queue_and_the_pause_switch(aiohttp_client, tmp_path):
    data = tmp_path / "data"
    web = await start_node(aiohttp_client, data, "web")
    worker = await start_node(aiohttp_client, data, "worker", workers=2)
    album = await new_album(web)

    ids = await upload(web, album, 3)
    await until(lambda: _all_complete(web, ids), timeout=120, what="the worker node to process the web node's uploads")

    nodes = (await queue_object(web))["nodes"]
    assert sorted((n["role"], n["workers"]) for n in nodes) == [("web", 0), ("worker", 2)]
    assert [n["this_node"] for n in nodes if n["role"] == "web"] == [True]

    # Pause on the web node: the worker node reads the switch from the database and starts nothing new.
    async with web.post("/api/admin/queue/pause", headers=AUTH) as r:
        assert r.status == 200 and (await r.json())["paused"] is True
    await until(lambda: worker.app[QUEUE].paused, timeout=30, what="the worker node to see the pause")
    held = await upload(web, album, 2, first_seed=10)
    await _heartbeats(worker, 3)  # the worker node has looked at the queue several times since
    assert await statuses(web, held) == ["pending", "pending"]
    assert (await queue_object(web))["processing_count"] == 0

    async with web.post("/api/admin/queue/resume", headers=AUTH) as r:
        assert r.status == 200 and (await r.json())["paused"] is False
    await until(lambda: _all_complete(web, held), timeout=120, what="the held photos after resume")


async def test_a_dead_nodes_expired_lease_is_taken_back_without_a_restart(aiohttp_client, tmp_path):
    node = await start_node(aiohttp_client, tmp_path / "data", "all")
    db = node.app[DB]
    async with node.post("/api/admin/queue/pause", headers=AUTH) as r:
        assert r.status == 200
    album = await new_album(node)
    [photo_id] = await upload(node, album, 1)
    # Another node claims the thumbnail job and dies: its lease is never renewed.
    now = time.time()
    claimed, _ = await db.claim_jobs(now, now + 1.0, 1)
    assert [c.job.photo_id for c in claimed] == [photo_id]
    async with node.post("/api/admin/queue/resume", headers=AUTH) as r:
        assert r.status == 200

    await until(lambda: _all_complete(node, [photo_id]), timeout=120, what="the orphaned job to run here")
    async with node.get(f"/api/photos/{photo_id}/history", headers=AUTH) as r:
        attempts = (await r.json())["attempts"]
    thumbnail = [a for a in attempts if a["kind"] == "thumbnail"]
    assert [a["outcome"] for a in thumbnail] == ["retry", "complete"]
    assert "lease expired" in thumbnail[0]["error"]


async def test_a_silent_node_is_shown_as_such_then_dropped(aiohttp_client, tmp_path):
    node = await start_node(aiohttp_client, tmp_path / "data", "all")
    db = node.app[DB]
    now = time.time()
    ghost = Node(id="ghost", host="desktop", port=8081, role="worker", workers=8, busy=3, capacity=None,
                 started_at=now - 100, last_seen=now - SILENT_AFTER_SECONDS - 1)
    await db.heartbeat_node(ghost)
    by_id = {n["id"]: n for n in (await queue_object(node))["nodes"]}
    assert by_id["ghost"]["state"] == "silent" and by_id["ghost"]["workers"] == 8
    assert by_id[node.app[CLUSTER].id]["state"] == "live"

    await db.heartbeat_node(Node(**{**ghost.__dict__, "last_seen": now - FORGET_AFTER_SECONDS - 1}))
    await until(lambda: _node_ids(db, {"ghost"}), timeout=30, what="the silent node to be dropped")
    assert [n["id"] for n in (await queue_object(node))["nodes"]] == [node.app[CLUSTER].id]


async def test_a_stopped_node_leaves_the_registry(aiohttp_client, tmp_path):
    data = tmp_path / "data"
    web = await start_node(aiohttp_client, data, "web")
    worker = await start_node(aiohttp_client, data, "worker")
    worker_id = worker.app[CLUSTER].id
    assert worker_id in {n["id"] for n in (await queue_object(web))["nodes"]}
    await worker.close()
    assert worker_id not in {n["id"] for n in (await queue_object(web))["nodes"]}


async def test_a_database_outage_is_a_503_with_retry_after(aiohttp_client, tmp_path):
    """Another program holds the database past the busy timeout: the API says so, and works again after."""
    node = await start_node(aiohttp_client, tmp_path / "data", "all")
    locker = sqlite3.connect(node.app[STORAGE].database_path, isolation_level=None, check_same_thread=False)
    await asyncio.to_thread(locker.execute, "BEGIN EXCLUSIVE")
    try:
        async with node.post("/api/albums", json={"name": "Blocked"}, headers=AUTH) as r:
            assert r.status == 503
            assert int(r.headers["Retry-After"]) > 0
            body = await r.json()
            assert body["error"] == "database_unavailable" and body["message"]
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    async with node.post("/api/albums", json={"name": "Later"}, headers=AUTH) as r:
        assert r.status == 201
    async with node.get("/api/albums", headers=AUTH) as r:
        assert [a["name"] for a in (await r.json())["albums"]] == ["Later"]


async def _all_complete(client, photo_ids) -> bool:
    return all(s == "complete" for s in await statuses(client, photo_ids))


async def _node_ids(db, absent: set[str]) -> bool:
    return not absent & {n.id for n in await db.list_nodes()}


async def _heartbeats(client, count: int) -> None:
    """Wait until a node has written `count` more heartbeats (each one also reads the pause switch)."""
    db, node_id = client.app[DB], client.app[CLUSTER].id

    async def last_seen() -> float:
        return next(n.last_seen for n in await db.list_nodes() if n.id == node_id)

    seen = [await last_seen()]

    async def advanced() -> bool:
        current = await last_seen()
        if current > seen[-1]:
            seen.append(current)
        return len(seen) > count

    await until(advanced, timeout=60, what=f"{count} heartbeats")
