"""One server per data directory (embedded database): a second `photoq serve` is refused at once, without touching
the first one's uploads in flight; operator commands keep working beside it; a killed server leaves no stale lock."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest

from photoq.storage import Storage, owner_tag

from .support import AUTH, TEST_TOKEN, ServerProcess, free_port, jpeg


def photoq(*args, cwd, timeout=60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PHOTOQ_AUTH_TOKEN": TEST_TOKEN}
    env.pop("PHOTOQ_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "photoq", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=env)


@pytest.fixture
def server(tmp_path):
    server = ServerProcess(tmp_path / "data", workers=1)
    yield server
    server.stop()


def start_partial_upload(port: int, album_id: int, body_head: bytes, total: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        f"POST /api/albums/{album_id}/photos HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH['Authorization']}\r\n"
        f"Content-Type: multipart/form-data; boundary=BOUNDARY\r\nContent-Length: {total}\r\n\r\n".encode()
        + body_head)
    return sock


async def test_a_second_server_on_the_same_data_directory_is_refused_and_sweeps_nothing(server, tmp_path):
    import aiohttp

    server.start()
    async with aiohttp.ClientSession(server.url) as session:
        async with session.post("/api/albums", json={"name": "Lock"}, headers=AUTH) as r:
            album = (await r.json())["id"]

    # An upload in flight in the first server: its temp file exists in tmp/.
    data = jpeg(800, 600, seed=3)
    head = (b"--BOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
            b"Content-Type: image/jpeg\r\n\r\n")
    tail = b"\r\n--BOUNDARY--\r\n"
    half = len(data) // 2
    sock = start_partial_upload(server.port, album, head + data[:half], len(head) + len(data) + len(tail))
    try:
        tmp = server.data_dir / "tmp"
        for _ in range(500):
            if any(tmp.iterdir()):
                break
            await asyncio.sleep(0.02)
        in_flight = list(tmp.iterdir())
        assert in_flight, "the first server never started writing the upload"

        second = await asyncio.to_thread(photoq, "serve", "--port", str(free_port()), "--data-dir",
                                         str(server.data_dir), "--workers", "1", cwd=tmp_path, timeout=30)
        assert second.returncode != 0
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"pid {server.process.pid}" in lines[0] and str(server.data_dir) in lines[0]
        assert list(tmp.iterdir()) == in_flight  # its start-up sweep did not run

        sock.sendall(data[half:] + tail)
        answer = await asyncio.to_thread(sock.recv, 65536)
        assert answer.startswith(b"HTTP/1.1 202"), answer[:200]
    finally:
        sock.close()

    # Operator commands are safe beside the running server and keep working.
    for command in (["status"], ["doctor"], ["login-url"]):
        done = await asyncio.to_thread(photoq, *command, "--data-dir", str(server.data_dir), cwd=tmp_path)
        assert done.returncode == 0, (command, done.stderr)


async def test_the_lock_dies_with_the_server(server, tmp_path):
    server.start()
    server.kill9()
    again = ServerProcess(server.data_dir, workers=1)
    try:
        again.start()  # a kill -9 leaves no stale lock behind
        assert (server.data_dir / "serve.lock").read_text().strip() == str(again.process.pid)
    finally:
        again.stop()


def test_on_a_shared_directory_the_sweep_removes_only_this_machines_dead_uploads(tmp_path):
    storage = Storage(tmp_path / "data")
    storage.prepare()
    host = owner_tag().rpartition(".")[0]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    files = {
        "ours_dead": storage.tmp / f"upload-{host}.{int(dead.stdout)}-aa.part",
        "ours_now": storage.new_upload_path(),
        "live_elsewhere_here": storage.tmp / f"upload-{host}.{os.getppid()}-bb.part",
        "other_node": storage.tmp / "upload-othernode.12345-cc.part",
    }
    for path in files.values():
        path.write_bytes(b"x")
    assert storage.sweep_temp(everything=False) == 2
    assert sorted(p.name for p in storage.tmp.iterdir()) == sorted(
        files[k].name for k in ("live_elsewhere_here", "other_node"))
    assert storage.sweep_temp(everything=True) == 2
    assert not any(storage.tmp.iterdir())
