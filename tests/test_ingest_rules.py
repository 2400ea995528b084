"""What the upload endpoint accepts and refuses: dedup, each limit, bad files, auth, and the request-level gates."""

from __future__ import annotations

import asyncio
import struct
import zlib

import pytest

from photoq.errors import BadRequest
from photoq.ingest import Accepted, Duplicate, IncomingFile, Rejected
from photoq.web.keys import INGEST, STORAGE

from .support import AUTH, jpeg, multipart, noisy_png, wait_for_photos


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge canvas: a decompression bomb's calling card."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


async def upload(client, album, *files, headers=AUTH):
    async with client.post(f"/api/albums/{album}/photos", data=multipart(*files), headers=headers) as response:
        return response.status, await response.json()


def leftovers(client) -> list:
    return list(client.app[STORAGE].tmp.iterdir())


async def test_same_bytes_in_the_same_album_are_a_duplicate_without_a_job(client, album):
    data = jpeg(seed=21)
    status, body = await upload(client, album, ("one.jpg", data), ("again.jpg", data))
    assert status == 202
    first, second = body["photos"]
    assert first["status"] == "pending"
    assert second == {"filename": "again.jpg", "status": "duplicate", "duplicate_of": first["id"]}
    status, body = await upload(client, album, ("later.jpg", data))
    assert status == 200 and body["accepted"] == 0
    assert body["photos"][0]["duplicate_of"] == first["id"]
    async with client.get("/api/admin/queue", headers=AUTH) as r:
        queue = await r.json()
    assert sum(1 for j in queue["jobs"] if j["photo_id"] == first["id"]) <= 2
    async with client.get(f"/api/albums/{album}", headers=AUTH) as r:
        assert (await r.json())["photo_count"] == 1


async def test_same_bytes_in_another_album_is_a_new_photo(client, album):
    data = jpeg(seed=22)
    async with client.post("/api/albums", json={"name": "Other"}, headers=AUTH) as r:
        other = (await r.json())["id"]
    _, first = await upload(client, album, ("a.jpg", data))
    status, second = await upload(client, other, ("a.jpg", data))
    assert status == 202 and second["photos"][0]["status"] == "pending"
    ids = [first["photos"][0]["id"], second["photos"][0]["id"]]
    await wait_for_photos(client, ids)
    # Deleting one album keeps the shared original for the other.
    async with client.delete(f"/api/albums/{album}", headers=AUTH) as r:
        assert r.status == 204
    async with client.get(f"/api/photos/{ids[1]}/file", headers=AUTH) as r:
        assert r.status == 200 and await r.read() == data


async def test_file_over_the_byte_limit_is_rejected_and_others_are_kept(start_client):
    client = await start_client(upload={"max_file_bytes": 50_000})
    async with client.post("/api/albums", json={"name": "A"}, headers=AUTH) as r:
        album = (await r.json())["id"]
    big = noisy_png(200, 200, seed=3)
    assert len(big) > 50_000
    small = jpeg(64, 64, seed=4)
    status, body = await upload(client, album, ("big.png", big), ("small.jpg", small))
    assert status == 202
    assert body["photos"][0]["status"] == "rejected" and body["photos"][0]["error"] == "too_large"
    assert body["photos"][1]["status"] == "pending"
    status, body = await upload(client, album, ("big.png", big))
    assert status == 413 and body["rejected"] == 1 and body["accepted"] == 0
    assert leftovers(client) == []


