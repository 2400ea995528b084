"""Resumable uploads over tus 1.0 (/api/uploads), driven by the real tuspy client where one exists: a finished upload
is a photo exactly like a multipart one, a cut-off upload resumes from the server's offset (also across a kill -9),
and every refusal is the contract's JSON error with nothing left behind."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import sqlite3

import aiohttp
import pytest
from tusclient import client as tus_client
from tusclient.exceptions import TusUploadFailed

from photoq.resumable import CHECKPOINT_BYTES, WRITE_BYTES
from photoq.web.keys import CONFIG, RESUMABLE, STORAGE

from . import hostile as h
from .support import AUTH, ServerProcess, jpeg, log_in, multipart, noisy_png, until, wait_for_photos

TUS = {"Tus-Resumable": "1.0.0"}


# -- helpers -------------------------------------------------------------------------------------------------------


def base_url(client) -> str:
    return str(client.server.make_url("")).rstrip("/")


def uploader(url: str, data: bytes, album: int | str, filename: str = "photo.jpg", **options):
    """A real tuspy uploader (synchronous, requests-based: run its calls in a thread)."""
    client = tus_client.TusClient(f"{url}/api/uploads", headers=dict(AUTH))
    metadata = {"album_id": str(album), "filename": filename}
    return client.uploader(file_stream=io.BytesIO(data), metadata=metadata, **options)


def resumed_uploader(upload_url: str, data: bytes):
    """A new tuspy uploader for an existing upload: it asks the server for the offset (HEAD) as it is made."""
    client = tus_client.TusClient(upload_url.rsplit("/", 1)[0], headers=dict(AUTH))
    return client.uploader(file_stream=io.BytesIO(data), url=upload_url)


async def resume_upload(upload_url: str, data: bytes):
    """Resume an existing upload with a new tuspy uploader; returns (the offset it started from, the uploader)."""
    def run():
        up = resumed_uploader(upload_url, data)
        start = up.offset
        up.upload()
        return start, up

    return await asyncio.to_thread(run)


async def tus_upload(url: str, data: bytes, album: int | str, filename: str = "photo.jpg", **options):
    def run():
        up = uploader(url, data, album, filename, **options)
        up.upload()
        return up

    return await asyncio.to_thread(run)


def final_headers(up) -> dict:
    return up.request.response_headers  # lower-cased by tuspy


async def new_album(client, name="Resumable") -> int:
    async with client.post("/api/albums", json={"name": name}, headers=AUTH) as r:
        assert r.status == 201
        return (await r.json())["id"]


async def create(client, album, length: int, filename="photo.jpg", extra: dict | None = None) -> aiohttp.ClientResponse:
    metadata = f"album_id {b64(str(album))},filename {b64(filename)}"
    headers = {**AUTH, **TUS, "Upload-Length": str(length), "Upload-Metadata": metadata, **(extra or {})}
    return await client.post("/api/uploads", headers=headers)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def created_path(client, album, length: int, filename="photo.jpg") -> str:
    r = await create(client, album, length, filename)
    assert r.status == 201, await r.text()
    assert r.headers["Tus-Resumable"] == "1.0.0" and r.headers["Upload-Expires"].endswith("GMT")
    return r.headers["Location"]


async def patch(client, path: str, offset: int, body: bytes, **headers) -> aiohttp.ClientResponse:
    all_headers = {**AUTH, **TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream",
                   **headers}
    return await client.patch(path, data=body, headers=all_headers)


async def head_offset(client, path: str) -> int:
    async with client.head(path, headers={**AUTH, **TUS}) as r:
        assert r.status == 200, r.status
        assert r.headers["Cache-Control"] == "no-store"
        return int(r.headers["Upload-Offset"])


def upload_folder(client, path: str):
    return client.app[RESUMABLE].folder(path.rsplit("/", 1)[1])


async def photo_json(client, photo_id: int) -> dict:
    async with client.get(f"/api/photos/{photo_id}", headers=AUTH) as r:
        assert r.status == 200
        return await r.json()


def photo_count(client) -> int:
    with sqlite3.connect(f"file:{client.app[STORAGE].database_path}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT count(*) FROM photos").fetchone()[0]


def stored_originals(client) -> list:
    return [p for p in client.app[STORAGE].originals.rglob("*") if p.is_file()]


async def send_part_of_body(port: int, path: str, offset: int, total: int, part: bytes):
    """A PATCH that announces `total` bytes but sends only `part` and keeps the connection open (a Wi-Fi drop)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = h.request_head("PATCH", path, {**AUTH, **TUS, "Upload-Offset": str(offset), "Content-Length": str(total),
                                          "Content-Type": "application/offset+octet-stream"})
    writer.write(head + part)
    await writer.drain()
    return reader, writer


