"""Uploading every supported format, end to end: 202, the contract's shapes, outputs on disk, live completion."""

from __future__ import annotations

import base64
import io

from PIL import Image

from photoq.web.keys import STORAGE

from .support import AUTH, SseReader, image_bytes, jpeg, multipart, wait_for_photos

DEFAULT_BOXES = {
    "thumb-150": (150, 150), "thumb-300": (300, 300), "thumb-600": (600, 600),
    "display-1080x1920": (1080, 1920), "display-2160x3840": (2160, 3840), "display-1038x1278": (1038, 1278),
}
PHOTO_KEYS = {"id", "album_id", "filename", "sha256", "size_bytes", "width", "height", "content_type", "taken_at",
              "exif", "processing_status", "thumbnail_status", "variant_status", "attempts", "error", "created_at",
              "completed_at", "urls", "thumbhash"}


async def test_every_supported_format_is_accepted_and_fully_processed(client, album):
    files = [
        ("a.jpg", jpeg(2400, 1600, seed=1)),
        ("b.png", image_bytes("PNG", 800, 600, seed=2)),
        ("c.webp", image_bytes("WEBP", 1200, 900, seed=3)),
        ("d.gif", image_bytes("GIF", 320, 200, seed=4)),
        ("e.tiff", image_bytes("TIFF", 1000, 700, seed=5)),
    ]
    async with client.post(f"/api/albums/{album}/photos", data=multipart(*files), headers=AUTH) as response:
        assert response.status == 202
        body = await response.json()
    assert body["accepted"] == 5 and body["rejected"] == 0
    assert [p["filename"] for p in body["photos"]] == [name for name, _ in files]
    assert all(p["status"] == "pending" and isinstance(p["id"], int) for p in body["photos"])
    ids = [p["id"] for p in body["photos"]]

    await wait_for_photos(client, ids)

    expected_types = ["image/jpeg", "image/png", "image/webp", "image/gif", "image/tiff"]
    for photo_id, (_, data), content_type in zip(ids, files, expected_types):
        async with client.get(f"/api/photos/{photo_id}", headers=AUTH) as response:
            photo = await response.json()
        assert set(photo) >= PHOTO_KEYS
        assert photo["processing_status"] == photo["thumbnail_status"] == photo["variant_status"] == "complete"
        assert photo["content_type"] == content_type
        assert photo["size_bytes"] == len(data)
        assert photo["completed_at"] is not None and photo["error"] is None
        source = Image.open(io.BytesIO(data))
        assert (photo["width"], photo["height"]) == source.size
        assert set(photo["urls"]) == {"original", *DEFAULT_BOXES}
        for name, (box_w, box_h) in DEFAULT_BOXES.items():
            async with client.get(photo["urls"][name], headers=AUTH) as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "image/webp"
                assert "X-Photoq-Fallback" not in response.headers
                assert response.headers.get("ETag")
                output = Image.open(io.BytesIO(await response.read()))
                output.load()
            assert output.format == "WEBP"
            assert output.width <= box_w and output.height <= box_h, name
            assert output.width <= source.width and output.height <= source.height, f"{name} was upscaled"
            assert "exif" not in output.info
        async with client.get(photo["urls"]["original"], headers=AUTH) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == content_type
            assert await response.read() == data


async def test_exif_orientation_6_comes_out_rotated(client, album):
    # Stored landscape with orientation 6 ("rotate 90 CW to display"): every output must be portrait.
    data = jpeg(1600, 1000, seed=7, orientation=6)
    async with client.post(f"/api/albums/{album}/photos", data=multipart(("r.jpg", data)), headers=AUTH) as r:
        photo_id = (await r.json())["photos"][0]["id"]
    await wait_for_photos(client, [photo_id])
    async with client.get(f"/api/photos/{photo_id}", headers=AUTH) as r:
        photo = await r.json()
    assert (photo["width"], photo["height"]) == (1000, 1600)
    assert photo["exif"]["orientation"] == 6
    for name in ("thumb-300", "display-1080x1920"):
        async with client.get(photo["urls"][name], headers=AUTH) as r:
            output = Image.open(io.BytesIO(await r.read()))
        assert output.height > output.width, name


async def test_outputs_are_written_where_storage_says_and_nothing_temporary_is_left(client, album):
    async with client.post(f"/api/albums/{album}/photos", data=multipart(("a.jpg", jpeg(seed=11))),
                           headers=AUTH) as r:
        photo_id = (await r.json())["photos"][0]["id"]
    await wait_for_photos(client, [photo_id])
    storage = client.app[STORAGE]
    names = sorted(p.name for p in storage.variant_dir(photo_id).iterdir())
    assert names == sorted(f"{n}.webp" for n in DEFAULT_BOXES)
    assert list(storage.tmp.iterdir()) == []


async def test_variant_not_ready_falls_back_to_the_original(client, album):
    await client.post("/api/admin/queue/pause", headers=AUTH)
    data = jpeg(seed=12)
    async with client.post(f"/api/albums/{album}/photos", data=multipart(("a.jpg", data)), headers=AUTH) as r:
        photo_id = (await r.json())["photos"][0]["id"]
    async with client.get(f"/api/photos/{photo_id}/file?variant=thumb-150", headers=AUTH) as r:
        assert r.status == 200
        assert r.headers["X-Photoq-Fallback"] == "original"
        assert r.headers["Content-Type"] == "image/jpeg"
        assert await r.read() == data
    async with client.get(f"/api/photos/{photo_id}/file?variant=huge", headers=AUTH) as r:
        assert r.status == 400
        assert (await r.json())["error"] == "unknown_variant"


async def test_processing_status_shape(client, album):
    async with client.post(f"/api/albums/{album}/photos", data=multipart(("a.jpg", jpeg(seed=13))),
                           headers=AUTH) as r:
        photo_id = (await r.json())["photos"][0]["id"]
    await wait_for_photos(client, [photo_id])
    async with client.get(f"/api/photos/{photo_id}/processing-status", headers=AUTH) as r:
        body = await r.json()
    assert set(body) == {"photo_id", "processing_status", "thumbnail_status", "variant_status",
                         "processing_attempts", "last_attempt", "completed_at", "error"}
    assert body["processing_status"] == "complete"
    assert body["processing_attempts"] == 2  # one thumbnail attempt, one variant attempt
    assert body["last_attempt"].endswith("Z")


async def test_thumbnail_job_stores_a_thumbhash_placeholder_in_the_photo_and_its_events(client, album):
    async with client.get(f"/api/events?album_id={album}", headers=AUTH) as events:
        reader = SseReader(events)
        await reader.next()  # initial stats
        async with client.post(f"/api/albums/{album}/photos", data=multipart(("t.jpg", jpeg(1200, 800, seed=7))),
                               headers=AUTH) as response:
            assert response.status == 202
            photo_id = (await response.json())["photos"][0]["id"]
        seen = []
        while not seen or seen[-1]["thumbnail_status"] != "complete":
            event = await reader.next(timeout=60)
            if event.name == "photo" and event.data["id"] == photo_id:
                seen.append(event.data)
    assert all("thumbhash" in e for e in seen)
    assert seen[0]["thumbhash"] is None  # pending: nothing rendered yet
    placeholder = seen[-1]["thumbhash"]
    assert placeholder and 5 <= len(base64.b64decode(placeholder, validate=True)) <= 25

    await wait_for_photos(client, [photo_id])
    async with client.get(f"/api/photos/{photo_id}", headers=AUTH) as response:
        photo = await response.json()
    assert photo["thumbhash"] == placeholder  # the variant job keeps it