async def test_when_every_file_is_refused_the_answer_is_an_error_with_the_per_file_body(start_client):
    client = await start_client(upload={"max_file_bytes": 50_000})
    async with client.post("/api/albums", json={"name": "A"}, headers=AUTH) as r:
        album = (await r.json())["id"]
    text, html, big = b"plain text, not a photo\n" * 10, b"<!doctype html><p>no</p>" * 10, noisy_png(200, 200, seed=5)
    status, body = await upload(client, album, ("a.jpg", text), ("b.png", big), ("c.jpg", html))
    assert status == 400  # refusals of different kinds
    assert body["error"] == "unsupported_media_type"  # the first one's
    assert body["message"] == "All 3 files were rejected: 2 are not supported images, 1 is too large."
    assert body["accepted"] == 0 and body["rejected"] == 3
    assert [(p["filename"], p["error"]) for p in body["photos"]] == [
        ("a.jpg", "unsupported_media_type"), ("b.png", "too_large"), ("c.jpg", "unsupported_media_type")]
    # of one kind: its status
    status, body = await upload(client, album, ("a.jpg", text), ("c.jpg", html))
    assert status == 415 and body["error"] == "unsupported_media_type"
    assert body["message"] == "All 2 files were rejected: 2 are not supported images."
    status, body = await upload(client, album, ("b.png", big), ("empty.jpg", b""))
    assert status == 400 and body["error"] == "too_large"
    assert body["message"] == "All 2 files were rejected: 1 is too large, 1 is empty."
    # one file accepted: no error, whatever the others were
    status, body = await upload(client, album, ("a.jpg", text), ("ok.jpg", jpeg(64, 64, seed=6)))
    assert status == 202 and "error" not in body and "message" not in body
    # every file there already: nothing refused, so no error either
    status, body = await upload(client, album, ("again.jpg", jpeg(64, 64, seed=6)))
    assert status == 200 and "error" not in body and body["photos"][0]["status"] == "duplicate"
    assert leftovers(client) == []


async def test_ingest_answers_typed_outcomes_without_http(client, album):
    """Ingest takes (filename, chunks) from any source and answers per file; the web layer picks statuses."""
    ingest = client.app[INGEST]
    good = jpeg(64, 64, seed=7)

    async def chunks_of(data: bytes):
        for i in range(0, len(data), 1000):
            yield data[i:i + 1000]

    async def files():
        yield IncomingFile("a/../first.jpg", chunks_of(good))
        yield IncomingFile("second.jpg", chunks_of(good))
        yield IncomingFile("notes.txt", chunks_of(b"not an image at all, " * 20))
        yield Rejected("odd", BadRequest("refused by the caller", code="unexpected_field"))

    first, second, notes, odd = await ingest.receive(album, files())
    assert isinstance(first, Accepted) and first.filename == "first.jpg"
    assert second == Duplicate("second.jpg", first.photo_id)
    assert isinstance(notes, Rejected) and notes.filename == "notes.txt"
    assert (notes.error.code, notes.error.status) == ("unsupported_media_type", 415)
    assert isinstance(odd, Rejected) and odd.error.code == "unexpected_field"
    assert leftovers(client) == []


async def test_too_many_files_refuses_the_whole_request_and_stores_nothing(start_client):
    client = await start_client(upload={"max_files_per_request": 2})
    async with client.post("/api/albums", json={"name": "A"}, headers=AUTH) as r:
        album = (await r.json())["id"]
    files = [(f"{i}.jpg", jpeg(64, 64, seed=i)) for i in range(3)]
    async with client.post(f"/api/albums/{album}/photos", data=multipart(*files), headers=AUTH) as r:
        assert r.status == 413
        assert (await r.json())["error"] == "too_many_files"
    async with client.get(f"/api/albums/{album}", headers=AUTH) as r:
        assert (await r.json())["photo_count"] == 0
    assert leftovers(client) == []
    assert not any(client.app[STORAGE].originals.rglob("*.jpg"))


async def test_decompression_bomb_is_rejected_before_any_decode(client, album):
    status, body = await upload(client, album, ("bomb.png", png_declaring(100_000, 100_000)))
    assert status == 413
    assert body["photos"][0]["error"] == "too_many_pixels"
    assert leftovers(client) == []


async def test_pixel_limit_comes_from_config(start_client):
    client = await start_client(upload={"max_pixels": 10_000})
    async with client.post("/api/albums", json={"name": "A"}, headers=AUTH) as r:
        album = (await r.json())["id"]
    status, body = await upload(client, album, ("a.jpg", jpeg(200, 100)))
    assert status == 413 and body["photos"][0]["error"] == "too_many_pixels"