# -- discovery and a whole upload ------------------------------------------------------------------------------------


async def test_options_says_what_the_server_speaks(client):
    async with client.options("/api/uploads", headers=AUTH) as r:
        assert r.status == 204
        assert r.headers["Tus-Resumable"] == "1.0.0" and r.headers["Tus-Version"] == "1.0.0"
        assert set(r.headers["Tus-Extension"].split(",")) == {"creation", "termination", "expiration", "checksum"}
        assert int(r.headers["Tus-Max-Size"]) == client.app[CONFIG].upload.max_file_bytes
        assert "sha1" in r.headers["Tus-Checksum-Algorithm"].split(",")


async def test_a_tuspy_upload_becomes_a_complete_photo_like_a_multipart_one(client, album):
    data = jpeg(1600, 1200, seed=1)
    up = await tus_upload(base_url(client), data, album, "IMG_0001.jpg", chunk_size=64 * 1024)
    headers = final_headers(up)
    assert headers["x-photoq-upload-status"] == "pending"
    photo_id = int(headers["x-photoq-photo-id"])
    await wait_for_photos(client, [photo_id])
    photo = await photo_json(client, photo_id)
    assert photo["processing_status"] == "complete"
    assert photo["album_id"] == album and photo["filename"] == "IMG_0001.jpg"
    assert photo["sha256"] == hashlib.sha256(data).hexdigest() and photo["size_bytes"] == len(data)
    assert (photo["width"], photo["height"]) == (1600, 1200)
    for variant in ("original", "thumb-150", "display-1080x1920"):
        async with client.get(f"/api/photos/{photo_id}/file?variant={variant}", headers=AUTH) as r:
            assert r.status == 200
            if variant == "original":
                assert await r.read() == data
    # The outcome stays readable; the bytes left the upload folder for the store.
    async with client.get(up.url.split(base_url(client), 1)[1], headers=AUTH) as r:
        assert r.status == 200
        body = await r.json()
    assert body["status"] == "pending" and body["id"] == photo_id and body["filename"] == "IMG_0001.jpg"
    assert body["offset"] == body["length"] == len(data)
    assert not (upload_folder(client, up.url) / "data").exists()
    assert list(client.app[STORAGE].tmp.iterdir()) == []


async def test_checksums_are_checked_and_a_mismatch_discards_the_chunk(client, album):
    data = jpeg(900, 600, seed=2)
    up = await tus_upload(base_url(client), data, album, chunk_size=100_000, upload_checksum=True)
    assert final_headers(up)["x-photoq-upload-status"] == "pending"

    other = jpeg(900, 600, seed=3)
    path = await created_path(client, album, len(other))
    r = await patch(client, path, 0, other[:5000])
    assert r.status == 204 and r.headers["Upload-Offset"] == "5000"
    wrong = "sha1 " + base64.b64encode(hashlib.sha1(b"something else").digest()).decode()
    r = await patch(client, path, 5000, other[5000:9000], **{"Upload-Checksum": wrong})
    assert r.status == 460
    assert (await r.json())["error"] == "checksum_mismatch"
    assert await head_offset(client, path) == 5000
    assert (upload_folder(client, path) / "data").stat().st_size == 5000
    right = "sha1 " + base64.b64encode(hashlib.sha1(other[5000:]).digest()).decode()
    r = await patch(client, path, 5000, other[5000:], **{"Upload-Checksum": right})
    assert r.status == 204 and r.headers["X-Photoq-Upload-Status"] == "pending"
    r = await patch(client, path, 0, b"x", **{"Upload-Checksum": "crc32 AAAA"})
    assert r.status == 400


