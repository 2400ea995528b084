"""Faults below the API: image processes killed mid-job, files that only fail when decoded, full disks, and a
database that refuses a write. Each costs what it should (one attempt, one file, one request) and nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from photoq.web.keys import STORAGE, WORKERS

from . import hostile as h
from .support import AUTH, SseReader, jpeg, multipart, photo_like, until, wait_for_photos

FINISHED = ("complete", "failed")


# -- helpers -----------------------------------------------------------------------------------------------------


async def new_album(client, name="Faults") -> int:
    async with client.post("/api/albums", json={"name": name}, headers=AUTH) as r:
        assert r.status == 201
        return (await r.json())["id"]


async def upload(client, album, *files) -> tuple[int, dict]:
    async with client.post(f"/api/albums/{album}/photos", data=multipart(*files), headers=AUTH) as r:
        return r.status, await r.json()


async def history(client, photo_id) -> list[dict]:
    async with client.get(f"/api/photos/{photo_id}/history", headers=AUTH) as r:
        assert r.status == 200
        return (await r.json())["attempts"]


async def photo(client, photo_id) -> dict:
    async with client.get(f"/api/photos/{photo_id}", headers=AUTH) as r:
        assert r.status == 200
        return await r.json()


async def assert_outputs_decodable(client, photo_id) -> None:
    info = await photo(client, photo_id)
    assert info["processing_status"] == "complete", info
    for name, url in info["urls"].items():
        async with client.get(url, headers=AUTH) as r:
            assert r.status == 200 and "X-Photoq-Fallback" not in r.headers, (photo_id, name)
            Image.open(io.BytesIO(await r.read())).load()


def slow_png(seed: int, size=(8000, 6000)) -> bytes:
    """48 megapixels of PNG (no JPEG draft shortcut): its display variants take about a second to render."""
    buffer = io.BytesIO()
    photo_like(*size, seed=seed).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


async def wait_for_status(client, photo_id: int, column: str, value: str, timeout: float = 60) -> None:
    """Follow the event stream until the photo's `column` (e.g. variant_status) has `value`."""
    async with client.get("/api/events", headers=AUTH) as response:
        reader = SseReader(response)
        await reader.next()
        if (await photo(client, photo_id))[column] == value:
            return
        deadline = time.monotonic() + timeout
        while True:
            event = await reader.next(timeout=max(0.1, deadline - time.monotonic()))
            if event.name == "photo" and event.data["id"] == photo_id and event.data[column] == value:
                return


def process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


# -- a killed image process ----------------------------------------------------------------------------------------


async def test_a_killed_image_process_costs_one_attempt_and_nothing_else(start_client):
    client = await start_client(processing={"workers": 1})
    album = await new_album(client)
    pool = client.app[WORKERS]
    for seed in range(3):  # a render can finish before the kill lands; then the test tries with another photo
        status, body = await upload(client, album, (f"big-{seed}.png", slow_png(seed)))
        assert status == 202
        photo_id = body["photos"][0]["id"]
        await wait_for_status(client, photo_id, "variant_status", "processing")
        await until(lambda: pool.child_pids(), what="the image process")
        [pid] = pool.child_pids()
        os.kill(pid, signal.SIGKILL)
        async with client.get("/healthz") as r:  # the server itself never noticed
            assert r.status == 200
        await wait_for_photos(client, [photo_id], statuses=FINISHED)
        attempts = await history(client, photo_id)
        failed = [a for a in attempts if a["outcome"] != "complete"]
        if failed:
            break
    else:
        pytest.fail("the kill never landed while a render was running")

    assert len(failed) == 1, attempts
    assert failed[0]["kind"] == "variant" and failed[0]["outcome"] == "retry"
    assert "image process stopped unexpectedly" in failed[0]["error"]
    assert [a["outcome"] for a in attempts if a["kind"] == "variant"] == ["retry", "complete"]
    assert [a["outcome"] for a in attempts if a["kind"] == "thumbnail"] == ["complete"]
    await assert_outputs_decodable(client, photo_id)

    # A child killed while idle costs nothing at all: the next job gets a fresh process.
    [pid] = pool.child_pids()
    os.kill(pid, signal.SIGKILL)
    await until(lambda: process_gone(pid), what="the killed process to exit")
    status, body = await upload(client, album, ("next.jpg", jpeg(seed=77)))
    next_id = body["photos"][0]["id"]
    await wait_for_photos(client, [next_id])
    assert [a["outcome"] for a in await history(client, next_id)] == ["complete", "complete"]
    assert pid not in pool.child_pids()


