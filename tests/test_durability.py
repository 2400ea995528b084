"""A real `photoq serve` process: killed with SIGKILL mid-processing, and stopped with SIGTERM, loses nothing."""

from __future__ import annotations

import asyncio
import io
import time

import aiohttp
import pytest
from PIL import Image

from .support import AUTH, ServerProcess, jpeg, multipart, wait_for_photos

OUTPUT_NAMES = ["thumb-150", "thumb-300", "thumb-600", "display-1080x1920", "display-2160x3840", "display-1038x1278"]


@pytest.fixture
def server_factory(tmp_path):
    servers = []

    def make(**kwargs) -> ServerProcess:
        server = ServerProcess(tmp_path / "data", **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


async def upload_batch(session, count: int, width=2000, height=1500) -> list[int]:
    async with session.post("/api/albums", json={"name": "Batch"}, headers=AUTH) as r:
        album = (await r.json())["id"]
    files = [(f"{i}.jpg", jpeg(width, height, seed=1000 + i)) for i in range(count)]
    async with session.post(f"/api/albums/{album}/photos", data=multipart(*files), headers=AUTH) as r:
        assert r.status == 202
        return [p["id"] for p in (await r.json())["photos"]]


async def wait_for_some_complete(session, minimum: int, timeout=120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        async with session.get("/api/stats", headers=AUTH) as r:
            stats = await r.json()
        if stats["complete"] >= minimum:
            return stats
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def assert_all_outputs_decodable(session, ids):
    for photo_id in ids:
        async with session.get(f"/api/photos/{photo_id}", headers=AUTH) as r:
            photo = await r.json()
        assert photo["processing_status"] == "complete", photo
        for name in OUTPUT_NAMES:
            async with session.get(photo["urls"][name], headers=AUTH) as r:
                assert r.status == 200 and "X-Photoq-Fallback" not in r.headers, (photo_id, name)
                Image.open(io.BytesIO(await r.read())).load()


def assert_no_temporary_files(data_dir):
    assert list((data_dir / "tmp").iterdir()) == []
    assert [p for p in (data_dir / "variants").rglob("*") if p.name.endswith(".tmp")] == []


async def test_kill_9_while_processing_loses_nothing(server_factory, tmp_path):
    server = server_factory(workers=2)
    server.start()
    async with aiohttp.ClientSession(base_url=server.url) as session:
        ids = await upload_batch(session, 30)
        stats = await wait_for_some_complete(session, 3)
    assert stats["complete"] < 30, "processing finished before the kill; the test proves nothing"
    server.kill9()

    server.start()
    async with aiohttp.ClientSession(base_url=server.url) as session:
        await wait_for_photos(session, ids, timeout=300)
        await assert_all_outputs_decodable(session, ids)
        async with session.get("/api/stats", headers=AUTH) as r:
            assert (await r.json())["complete"] == 30
    assert_no_temporary_files(tmp_path / "data")
    assert "reclaimed" in server.log()


@pytest.mark.parametrize("grace, size", [(20, (2000, 1500)), (0.1, (6000, 4000))],
                         ids=["jobs-finish", "grace-runs-out"])
async def test_sigterm_exits_within_the_grace_period_and_loses_nothing(server_factory, tmp_path, grace, size):
    config = tmp_path / "config.toml"
    config.write_text(f"[processing]\nshutdown_grace_seconds = {grace}\n")
    server = server_factory(workers=2, config=config)
    server.start()
    async with aiohttp.ClientSession(base_url=server.url) as session:
        ids = await upload_batch(session, 8, *size)
        await wait_for_some_complete(session, 1)
    started = time.monotonic()
    assert server.terminate(timeout=60) == 0
    assert time.monotonic() - started < grace + 10  # the grace period plus slack, not a speed target
    log = server.log()
    assert "Traceback" not in log
    if grace < 1:  # 24 MP display variants take far longer than 0.1 s: some job was cut off and given back
        assert "interrupted by shutdown" in log

    server.start()
    async with aiohttp.ClientSession(base_url=server.url) as session:
        await wait_for_photos(session, ids, timeout=300)
        await assert_all_outputs_decodable(session, ids)
    assert_no_temporary_files(tmp_path / "data")