# -- cut off, resumed ------------------------------------------------------------------------------------------------


async def test_an_upload_stopped_after_some_chunks_resumes_with_a_new_tuspy_uploader(client, album):
    data = noisy_png(400, 300, seed=4)  # ~360 kB
    url = base_url(client)

    def first_chunks():
        up = uploader(url, data, album, "resumed.png", chunk_size=20_000)
        up.upload(stop_at=60_000)
        return up.url, up.offset

    upload_url, offset = await asyncio.to_thread(first_chunks)
    assert offset == 60_000
    path = upload_url.split(url, 1)[1]
    assert await head_offset(client, path) == 60_000

    start, up = await resume_upload(upload_url, data)
    assert start == 60_000  # from the server's offset, not from 0
    photo_id = int(final_headers(up)["x-photoq-photo-id"])
    await wait_for_photos(client, [photo_id])
    photo = await photo_json(client, photo_id)
    assert photo["sha256"] == hashlib.sha256(data).hexdigest() and photo["filename"] == "resumed.png"


async def test_a_connection_cut_off_halfway_keeps_what_arrived_and_tuspy_resumes_from_there(client, album):
    data = noisy_png(1000, 1000, seed=5)  # ~3 MB
    path = await created_path(client, album, len(data))
    half = len(data) // 2
    reader, writer = await send_part_of_body(client.server.port, path, 0, len(data), data[:half])
    await until(lambda: _file_size_at_least(upload_folder(client, path) / "data", WRITE_BYTES))  # it is being read
    writer.close()  # the network goes away mid-body
    await until(lambda: _offset_is(client, path, half))

    start, up = await resume_upload(base_url(client) + path, data)
    assert start == half
    photo_id = int(final_headers(up)["x-photoq-photo-id"])
    await wait_for_photos(client, [photo_id])
    assert (await photo_json(client, photo_id))["sha256"] == hashlib.sha256(data).hexdigest()


async def _offset_is(client, path, expected) -> bool:
    return await head_offset(client, path) == expected


async def test_a_second_patch_takes_over_from_a_stalled_one_without_corrupting_the_upload(client, album):
    data = noisy_png(1000, 1000, seed=6)  # ~3 MB
    path = await created_path(client, album, len(data))
    half = len(data) // 2
    reader, writer = await send_part_of_body(client.server.port, path, 0, len(data), data[:half])
    await until(lambda: _file_size_at_least(upload_folder(client, path) / "data", WRITE_BYTES))
    # The client lost that connection (the server does not know yet) and starts again from 0.
    r = await patch(client, path, 0, data)
    assert r.status == 409
    assert (await r.json())["error"] == "offset_mismatch"
    stalled = await asyncio.wait_for(h._read_response(reader), 10)
    assert stalled.status == 409 and b"upload_taken_over" in stalled.body
    writer.close()
    assert await head_offset(client, path) == half
    r = await patch(client, path, half, data[half:])
    assert r.status == 204 and r.headers["X-Photoq-Upload-Status"] == "pending"
    photo_id = int(r.headers["X-Photoq-Photo-Id"])
    assert (await photo_json(client, photo_id))["sha256"] == hashlib.sha256(data).hexdigest()


async def _file_size_at_least(path, size) -> bool:
    return path.exists() and path.stat().st_size >= size


