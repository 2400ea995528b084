"""Cluster mode with real processes: three `photoq serve` nodes (one web, two workers) on one PostgreSQL and one data
directory. The nodes are shared by the tests of this module, which run in order: exactly-once processing of 200
photos uploaded through the web node, live events across nodes, pause on one node, SIGKILL of a worker node mid-job,
and the database restarted mid-run."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from .support import AUTH, ServerProcess, SseReader, jpeg, multipart, noisy_png

pytestmark = pytest.mark.slow

LEASE_SECONDS = 4  # short, so a killed node's jobs come back quickly; heartbeats every second
NODE_CONFIG = f"""\
[ratelimit]
enabled = false
[queue]
lease_seconds = {LEASE_SECONDS}
sweep_interval_seconds = 0.5
backoff_base_seconds = 0.2
backoff_max_seconds = 1.0
breaker_cooldown_seconds = 2
"""


@dataclass
class Cluster:
    data: Path
    config: Path
    database_url: str
    web: ServerProcess
    workers: list[ServerProcess]

    def start_node(self, role: str, workers: int = 1) -> ServerProcess:
        node = ServerProcess(self.data, workers=workers, config=self.config,
                             extra_env={"PHOTOQ_DATABASE_URL": self.database_url, "PHOTOQ_ROLE": role})
        node.start(timeout=60)
        return node


@pytest.fixture(scope="module")
def postgresql(request):
    """The throwaway PostgreSQL server the test suite starts (tests/conftest.py)."""
    try:
        return request.getfixturevalue("postgresql_server")
    except pytest.FixtureLookupError:
        pytest.skip("the test suite's PostgreSQL server fixture is not in this tree")


@pytest.fixture(scope="module")
def cluster(postgresql, tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    data = root / "data"
    data.mkdir()
    config = root / "node.toml"
    config.write_text(NODE_CONFIG)
    url = postgresql.new_database("cluster")
    started: list[ServerProcess] = []
    cluster = Cluster(data, config, url, web=None, workers=[])  # type: ignore[arg-type]
    try:
        cluster.web = cluster.start_node("web")
        started.append(cluster.web)
        for _ in range(2):
            cluster.workers.append(cluster.start_node("worker", workers=1))
            started.append(cluster.workers[-1])
        yield cluster
    finally:
        for node in [cluster.web, *cluster.workers, *started]:
            if node is not None:
                node.stop()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
        yield s


async def get_json(session, url: str) -> dict:
    async with session.get(url, headers=AUTH) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def post(session, url: str, **kwargs) -> tuple[int, dict]:
    async with session.post(url, headers=AUTH, **kwargs) as r:
        return r.status, await r.json()


async def new_album(session, web: ServerProcess, name: str) -> int:
    status, body = await post(session, f"{web.url}/api/albums", json={"name": name})
    assert status == 201
    return body["id"]


async def upload(session, web: ServerProcess, album: int, files: list[tuple[str, bytes]]) -> list[int]:
    ids = []
    for i in range(0, len(files), 20):
        status, body = await post(session, f"{web.url}/api/albums/{album}/photos", data=multipart(*files[i:i + 20]))
        assert status == 202, body
        ids += [p["id"] for p in body["photos"]]
    return ids


async def wait_complete(session, node: ServerProcess, ids, timeout: float = 300) -> None:
    """Through the node's /api/events: subscribe, read the current states, then follow events until all are done."""
    wanted = set(ids)
    async with session.get(f"{node.url}/api/events", headers=AUTH,
                           timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as r:
        reader = SseReader(r)
        await reader.next()
        done = {i for i in wanted
                if (await get_json(session, f"{node.url}/api/photos/{i}"))["processing_status"] == "complete"}
        deadline = time.monotonic() + timeout
        while not wanted <= done:
            event = await reader.next(timeout=max(0.1, deadline - time.monotonic()))
            if event.name == "photo" and event.data["id"] in wanted:
                assert event.data["processing_status"] != "failed", event.data
                if event.data["processing_status"] == "complete":
                    done.add(event.data["id"])


async def completed_jobs(session, node: ServerProcess) -> int:
    async with session.get(f"{node.url}/metrics", headers=AUTH) as r:
        text = await r.text()
    return sum(int(float(m)) for m in re.findall(
        r'^photoq_job_duration_seconds_count\{[^}]*outcome="complete"[^}]*\} (\S+)$', text, re.M))


async def history(session, web: ServerProcess, photo_id: int) -> list[dict]:
    return (await get_json(session, f"{web.url}/api/photos/{photo_id}/history"))["attempts"]


async def test_200_photos_uploaded_through_the_web_node_complete_exactly_once(cluster, session):
    web = cluster.web
    nodes = (await get_json(session, f"{web.url}/api/admin/queue"))["nodes"]
    assert sorted(n["role"] for n in nodes) == ["web", "worker", "worker"]
    assert all(n["state"] == "live" for n in nodes)

    album = await new_album(session, web, "Two hundred")
    ids = await upload(session, web, album, [(f"p{i}.jpg", jpeg(320, 240, seed=i)) for i in range(200)])
    assert len(set(ids)) == 200
    await wait_complete(session, web, ids)  # the web node renders nothing: every event came from another node

    for photo_id in ids:
        attempts = await history(session, web, photo_id)
        assert sorted((a["kind"], a["outcome"]) for a in attempts) == [("thumbnail", "complete"),
                                                                        ("variant", "complete")], attempts
    per_worker = [await completed_jobs(session, w) for w in cluster.workers]
    assert sum(per_worker) == 400 and all(per_worker), per_worker  # both nodes worked; no job ran twice
    stats = await get_json(session, f"{web.url}/api/stats?album_id={album}")
    assert stats["complete"] == 200 and stats["pending"] == stats["processing"] == stats["failed"] == 0


async def test_live_events_on_one_node_show_photos_processed_by_another(cluster, session):
    web = cluster.web
    album = await new_album(session, web, "Live")
    async with session.get(f"{web.url}/api/events?album_id={album}", headers=AUTH,
                           timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as r:
        reader = SseReader(r)
        await reader.next()
        [photo_id] = await upload(session, web, album, [("live.jpg", jpeg(320, 240, seed=500))])
        seen = []
        while not seen or seen[-1] != ("complete", "complete"):
            event = await reader.next(timeout=120)
            if event.name == "photo" and event.data["id"] == photo_id:
                seen.append((event.data["thumbnail_status"], event.data["variant_status"]))
    assert ("processing", "pending") in seen or ("processing", "processing") in seen  # a claim on a worker node
    assert ("complete", "complete") == seen[-1]


async def test_pause_on_one_node_stops_every_node(cluster, session):
    web = cluster.web
    status, body = await post(session, f"{web.url}/api/admin/queue/pause")
    assert status == 200 and body["paused"] is True
    album = await new_album(session, web, "Paused")
    ids = await upload(session, web, album, [(f"h{i}.jpg", jpeg(320, 240, seed=600 + i)) for i in range(6)])

    async def idle() -> bool:
        return (await get_json(session, f"{web.url}/api/admin/queue"))["processing_count"] == 0

    await until_true(idle, "running jobs to finish")
    before = [await completed_jobs(session, w) for w in cluster.workers]
    await heartbeats(session, web, 3)  # every worker node has read the switch several times since
    assert [await completed_jobs(session, w) for w in cluster.workers] == before
    stats = await get_json(session, f"{web.url}/api/stats?album_id={album}")
    assert stats["complete"] == 0 and stats["processing"] == 0

    status, body = await post(session, f"{web.url}/api/admin/queue/resume")
    assert status == 200 and body["paused"] is False
    await wait_complete(session, web, ids)


async def test_sigkill_of_a_worker_node_mid_job_its_jobs_finish_on_the_other(cluster, session):
    web = cluster.web
    album = await new_album(session, web, "Killed")
    # Big enough that a job is running when the node dies.
    ids = await upload(session, web, album, [(f"k{i}.png", noisy_png(2400, 1800, seed=700 + i)) for i in range(4)])
    victim = cluster.workers[0]

    async def victim_busy() -> bool:
        nodes = (await get_json(session, f"{web.url}/api/admin/queue"))["nodes"]
        return any(n["port"] == victim.port and n["busy"] > 0 for n in nodes)

    await until_true(victim_busy, "the first worker node to run a job")
    victim.kill9()
    await wait_complete(session, web, ids)  # within the lease, by the other worker node

    retried = [a for i in ids for a in await history(session, web, i) if a["outcome"] != "complete"]
    assert retried and all("lease expired" in (a["error"] or "") for a in retried), retried
    nodes = (await get_json(session, f"{web.url}/api/admin/queue"))["nodes"]
    assert [n["state"] for n in nodes if n["port"] == victim.port] in (["silent"], ["live"], [])

    cluster.workers[0] = cluster.start_node("worker")  # a replacement, for the next test


async def test_the_database_restarted_mid_run_loses_nothing(cluster, session, postgresql):
    web = cluster.web
    album = await new_album(session, web, "Restart")
    ids = await upload(session, web, album, [(f"r{i}.jpg", jpeg(1600, 1200, seed=800 + i)) for i in range(30)])

    async def some_done() -> bool:
        return (await get_json(session, f"{web.url}/api/stats?album_id={album}"))["complete"] >= 3

    await until_true(some_done, "a few photos to complete")
    await asyncio.to_thread(postgresql.restart)

    # The API answers 503 with Retry-After while the database is away, and everything resumes by itself.
    async def answers() -> bool:
        async with session.get(f"{web.url}/api/stats?album_id={album}", headers=AUTH) as r:
            if r.status == 503:
                assert "Retry-After" in r.headers and (await r.json())["error"] == "database_unavailable"
            return r.status == 200

    await until_true(answers, "the API to answer again")
    more = await upload(session, web, album, [(f"after{i}.jpg", jpeg(320, 240, seed=900 + i)) for i in range(3)])
    await wait_complete(session, web, ids + more)
    stats = await get_json(session, f"{web.url}/api/stats?album_id={album}")
    assert stats == {**stats, "complete": 33, "failed": 0, "pending": 0, "processing": 0}


async def until_true(predicate, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def heartbeats(session, web: ServerProcess, count: int) -> None:
    """Until every live worker node's last_seen has moved `count` times."""
    async def marks() -> dict[str, str]:
        nodes = (await get_json(session, f"{web.url}/api/admin/queue"))["nodes"]
        return {n["id"]: n["last_seen"] for n in nodes if n["role"] == "worker" and n["state"] == "live"}

    seen = {node_id: [mark] for node_id, mark in (await marks()).items()}

    async def moved() -> bool:
        for node_id, mark in (await marks()).items():
            if node_id in seen and mark != seen[node_id][-1]:
                seen[node_id].append(mark)
        return all(len(m) > count for m in seen.values())

    await until_true(moved, f"{count} heartbeats of every worker node")
