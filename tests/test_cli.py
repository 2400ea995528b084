"""The `photoq` command: first-start token, status and retry-failed beside a running server."""

from __future__ import annotations

import asyncio
import re
import os
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from photoq.db import MIGRATIONS, SCHEMA_VERSION_BASE, Database

from .support import AUTH, TEST_TOKEN, ServerProcess, jpeg, multipart, wait_for_photos


def photoq(*args, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "photoq", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env={**os.environ, **(env or {})})


@pytest.fixture
def server(tmp_path):
    server = ServerProcess(tmp_path / "data", workers=1)
    yield server
    server.stop()


async def test_first_start_generates_a_private_token_and_prints_the_login_link_once(tmp_path):
    data = tmp_path / "data"
    server = ServerProcess(data, workers=1, extra_env={"PHOTOQ_AUTH_TOKEN": ""})
    try:
        server.start()
        token_file = data / "token"
        token = token_file.read_text().strip()
        assert len(token) >= 32
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        async with aiohttp.ClientSession(base_url=server.url) as session:
            async with session.get("/api/stats", headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 200
            link = re.search(r"http://\S+/login\?code=\S+", server.log()).group(0)
            async with session.get(link.split(str(server.port), 1)[1], allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == "/"
                cookie = r.cookies["photoq_session"]
                assert cookie["httponly"] and cookie["samesite"] == "Strict"
                assert token not in cookie.value
        assert server.terminate() == 0
        first_log = server.log()
        assert token not in first_log and first_log.count("/login?code=") == 1

        server.start()
        assert server.terminate() == 0
        assert token not in server.log(), "the token is never logged"
        assert (data / "token").read_text().strip() == token
    finally:
        server.stop()


async def make_a_failed_photo(server, tmp_path) -> tuple[int, Path]:
    """Upload a photo whose original then vanishes, so its jobs fail for real; returns (photo id, original)."""
    async with aiohttp.ClientSession(base_url=server.url) as session:
        await session.post("/api/albums", json={"name": "A"}, headers=AUTH)
        await session.post("/api/admin/queue/pause", headers=AUTH)
        async with session.post("/api/albums/1/photos", data=multipart(("a.jpg", jpeg(seed=70))),
                                headers=AUTH) as r:
            photo_id = (await r.json())["photos"][0]["id"]
        async with session.get(f"/api/photos/{photo_id}", headers=AUTH) as r:
            sha256 = (await r.json())["sha256"]
        original = tmp_path / "data" / "originals" / sha256[:2] / sha256[2:4] / f"{sha256}.jpg"
        original.rename(original.with_suffix(".away"))
        await session.post("/api/admin/queue/resume", headers=AUTH)
        while True:  # both parts, not just the first to fail
            state = (await wait_for_photos(session, [photo_id], statuses=("failed",)))[photo_id]
            if state["thumbnail_status"] == state["variant_status"] == "failed":
                break
            await asyncio.sleep(0.05)
    return photo_id, original


@pytest.fixture
def failing_config(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[queue]\nmax_attempts = 1\nbreaker_threshold = 100\n")
    return config


async def test_status_and_retry_failed_work_beside_a_running_server(server, tmp_path, failing_config):
    server.config = failing_config
    server.start()
    photo_id, original = await make_a_failed_photo(server, tmp_path)
    cli_args = ("--data-dir", str(tmp_path / "data"), "--config", str(failing_config))
    env = {"PHOTOQ_PORT": str(server.port), "PHOTOQ_AUTH_TOKEN": TEST_TOKEN}

    status = photoq("status", *cli_args, cwd=tmp_path, env=env)
    assert status.returncode == 0, status.stderr
    assert "failed 1" in status.stdout and "total 1" in status.stdout

    original.with_suffix(".away").rename(original)
    retried = photoq("retry-failed", *cli_args, cwd=tmp_path, env=env)
    assert retried.returncode == 0, retried.stderr
    assert "requeued 2 failed job(s) in the running server" in retried.stdout
    async with aiohttp.ClientSession(base_url=server.url) as session:
        await wait_for_photos(session, [photo_id])


async def test_retry_failed_without_a_server_requeues_in_the_database(server, tmp_path, failing_config):
    server.config = failing_config
    server.start()
    photo_id, original = await make_a_failed_photo(server, tmp_path)
    assert server.terminate() == 0
    original.with_suffix(".away").rename(original)
    env = {"PHOTOQ_PORT": str(server.port), "PHOTOQ_AUTH_TOKEN": TEST_TOKEN}
    retried = photoq("retry-failed", "--data-dir", str(tmp_path / "data"), cwd=tmp_path, env=env)
    assert retried.returncode == 0, retried.stderr
    assert "requeued 2 failed job(s); they run when photoq next starts" in retried.stdout
    server.start()
    async with aiohttp.ClientSession(base_url=server.url) as session:
        await wait_for_photos(session, [photo_id])


def test_status_without_a_database_says_so(tmp_path):
    result = photoq("status", "--data-dir", str(tmp_path / "none"), cwd=tmp_path)
    assert result.returncode == 1 and "no database" in result.stderr


async def test_schema_is_versioned(tmp_path):
    db = Database(tmp_path / "photoq.db")
    await db.open()
    try:
        assert await db.schema_version() == SCHEMA_VERSION_BASE + len(MIGRATIONS)
        assert await db.writer.run(lambda conn: conn.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
        assert await db.writer.run(lambda conn: conn.execute("PRAGMA foreign_keys").fetchone()[0]) == 1
    finally:
        await db.close()
    # Opening again applies nothing twice.
    db = Database(tmp_path / "photoq.db")
    await db.open()
    await db.close()