async def test_resume_after_the_server_is_killed_mid_upload(tmp_path):
    """kill -9 a real `photoq serve` twice: between chunks, and in the middle of one long PATCH body."""
    server = ServerProcess(tmp_path / "data", workers=1)
    server.start()
    try:
        async with aiohttp.ClientSession(server.url) as session:
            async with session.post("/api/albums", json={"name": "Restart"}, headers=AUTH) as r:
                album = (await r.json())["id"]
        data = noisy_png(2400, 1600, seed=7)  # ~11.5 MB: more than one checkpoint of a single PATCH
        assert len(data) > CHECKPOINT_BYTES + 2 * 1024 * 1024

        def first_chunks():
            up = uploader(server.url, data, album, "big.png", chunk_size=1024 * 1024)
            up.upload(stop_at=2 * 1024 * 1024)
            return up.url

        upload_url = await asyncio.to_thread(first_chunks)
        path = upload_url.split(server.url, 1)[1]
        server.kill9()
        # What a creation cut off by the kill would leave: removed at start, the real upload kept.
        leftover = tmp_path / "data" / "resumable" / (".new-" + "A" * 32)
        leftover.mkdir()
        (leftover / "data").write_bytes(b"partial")
        server.start()
        assert not leftover.exists()

        # Resume in one long PATCH, cut by a second kill -9 after more than a checkpoint's worth arrived.
        offset = await asyncio.to_thread(lambda: resumed_uploader(upload_url, data).offset)
        assert offset == 2 * 1024 * 1024
        sent = offset + CHECKPOINT_BYTES + 1024 * 1024
        reader, writer = await send_part_of_body(server.port, path, offset, len(data) - offset, data[offset:sent])
        async with aiohttp.ClientSession(server.url) as session:
            async def checkpointed() -> bool:
                async with session.head(path, headers={**AUTH, **TUS}) as r:
                    return int(r.headers["Upload-Offset"]) > offset
            await until(checkpointed)
        server.kill9()
        writer.close()
        server.start()

        start, up = await resume_upload(upload_url, data)
        assert offset + CHECKPOINT_BYTES <= start <= sent
        photo_id = int(final_headers(up)["x-photoq-photo-id"])
        async with aiohttp.ClientSession(server.url) as session:
            await wait_for_photos(session, [photo_id])
            photo = await photo_json(session, photo_id)
        assert photo["sha256"] == hashlib.sha256(data).hexdigest() and photo["processing_status"] == "complete"
    finally:
        server.stop()


# -- termination and expiry ------------------------------------------------------------------------------------------


async def test_termination_removes_the_upload_and_its_bytes(client, album):
    data = jpeg(800, 600, seed=8)
    path = await created_path(client, album, len(data))
    assert (await patch(client, path, 0, data[:1000])).status == 204
    folder = upload_folder(client, path)
    assert (folder / "data").stat().st_size == 1000
    async with client.delete(path, headers={**AUTH, **TUS}) as r:
        assert r.status == 204 and r.headers["Tus-Resumable"] == "1.0.0"
    assert not folder.exists()
    async with client.head(path, headers={**AUTH, **TUS}) as r:
        assert r.status == 404
    r = await patch(client, path, 1000, data[1000:])
    assert r.status == 404 and (await r.json())["error"] == "not_found"
    assert photo_count(client) == 0


