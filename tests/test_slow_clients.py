"""Slow, silent and too many clients cannot take photoq offline (a real `photoq serve` process on loopback).

The attack from the hardening issue: 1 100 connections that send `GET / HTTP/1.1\\r\\nHost: x\\r\\n` and never finish,
against a server with the usual 1 024 open files; /healthz must keep answering within a second throughout (the
issue's requirement, measured per probe), and uploads work again afterwards. Also: a body trickled at 1 byte a
second is cut off without leaving a temp file, idle connections are closed after the keep-alive time, and the number
of live-progress streams and of concurrent uploads is bounded with the contract's 503.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import resource
import socket
import subprocess
import sys
import threading
import time

import aiohttp
import pytest

from photoq.web.connections import AcceptErrorThrottle

from .support import AUTH, REPO_ROOT, ServerProcess, jpeg, multipart, until

ATTACKERS = 1100
PARTIAL_REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n"


def lower_open_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


@pytest.fixture
def make_server(tmp_path):
    servers = []

    def make(config: str = "", **kwargs) -> ServerProcess:
        path = tmp_path / f"config-{len(servers)}.toml"
        path.write_text(config)
        server = ServerProcess(tmp_path / "data", workers=1, config=path, **kwargs)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


def probe_health(port: int, stop: threading.Event, results: list) -> None:
    """GET /healthz on a fresh connection every 0.2 s; records (seconds, status or error) per probe."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/healthz")
            status: int | str = connection.getresponse().status
            connection.close()
        except OSError as exc:
            status = repr(exc)
        results.append((time.monotonic() - started, status))
        stop.wait(0.2)


async def test_a_flood_of_silent_connections_does_not_take_health_checks_or_uploads_down(make_server):
    server = make_server(preexec_fn=lower_open_files)
    results: list = []
    stop = threading.Event()
    prober = threading.Thread(target=probe_health, args=(server.port, stop, results), daemon=True)
    prober.start()
    try:
        # Longer than the default header timeout (10 s), so that every attacker is closed at least once.
        attack = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "tests.flood", str(server.port), "14", str(ATTACKERS)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert attack.returncode == 0, attack.stderr
        stats = json.loads(attack.stdout)
    finally:
        stop.set()
        prober.join(10)

    assert stats["peak"] >= 1000, stats  # the attack really held about a thousand connections at once
    assert stats["closed_by_server"] >= ATTACKERS, stats  # half-sent requests are closed, none held for good
    assert len(results) >= 20  # probes kept coming throughout the attack
    slow_or_failed = [(round(seconds, 3), status) for seconds, status in results if status != 200 or seconds >= 1.0]
    assert not slow_or_failed, (slow_or_failed, len(results))

    async with aiohttp.ClientSession(server.url) as session:
        async with session.post("/api/albums", json={"name": "After"}, headers=AUTH) as r:
            album = (await r.json())["id"]
        async with session.post(f"/api/albums/{album}/photos", data=multipart(("a.jpg", jpeg(320, 240))),
                                headers=AUTH) as r:
            assert r.status == 202
    log = server.log()
    assert "out of system resource" not in log and log.count("accept") <= 3, log[-3000:]


def raw_upload_start(port: int, album: int, content_length: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        f"POST /api/albums/{album}/photos HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH['Authorization']}\r\n"
        f"Content-Type: multipart/form-data; boundary=BOUNDARY\r\nContent-Length: {content_length}\r\n\r\n".encode()
        + b"--BOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.jpg\"\r\n"
          b"Content-Type: image/jpeg\r\n\r\n" + jpeg(320, 240)[:200])
    return sock


async def test_a_body_trickled_at_one_byte_a_second_is_cut_off_and_leaves_no_temp_file(make_server):
    server = make_server("[server]\nbody_timeout_seconds = 2\n")
    async with aiohttp.ClientSession(server.url) as session:
        async with session.post("/api/albums", json={"name": "Slow"}, headers=AUTH) as r:
            album = (await r.json())["id"]
    sock = raw_upload_start(server.port, album, 1_000_000)
    tmp = server.data_dir / "tmp"
    try:
        await until(lambda: any(tmp.iterdir()), timeout=10, what="the upload's temp file")
        sock.settimeout(1.0)
        cut_off = False
        for _ in range(60):  # one byte a second, for up to a minute
            try:
                sock.sendall(b"x")
                if sock.recv(1024) == b"":
                    cut_off = True
                    break
            except TimeoutError:
                continue
            except OSError:
                cut_off = True
                break
        assert cut_off, "a body trickled at 1 byte/s was not cut off"
    finally:
        sock.close()
    await until(lambda: not any(tmp.iterdir()), timeout=10, what="the temp file to be removed")
    async with aiohttp.ClientSession(server.url) as session:
        async with session.get("/healthz") as r:
            assert r.status == 200