# -- files whose header parses over data that does not ------------------------------------------------------------


def png_with_garbage_pixels() -> bytes:
    buffer = io.BytesIO()
    photo_like(300, 200, seed=5).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"IDAT") + 4
    data[start:start + 200] = b"\x00" * 200
    return bytes(data)


async def test_decode_failures_end_failed_with_a_readable_message_and_spare_the_rest_of_the_batch(start_client):
    client = await start_client(queue={"max_attempts": 2})
    album = await new_album(client)
    good = [(f"good-{i}.jpg", jpeg(320, 240, seed=200 + i)) for i in range(5)]
    bad = [("garbage-scan.jpg", h.jpeg_header_then_garbage(3)), ("cut-scan.jpg", h.jpeg_truncated_in_scan(4)),
           ("garbage-pixels.png", png_with_garbage_pixels())]
    files = good[:2] + bad[:1] + good[2:4] + bad[1:] + good[4:]
    status, body = await upload(client, album, *files)
    assert status == 202 and body["accepted"] == len(files), body  # the headers are fine
    ids = {entry["filename"]: entry["id"] for entry in body["photos"]}
    final = await wait_for_photos(client, ids.values(), statuses=FINISHED)

    for name, _ in bad:
        async def both_jobs_done(photo_id=ids[name]):  # `failed` comes with the first dead job; wait for both
            info = await photo(client, photo_id)
            return info["thumbnail_status"] in FINISHED and info["variant_status"] in FINISHED

        await until(both_jobs_done, what="both jobs to end")
        info = await photo(client, ids[name])
        assert info["processing_status"] == "failed", info
        assert info["error"].startswith("The image data is damaged or cut off, so it cannot be decoded."), info
        assert "Traceback" not in info["error"] and len(info["error"]) < 300
        attempts = await history(client, ids[name])
        assert attempts and all(a["outcome"] in ("retry", "failed") for a in attempts)
        # The original is still there to download; there are no outputs to show.
        async with client.get(info["urls"]["thumb-150"], headers=AUTH) as r:
            assert r.status == 200 and r.headers["X-Photoq-Fallback"] == "original"
    for name, _ in good:
        assert final[ids[name]]["processing_status"] == "complete"
        assert [a["outcome"] for a in await history(client, ids[name])] == ["complete", "complete"]
        await assert_outputs_decodable(client, ids[name])
    async with client.get(f"/api/stats?album_id={album}", headers=AUTH) as r:
        stats = await r.json()
        batch = stats.pop("batch")
        assert stats == {"pending": 0, "processing": 0, "complete": 5, "failed": 3, "total": 8, "eta_seconds": 0}
        assert (batch["total"], batch["done"], batch["complete"], batch["failed"], batch["finished"]) == \
            (8, 8, 5, 3, True)


# -- a database that refuses to record a result -----------------------------------------------------------------


async def test_a_worker_outlives_a_failure_to_record_a_result(start_client, caplog):
    """Before the fix, an exception from the bookkeeping (here: the database stays locked past the busy timeout)
    ended the worker's loop for good, and with it all processing once every worker had met one."""
    client = await start_client(processing={"workers": 1},
                                queue={"lease_seconds": 3, "sweep_interval_seconds": 0.5})
    album = await new_album(client)
    status, body = await upload(client, album, ("big.png", slow_png(11, (6000, 4000))))
    assert status == 202
    photo_id = body["photos"][0]["id"]
    await wait_for_status(client, photo_id, "variant_status", "processing")

    # Another program (a backup tool, a second photoq) holds the write lock while the render finishes.
    locker = sqlite3.connect(client.app[STORAGE].database_path, timeout=30, isolation_level=None,
                             check_same_thread=False)
    await asyncio.to_thread(locker.execute, "BEGIN IMMEDIATE")
    try:
        await until(lambda: any("could not record the outcome" in r.getMessage() for r in caplog.records),
                         timeout=60, what="the worker to give up on recording its result")
    finally:
        locker.execute("ROLLBACK")
        locker.close()

    # The job runs again once its lease has expired, and the same worker goes on with new work.
    await wait_for_photos(client, [photo_id], timeout=60)
    _, body = await upload(client, album, ("after.jpg", jpeg(seed=12)))
    await wait_for_photos(client, [body["photos"][0]["id"]], timeout=60)
    await assert_outputs_decodable(client, photo_id)