async def test_termination_stops_a_patch_that_is_still_writing(client, album):
    data = noisy_png(1000, 1000, seed=15)  # ~3 MB
    path = await created_path(client, album, len(data))
    reader, writer = await send_part_of_body(client.server.port, path, 0, len(data), data[: len(data) // 2])
    folder = upload_folder(client, path)
    await until(lambda: _file_size_at_least(folder / "data", WRITE_BYTES))
    async with client.delete(path, headers={**AUTH, **TUS}) as r:
        assert r.status == 204
    stalled = await asyncio.wait_for(h._read_response(reader), 10)
    writer.close()
    assert stalled.status == 409 and b"upload_taken_over" in stalled.body
    assert not folder.exists()
    assert list(client.app[RESUMABLE].root.iterdir()) == []


async def test_expired_uploads_are_refused_and_swept_with_their_bytes(client, album):
    uploads = client.app[RESUMABLE]
    data = jpeg(800, 600, seed=9)
    first = await created_path(client, album, len(data))
    second = await created_path(client, album, len(data))
    for path in (first, second):
        assert (await patch(client, path, 0, data[:2000])).status == 204
    real_clock = uploads.clock
    uploads.clock = lambda: real_clock() + uploads.expire_seconds + 1
    try:
        r = await patch(client, first, 2000, data[2000:])
        assert r.status == 410 and (await r.json())["error"] == "upload_expired"
        assert not upload_folder(client, first).exists()
        assert await uploads.sweep_expired() == 1
        assert not upload_folder(client, second).exists()
        async with client.head(second, headers={**AUTH, **TUS}) as r:
            assert r.status == 404
    finally:
        uploads.clock = real_clock
    assert photo_count(client) == 0


async def test_the_periodic_sweep_removes_expired_uploads(start_client):
    client = await start_client(upload={"resumable_expire_hours": 0.0003})  # about a second
    album = await new_album(client)
    path = await created_path(client, album, 5000)
    assert (await patch(client, path, 0, jpeg(64, 64)[:100])).status == 204
    folder = upload_folder(client, path)
    assert folder.exists()

    async def gone() -> bool:
        return not folder.exists()

    await until(gone)


# -- what a multipart upload would refuse, refused the same way -------------------------------------------------------


async def test_a_finished_upload_that_is_not_an_image_is_refused_and_leaves_nothing(client, album):
    data = b"MZ this is an executable, not a photo " * 100
    with pytest.raises(TusUploadFailed) as failure:
        await tus_upload(base_url(client), data, album, "photo.jpg")
    assert failure.value.status_code == 415
    assert b"unsupported_media_type" in failure.value.response_content
    folders = list(client.app[RESUMABLE].root.iterdir())
    assert len(folders) == 1 and not (folders[0] / "data").exists()
    async with client.get(f"/api/uploads/{folders[0].name}", headers=AUTH) as r:
        body = await r.json()
    assert body["status"] == "rejected" and body["error"] == "unsupported_media_type" and body["message"]
    assert photo_count(client) == 0 and stored_originals(client) == []


async def test_a_decompression_bomb_is_refused_from_its_header_as_in_a_multipart_upload(client, album):
    bomb = h.png_declaring(30_000, 30_000)
    path = await created_path(client, album, len(bomb), "bomb.png")
    r = await patch(client, path, 0, bomb)
    assert r.status == 413
    assert (await r.json())["error"] == "too_many_pixels"
    assert photo_count(client) == 0 and stored_originals(client) == []
    assert not (upload_folder(client, path) / "data").exists()


async def test_a_duplicate_answers_with_the_photo_it_duplicates(client, album):
    data = jpeg(700, 500, seed=10)
    async with client.post(f"/api/albums/{album}/photos", data=multipart(("first.jpg", data)), headers=AUTH) as r:
        first_id = (await r.json())["photos"][0]["id"]
    up = await tus_upload(base_url(client), data, album, "again.jpg")
    assert final_headers(up)["x-photoq-upload-status"] == "duplicate"
    assert int(final_headers(up)["x-photoq-photo-id"]) == first_id
    async with client.get(up.url.split(base_url(client), 1)[1], headers=AUTH) as r:
        body = await r.json()
    assert body["status"] == "duplicate" and body["duplicate_of"] == first_id
    assert photo_count(client) == 1
    assert not (upload_folder(client, up.url) / "data").exists()


@pytest.mark.parametrize("case", ["too-large", "no-length", "bad-length", "unknown-album", "no-album", "bad-album",
                                  "no-filename", "bad-metadata", "empty", "old-version", "deferred"])
async def test_creation_refusals_are_clear_and_create_nothing(start_client, case):
    client = await start_client(upload={"max_file_bytes": 1_000_000})
    album = await new_album(client)
    metadata = f"album_id {b64(str(album))},filename {b64('a.jpg')}"
    headers = {**AUTH, **TUS, "Upload-Length": "5000", "Upload-Metadata": metadata}
    expected = {
        "too-large": (413, "too_large", {"Upload-Length": "1000001"}),
        "no-length": (400, "missing_upload_length", {"Upload-Length": None}),
        "bad-length": (400, "bad_upload_length", {"Upload-Length": "-5"}),
        "unknown-album": (404, "not_found", {"Upload-Metadata": f"album_id {b64('999')},filename {b64('a.jpg')}"}),
        "no-album": (400, "missing_album_id", {"Upload-Metadata": f"filename {b64('a.jpg')}"}),
        "bad-album": (400, "bad_id", {"Upload-Metadata": f"album_id {b64('../1')},filename {b64('a.jpg')}"}),
        "no-filename": (400, "missing_filename", {"Upload-Metadata": f"album_id {b64(str(album))}"}),
        "bad-metadata": (400, "bad_metadata", {"Upload-Metadata": "album_id not*base64"}),
        "empty": (400, "empty_file", {"Upload-Length": "0"}),
        "old-version": (412, "unsupported_tus_version", {"Tus-Resumable": "0.2.2"}),
        "deferred": (400, "missing_upload_length", {"Upload-Length": None, "Upload-Defer-Length": "1"}),
    }
    status, code, changes = expected[case]
    for name, value in changes.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    async with client.post("/api/uploads", headers=headers) as r:
        assert r.status == status, await r.text()
        body = await r.json()
        assert body["error"] == code and body["message"]
        assert r.headers["Tus-Resumable"] == "1.0.0"
        if status == 412:
            assert r.headers["Tus-Version"] == "1.0.0"
    assert list(client.app[RESUMABLE].root.iterdir()) == []


async def test_a_full_queue_refuses_creation_with_retry_after(start_client):
    client = await start_client(queue={"max_pending": 1})
    album = await new_album(client)
    await client.post("/api/admin/queue/pause", headers=AUTH)
    async with client.post(f"/api/albums/{album}/photos", data=multipart(("a.jpg", jpeg(64, 64))), headers=AUTH) as r:
        assert r.status == 202
    r = await create(client, album, 5000)
    assert r.status == 503 and r.headers["Retry-After"]
    assert (await r.json())["error"] == "overloaded"


# -- protocol errors -------------------------------------------------------------------------------------------------


async def test_patch_refuses_a_wrong_offset_content_type_version_or_length(client, album):
    data = jpeg(640, 480, seed=11)
    path = await created_path(client, album, len(data))
    assert (await patch(client, path, 0, data[:100])).status == 204

    r = await patch(client, path, 0, data[:100])
    assert r.status == 409 and (await r.json())["error"] == "offset_mismatch"
    r = await patch(client, path, 100, data[100:200], **{"Content-Type": "application/octet-stream"})
    assert r.status == 415 and (await r.json())["error"] == "bad_content_type"
    r = await patch(client, path, 100, data[100:200], **{"Tus-Resumable": "2.0.0"})
    assert r.status == 412 and r.headers["Tus-Version"] == "1.0.0"
    r = await patch(client, path, 100, data[100:] + b"one byte too many")
    assert r.status == 413
    headers = {**AUTH, "Upload-Offset": "100", "Content-Type": "application/offset+octet-stream"}
    async with client.patch(path, data=b"x", headers=headers) as r:
        assert r.status == 412  # no Tus-Resumable at all
    r = await patch(client, path, 100, b"", **{"Upload-Offset": "abc"})
    assert r.status == 400 and (await r.json())["error"] == "bad_upload_offset"
    assert await head_offset(client, path) == 100
    r = await patch(client, path, 100, data[100:])
    assert r.status == 204 and r.headers["X-Photoq-Upload-Status"] == "pending"


HOSTILE_IDS = ["..", "..%2f..%2fphotoq.db", "%2e%2e", "x" * 31, "x" * 33, "A" * 31 + ".", "A" * 31 + "%00",
               "A" * 31 + "%2f", ".new-" + "A" * 27, "resumable"]


async def test_hostile_upload_ids_reach_no_file(client, album):
    path = await created_path(client, album, 100)
    real_id = path.rsplit("/", 1)[1]
    for raw in HOSTILE_IDS + [real_id.upper() if real_id.upper() != real_id else real_id.lower()]:
        target = f"/api/uploads/{raw}"
        async with client.head(target, headers={**AUTH, **TUS}) as r:
            assert r.status == 404, raw
        for method in ("GET", "PATCH", "DELETE"):
            headers = {**AUTH, **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
            async with client.request(method, target, headers=headers, data=b"abc") as r:
                assert r.status == 404, (method, raw, r.status)
                assert (await r.json())["error"] == "not_found"
    assert await head_offset(client, path) == 0
    assert (client.app[STORAGE].database_path).exists()


async def test_uploads_need_credentials_and_the_csrf_token_with_a_session(client, album):
    async with client.options("/api/uploads") as r:
        assert r.status == 401
    r = await create(client, album, 100, extra={"Authorization": ""})
    assert r.status == 401
    cookie_client_headers = {**TUS, "Upload-Length": "100",
                             "Upload-Metadata": f"album_id {b64(str(album))},filename {b64('a.jpg')}"}
    await log_in(client)
    async with client.post("/api/uploads", headers=cookie_client_headers) as r:
        assert r.status == 403 and (await r.json())["error"] == "csrf_failed"


async def test_status_while_uploading_and_a_busy_album_refuses_new_uploads(start_client):
    client = await start_client(upload={"block_while_processing": True})
    album = await new_album(client)
    path = await created_path(client, album, 5000, "later.jpg")
    assert (await patch(client, path, 0, jpeg(64, 64)[:100])).status == 204
    async with client.get(path, headers=AUTH) as r:
        body = await r.json()
    assert body["status"] == "uploading" and body["offset"] == 100 and body["length"] == 5000
    assert body["filename"] == "later.jpg" and body["album_id"] == album and body["expires_at"].endswith("GMT")
    await client.post("/api/admin/queue/pause", headers=AUTH)
    async with client.post(f"/api/albums/{album}/photos", data=multipart(("a.jpg", jpeg(64, 64))), headers=AUTH) as r:
        assert r.status == 202
    r = await create(client, album, 5000)
    assert r.status == 409 and (await r.json())["error"] == "album_busy"


async def test_an_album_deleted_during_the_upload_refuses_the_last_byte_and_keeps_nothing(client, album):
    data = jpeg(640, 480, seed=12)
    path = await created_path(client, album, len(data))
    assert (await patch(client, path, 0, data[:1000])).status == 204
    async with client.delete(f"/api/albums/{album}", headers=AUTH) as r:
        assert r.status == 204
    r = await patch(client, path, 1000, data[1000:])
    assert r.status == 404 and (await r.json())["error"] == "not_found"
    assert photo_count(client) == 0 and stored_originals(client) == []
    assert not (upload_folder(client, path) / "data").exists()


async def test_many_small_chunks_are_not_starved_by_the_rate_limit(start_client):
    client = await start_client(ratelimit={"capacity": 10, "refill_per_second": 0.01})
    album = await new_album(client)
    data = jpeg(640, 480, seed=13)
    chunk = len(data) // 30 + 1
    up = await tus_upload(base_url(client), data, album, chunk_size=chunk)  # 30 PATCHes
    assert final_headers(up)["x-photoq-upload-status"] == "pending"


# -- a disk that fills up during a PATCH ------------------------------------------------------------------------------


@pytest.fixture
def data_on_tmpfs(tmp_path):
    from .test_faults import tmpfs

    with tmpfs(tmp_path / "data", "16m") as path:
        yield path


async def test_a_disk_that_fills_up_during_a_patch_answers_507_and_keeps_a_consistent_offset(data_on_tmpfs,
                                                                                          start_client):
    from .test_faults import fill_up

    client = await start_client()
    album = await new_album(client)
    data = noisy_png(1000, 1000, seed=14)  # ~3 MB
    path = await created_path(client, album, len(data))
    sent = len(data) // 2
    reader, writer = await send_part_of_body(client.server.port, path, 0, len(data), data[:sent])
    partial = upload_folder(client, path) / "data"
    await until(lambda: _file_size_at_least(partial, WRITE_BYTES))
    filler = fill_up(data_on_tmpfs)
    try:
        writer.write(data[sent:])
        await writer.drain()
    except ConnectionError:
        pass
    answer = await asyncio.wait_for(h._read_response(reader), 30)
    writer.close()
    assert answer.status == 507 and b"insufficient_storage" in answer.body
    offset = await head_offset(client, path)
    assert partial.stat().st_size == offset and partial.read_bytes() == data[:offset]

    filler.unlink()
    up = await asyncio.to_thread(resumed_uploader, base_url(client) + path, data)
    assert up.offset == offset
    await asyncio.to_thread(up.upload)
    photo_id = int(final_headers(up)["x-photoq-photo-id"])
    assert (await photo_json(client, photo_id))["sha256"] == hashlib.sha256(data).hexdigest()