@pytest.mark.parametrize("name, data, expected_status, expected_error", [
    ("notes.jpg", b"Just some text pretending to be a photo.\n" * 20, 415, "unsupported_media_type"),
    ("page.jpg", b"<!doctype html><html><body><script>alert(1)</script></body></html>", 415, "unsupported_media_type"),
    ("vector.png", b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="10" height="10"/></svg>', 415,
     "unsupported_media_type"),
    ("empty.jpg", b"", 400, "empty_file"),
    ("broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, 400, "corrupt_image"),
    ("cut.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 30, 400, "corrupt_image"),
])
async def test_bad_files_get_the_contracts_error(client, album, name, data, expected_status, expected_error):
    status, body = await upload(client, album, (name, data))
    assert status == expected_status
    entry = body["photos"][0]
    assert entry["status"] == "rejected" and entry["error"] == expected_error
    assert entry["message"] and entry["filename"] == name
    # every part refused: the contract's top-level error too, here the file's own
    assert body["error"] == expected_error and body["message"] == entry["message"]
    assert leftovers(client) == []
    async with client.get(f"/api/albums/{album}", headers=AUTH) as r:
        assert (await r.json())["photo_count"] == 0


async def test_hostile_filenames_are_display_names_only(client, album):
    data = jpeg(seed=30)
    status, body = await upload(client, album, ("../../etc/passwd\u202egpj.jpg", data))
    assert status == 202
    assert body["photos"][0]["filename"] == "passwdgpj.jpg"
    stored = [p for p in client.app[STORAGE].root.rglob("*") if p.is_file()]
    assert not any("passwd" in p.name or "gpj" in p.name for p in stored)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": "Basic x"}])
async def test_api_needs_the_token(client, album, headers):
    for method, path in [("GET", "/api/albums"), ("POST", f"/api/albums/{album}/photos"), ("GET", "/api/stats"),
                         ("GET", "/api/events"), ("GET", "/api/admin/queue")]:
        async with client.request(method, path, headers=headers) as r:
            assert r.status == 401, path
            body = await r.json()
            assert body["error"] == "unauthorized" and body["message"]


async def test_healthz_needs_no_token(client):
    async with client.get("/healthz") as r:
        assert r.status == 200 and await r.json() == {"status": "ok"}


async def test_unknown_album_is_404_before_reading_the_body(client):
    status, body = await upload(client, 999, ("a.jpg", jpeg()))
    assert status == 404 and body["error"] == "not_found"


async def test_busy_album_refuses_uploads_when_configured(start_client):
    client = await start_client(upload={"block_while_processing": True})
    async with client.post("/api/albums", json={"name": "A"}, headers=AUTH) as r:
        album = (await r.json())["id"]
    await client.post("/api/admin/queue/pause", headers=AUTH)
    status, _ = await upload(client, album, ("a.jpg", jpeg(seed=1)))
    assert status == 202
    status, body = await upload(client, album, ("b.jpg", jpeg(seed=2)))
    assert status == 409 and body["error"] == "album_busy"
    await client.post("/api/admin/queue/resume", headers=AUTH)


async def test_full_queue_answers_503_with_retry_after(start_client):
    client = await start_client(queue={"max_pending": 2})
    async with client.post("/api/albums", json={"name": "A"}, headers=AUTH) as r:
        album = (await r.json())["id"]
    await client.post("/api/admin/queue/pause", headers=AUTH)
    status, _ = await upload(client, album, ("a.jpg", jpeg(seed=1)))  # two jobs: the queue is now full
    assert status == 202
    async with client.post(f"/api/albums/{album}/photos", data=multipart(("b.jpg", jpeg(seed=2))),
                           headers=AUTH) as r:
        assert r.status == 503
        assert int(r.headers["Retry-After"]) > 0
        assert (await r.json())["error"] == "overloaded"
    assert leftovers(client) == []


async def test_low_disk_answers_507_before_accepting_bytes(start_client):
    client = await start_client(storage={"min_free_bytes": 2**62})
    async with client.post("/api/albums", json={"name": "A"}, headers=AUTH) as r:
        album = (await r.json())["id"]
    status, body = await upload(client, album, ("a.jpg", jpeg()))
    assert status == 507 and body["error"] == "insufficient_storage"
    assert leftovers(client) == []


async def test_wrong_field_name_and_missing_filename_are_rejected(client, album):
    form = multipart(("a.jpg", jpeg(seed=5)), field="photo")
    async with client.post(f"/api/albums/{album}/photos", data=form, headers=AUTH) as r:
        assert r.status == 400
        assert (await r.json())["photos"][0]["error"] == "unexpected_field"
    async with client.post(f"/api/albums/{album}/photos", data=b"not multipart",
                           headers={**AUTH, "Content-Type": "application/octet-stream"}) as r:
        assert r.status == 400 and (await r.json())["error"] == "bad_multipart"
    async with client.post(f"/api/albums/{album}/photos", data=b"--x--",
                           headers={**AUTH, "Content-Type": "multipart/form-data"}) as r:
        assert r.status == 400 and (await r.json())["error"] == "bad_multipart"
    assert leftovers(client) == []


async def test_album_validation(client):
    for body in [{}, {"name": ""}, {"name": "   "}, {"name": 5}, {"name": "x" * 201}]:
        async with client.post("/api/albums", json=body, headers=AUTH) as r:
            assert r.status == 400, body
    async with client.post("/api/albums", data=b"{not json", headers={**AUTH, "Content-Type": "application/json"}) as r:
        assert r.status == 400 and (await r.json())["error"] == "bad_json"
    async with client.get("/api/albums/abc", headers=AUTH) as r:
        assert r.status == 400
    async with client.get("/api/albums/99999999999999999999999", headers=AUTH) as r:
        assert r.status == 404
    async with client.get("/api/photos/12345", headers=AUTH) as r:
        assert r.status == 404 and (await r.json())["error"] == "not_found"


async def test_the_request_byte_cap_counts_each_request_on_its_own(start_client):
    client = await start_client(upload={"max_request_bytes": 300_000})
    async with client.post("/api/albums", json={"name": "A"}, headers=AUTH) as r:
        album = (await r.json())["id"]
    files = [noisy_png(160, 160, seed=s) for s in range(4)]  # ~77 KB each: two per request fit, four do not
    results = await asyncio.gather(*(upload(client, album, ("a.png", files[i]), ("b.png", files[i + 1]))
                                     for i in (0, 2)))
    assert [status for status, _ in results] == [202, 202]
    async with client.post(f"/api/albums/{album}/photos", headers=AUTH,
                           data=multipart(*[(f"{i}.png", noisy_png(160, 160, seed=10 + i)) for i in range(4)])) as r:
        assert r.status == 413 and (await r.json())["error"] == "request_too_large"
    assert leftovers(client) == []


async def test_a_busy_album_still_takes_the_rest_of_its_open_batch(start_client):
    client = await start_client(upload={"block_while_processing": True})
    async with client.post("/api/albums", json={"name": "A"}, headers=AUTH) as r:
        album = (await r.json())["id"]
    await client.post("/api/admin/queue/pause", headers=AUTH)
    batch = {**AUTH, "X-Photoq-Batch": "batch-0001-abcd"}
    status, _ = await upload(client, album, ("a.jpg", jpeg(seed=1)), headers=batch)
    assert status == 202
    status, _ = await upload(client, album, ("b.jpg", jpeg(seed=2)), headers=batch)
    assert status == 202, "the second request of the same batch must be accepted"
    status, body = await upload(client, album, ("c.jpg", jpeg(seed=3)),
                                headers={**AUTH, "X-Photoq-Batch": "another-batch-99"})
    assert status == 409 and body["error"] == "album_busy"
    async with client.get("/api/albums", headers=AUTH) as r:
        assert (await r.json())["albums"][0]["processing"] is True
    await client.post("/api/admin/queue/resume", headers=AUTH)