# -- full disks --------------------------------------------------------------------------------------------------


def mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a tmpfs at `path`; returns why not when that is not allowed here."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return "mounting a tmpfs needs root"
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True, text=True, check=False)
    return None if result.returncode == 0 else f"cannot mount a tmpfs here: {result.stderr.strip()}"


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A small real filesystem that fills up for real; skips the test where mounting is not allowed."""
    why_not = mount_tmpfs(path, size)
    if why_not:
        pytest.skip(why_not)
    try:
        yield path
    finally:
        unmount(path)


def fill_up(directory: Path) -> Path:
    """Write a file until the filesystem has no byte left."""
    filler = directory / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1 << 20, 1 << 12, 1):
            block = b"\0" * chunk
            while True:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def data_on_tmpfs(tmp_path):
    with tmpfs(tmp_path / "data", "16m") as path:
        yield path


@pytest.fixture
def variants_on_tmpfs(tmp_path):
    with tmpfs(tmp_path / "data" / "variants", "2m") as path:
        yield path


def streamed_multipart(parts: list[tuple[str, bytes, int]]):
    """A multipart body sent chunked (no Content-Length, so no pre-flight size check can refuse it): each part
    is a filename, its first bytes, and how many zero bytes follow them."""
    async def body():
        for filename, head, padding in parts:
            yield multipart_head(filename) + head
            for _ in range(padding // (1 << 20)):
                yield b"\0" * (1 << 20)
            yield b"\0" * (padding % (1 << 20)) + b"\r\n"
        yield f"--{h.BOUNDARY}--\r\n".encode()
    return body()


def multipart_head(filename: str) -> bytes:
    return (f"--{h.BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()


def nothing_stored(client) -> None:
    storage = client.app[STORAGE]
    assert list(storage.tmp.iterdir()) == []
    assert [p for p in storage.originals.rglob("*") if p.is_file()] == []
    with sqlite3.connect(f"file:{storage.database_path}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT count(*) FROM photos").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM staged_files").fetchone()[0] == 0


async def post_streamed(client, album, parts) -> tuple[int, dict]:
    headers = {**AUTH, "Content-Type": h.multipart_type()}
    async with client.post(f"/api/albums/{album}/photos", data=streamed_multipart(parts), headers=headers) as r:
        return r.status, await r.json()


async def test_a_disk_that_fills_up_during_an_upload_answers_507_and_keeps_nothing(data_on_tmpfs, start_client):
    client = await start_client()
    album = await new_album(client)
    free = shutil.disk_usage(data_on_tmpfs).free
    small = jpeg(320, 240, seed=60)
    # One whole small photo, then one bigger than the free space: the request fails as a whole.
    status, body = await post_streamed(client, album, [("fits.jpg", small, 0),
                                                       ("huge.jpg", jpeg(64, 64, seed=61), free + (1 << 20))])
    assert status == 507, body
    assert body["error"] == "insufficient_storage" and "nothing was stored" in body["message"]
    nothing_stored(client)
    # The space came back with the temp files: the next upload works.
    status, body = await upload(client, album, ("fits.jpg", small))
    assert status == 202, body
    await wait_for_photos(client, [body["photos"][0]["id"]])


async def test_the_pre_flight_check_refuses_with_507_before_reading_the_body(data_on_tmpfs, start_client):
    free = shutil.disk_usage(data_on_tmpfs).free
    client = await start_client(storage={"min_free_bytes": free - 64 * 1024})
    album = await new_album(client)
    # Content-Length says this upload would leave less than min_free_bytes: refused before a byte is read.
    status, body = await upload(client, album, ("a.jpg", jpeg(800, 600, seed=62)))
    assert status == 507 and body["error"] == "insufficient_storage" and "nearly full" in body["message"]
    nothing_stored(client)
    # The answer comes before a byte of the body: here the body is never sent at all.
    head = h.request_head("POST", f"/api/albums/{album}/photos", {
        "Authorization": AUTH["Authorization"], "Content-Type": h.multipart_type(), "Content-Length": "1000000"})
    response = await h.raw_http(client.server.host, client.server.port, head)
    assert response.status == 507
    # The disk really filling up below the threshold refuses even a tiny upload.
    filler = fill_up(data_on_tmpfs)
    status, body = await upload(client, album, ("tiny.jpg", jpeg(16, 16, seed=63)))
    assert status == 507
    filler.unlink()
    nothing_stored(client)


async def test_a_full_disk_while_writing_outputs_costs_an_attempt_and_opens_the_breaker(variants_on_tmpfs,
                                                                                       start_client):
    client = await start_client(processing={"workers": 1},  # one job at a time: the count of attempts is exact
                                queue={"breaker_threshold": 2, "breaker_cooldown_seconds": 3, "max_attempts": 3})
    album = await new_album(client)
    filler = fill_up(variants_on_tmpfs)
    status, body = await upload(client, album, ("a.jpg", jpeg(1600, 1200, seed=64)))
    assert status == 202  # originals live on another disk here
    photo_id = body["photos"][0]["id"]

    async def breaker_open():
        async with client.get("/api/admin/queue", headers=AUTH) as r:
            return (await r.json())["circuit_breaker"]["state"] == "open"

    await until(breaker_open, timeout=30, what="the circuit breaker to open")

    async def attempts_recorded():
        return all(a["outcome"] for a in await history(client, photo_id))

    await until(attempts_recorded, what="the failed attempts to be recorded")
    attempts = await history(client, photo_id)
    assert all(a["outcome"] == "retry" and a["error"] == "Storage error: No space left on device." for a in attempts)
    assert len(attempts) == 2, "the breaker stopped further attempts"
    assert not [p for p in variants_on_tmpfs.rglob("*.tmp")], "no partial output is left behind"

    filler.unlink()  # the operator frees space; after the cooldown the jobs finish
    await wait_for_photos(client, [photo_id], timeout=60)
    await assert_outputs_decodable(client, photo_id)
    assert not [p for p in variants_on_tmpfs.rglob("*.tmp")]


# When no tmpfs can be mounted, the upload path still gets a disk-full test: ENOSPC is raised by the lowest write
# call photoq's upload goes through (the aiofiles file object's write), never by photoq's own classes.
async def test_enospc_at_the_write_call_answers_507_and_keeps_nothing(start_client, monkeypatch, tmp_path):
    if mount_tmpfs(tmp_path / "probe-mount", "1m") is None:
        unmount(tmp_path / "probe-mount")
        pytest.skip("a real tmpfs is available: the tmpfs tests cover this")
    from aiofiles.threadpool.binary import AsyncBufferedIOBase

    client = await start_client()
    album = await new_album(client)
    written = {"bytes": 0}
    original_write = AsyncBufferedIOBase.write

    async def write(self, data):
        written["bytes"] += len(data)
        if written["bytes"] > 200_000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return await original_write(self, data)

    monkeypatch.setattr(AsyncBufferedIOBase, "write", write)
    status, body = await post_streamed(client, album, [("a.jpg", jpeg(64, 64, seed=65), 0),
                                                       ("b.jpg", jpeg(64, 64, seed=66), 1 << 20)])
    assert status == 507 and body["error"] == "insufficient_storage"
    nothing_stored(client)


async def test_a_full_disk_under_the_database_answers_507_not_500(data_on_tmpfs, start_client):
    client = await start_client()
    album = await new_album(client)
    filler = fill_up(data_on_tmpfs)
    async with client.post("/api/albums", json={"name": "No room"}, headers=AUTH) as r:
        assert r.status == 507, await r.text()
        assert (await r.json())["error"] == "insufficient_storage"
    status, body = await upload(client, album, ("a.jpg", jpeg(64, 64, seed=67)))
    assert status == 507 and body["error"] == "insufficient_storage"
    async with client.get("/api/albums", headers=AUTH) as r:
        assert r.status == 200  # reading still works
    filler.unlink()
    nothing_stored(client)
    async with client.post("/api/albums", json={"name": "Room again"}, headers=AUTH) as r:
        assert r.status == 201