async def test_half_sent_headers_and_idle_connections_are_closed(make_server):
    server = make_server("[server]\nheader_timeout_seconds = 1\nkeepalive_seconds = 2\n")
    for first_bytes in (PARTIAL_REQUEST, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(first_bytes)
        # Closed by the server (the default keep-alive would be an hour): the read ends with EOF.
        received = await asyncio.wait_for(reader.read(), 30)
        assert (b"200 OK" in received) == (first_bytes != PARTIAL_REQUEST)
        writer.close()


async def test_live_progress_streams_are_bounded(make_server):
    server = make_server("[server]\nmax_event_streams = 10\n[ratelimit]\nenabled = false\n")
    statuses: dict[int, int] = {}
    bodies = []
    open_streams = []
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(server.url, connector=connector) as session:
        async def attempt() -> None:
            response = await session.get("/api/events", headers=AUTH)
            statuses[response.status] = statuses.get(response.status, 0) + 1
            if response.status == 200:
                open_streams.append(response)  # held open
            else:
                bodies.append((await response.json(), response.headers.get("Retry-After")))
                response.release()

        await asyncio.gather(*(attempt() for _ in range(2500)))
        assert statuses == {200: 10, 503: 2490}
        assert all(body["error"] == "overloaded" and body["message"] and retry for body, retry in bodies)
        for response in open_streams:
            response.close()
        # A closed stream gives its place back.
        async def one_more_accepted() -> bool:
            async with session.get("/api/events", headers=AUTH) as response:
                return response.status == 200
        await until(one_more_accepted, timeout=10, what="a freed stream slot")


async def test_concurrent_uploads_past_the_limit_get_503_with_retry_after(start_client):
    client = await start_client(server={"max_uploads": 1})
    async with client.post("/api/albums", json={"name": "Busy"}, headers=AUTH) as r:
        album = (await r.json())["id"]
    release = asyncio.Event()
    data = jpeg(320, 240)
    head = (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
            b"Content-Type: image/jpeg\r\n\r\n")

    async def body():
        yield head + data[:100]
        await release.wait()
        yield data[100:] + b"\r\n--B--\r\n"

    headers = {**AUTH, "Content-Type": "multipart/form-data; boundary=B"}
    first = asyncio.ensure_future(client.post(f"/api/albums/{album}/photos", data=body(), headers=headers))
    await asyncio.sleep(0.2)
    async with client.post(f"/api/albums/{album}/photos", data=multipart(("b.jpg", jpeg(100, 100, seed=2))),
                           headers=AUTH) as r:
        assert r.status == 503
        assert int(r.headers["Retry-After"]) >= 1
        assert (await r.json())["error"] == "overloaded"
    release.set()
    response = await first
    assert response.status == 202
    response.release()
    async with client.post(f"/api/albums/{album}/photos", data=multipart(("b.jpg", jpeg(100, 100, seed=2))),
                           headers=AUTH) as r:
        assert r.status == 202


def test_accept_errors_are_logged_once_per_burst(caplog):
    now = [100.0]
    throttle = AcceptErrorThrottle(quiet_seconds=10, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="photoq.web"):
        for _ in range(62_000):  # the count, in 20 s
            throttle.failed(OSError(24, "Too many open files"))
            now[0] += 20 / 62_000
        throttle.succeeded()
        throttle.succeeded()
    lines = [r.getMessage() for r in caplog.records if r.name == "photoq.web"]
    assert len(lines) == 3, lines  # the first failure, one summary after 10 s, one when it is over
    assert "Too many open files" in lines[0]
    assert "more time(s) in the last 10 s" in lines[1]
    assert "accepting connections again" in lines[2]
