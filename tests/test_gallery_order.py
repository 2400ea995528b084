"""Gallery orders over the API: date taken (newest first, upload time when a photo has none), upload order and
name, paged with opaque cursors; the ids the viewer steps through; and a photo's display versions."""

from __future__ import annotations

import io

from PIL import Image

from photoq.gallery_order import Cursor, GalleryOrder

from .support import AUTH, multipart, photo_like, wait_for_photos


def jpeg_taken(taken: str | None, seed: int, offset: str | None = None, size=(320, 240)) -> bytes:
    image = photo_like(*size, seed=seed)
    exif = Image.Exif()
    if taken:
        details = exif.get_ifd(0x8769)
        details[36867] = taken  # DateTimeOriginal
        if offset:
            details[36881] = offset  # OffsetTimeOriginal
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80, exif=exif.tobytes())
    return buffer.getvalue()


async def upload(client, album, *files):
    async with client.post(f"/api/albums/{album}/photos", data=multipart(*files), headers=AUTH) as r:
        assert r.status == 202, await r.text()
        return [p["id"] for p in (await r.json())["photos"]]


async def listing(client, album, query):
    async with client.get(f"/api/albums/{album}/photos?{query}", headers=AUTH) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_orders_and_cursor_pages(client, album):
    ids = {}
    for name, taken, offset in [("b-2019.jpg", "2019:03:01 12:00:00", None),
                                ("A-2023.jpg", "2023:08:15 09:30:00", "+02:00"),
                                ("c-none.jpg", None, None),  # no date: its upload time (now) puts it first
                                ("d-2021.jpg", "2021:12:24 18:00:00", None)]:
        ids[name] = (await upload(client, album, (name, jpeg_taken(taken, seed=len(ids), offset=offset))))[0]

    async def all_pages(order, limit=1):
        seen, cursor = [], None
        while True:
            body = await listing(client, album, f"order={order}&limit={limit}" + (f"&after={cursor}" if cursor else ""))
            seen += [p["filename"] for p in body["photos"]]
            cursor = body["next"]
            if cursor is None:
                return seen

    assert await all_pages("taken") == ["c-none.jpg", "A-2023.jpg", "d-2021.jpg", "b-2019.jpg"]
    assert await all_pages("taken", limit=3) == ["c-none.jpg", "A-2023.jpg", "d-2021.jpg", "b-2019.jpg"]
    assert await all_pages("uploaded") == ["d-2021.jpg", "c-none.jpg", "A-2023.jpg", "b-2019.jpg"]
    assert await all_pages("name", limit=2) == ["A-2023.jpg", "b-2019.jpg", "c-none.jpg", "d-2021.jpg"]
    # Without order the contract's listing is unchanged: oldest first, the id as cursor.
    body = await listing(client, album, "limit=2")
    assert [p["filename"] for p in body["photos"]] == ["b-2019.jpg", "A-2023.jpg"] and body["next"] == str(ids["A-2023.jpg"])

    async with client.get(f"/api/albums/{album}/photo-ids?order=taken", headers=AUTH) as r:
        assert (await r.json())["ids"] == [ids[n] for n in ("c-none.jpg", "A-2023.jpg", "d-2021.jpg", "b-2019.jpg")]
    async with client.get(f"/api/albums/{album}/photo-ids", headers=AUTH) as r:
        assert (await r.json())["order"] == "taken"


async def test_equal_keys_page_by_id_without_losing_or_repeating_a_photo(client, album):
    files = [(f"same-{i}.jpg", jpeg_taken("2020:01:01 00:00:00", seed=i)) for i in range(7)]
    ids = await upload(client, album, *files)
    seen, cursor = [], None
    while True:
        body = await listing(client, album, "order=taken&limit=2" + (f"&after={cursor}" if cursor else ""))
        seen += [p["id"] for p in body["photos"]]
        if not (cursor := body["next"]):
            break
    assert seen == sorted(ids, reverse=True)


async def test_bad_order_and_cursor_are_400(client, album):
    for query, code in [("order=size", "bad_order"), ("order=taken&after=123", "bad_cursor"),
                        ("order=name&after=" + Cursor(1.5, 3).encode(), "bad_cursor"),
                        ("order=taken&after=" + Cursor("x", 3).encode(), "bad_cursor")]:
        async with client.get(f"/api/albums/{album}/photos?{query}", headers=AUTH) as r:
            assert r.status == 400 and (await r.json())["error"] == code, query
    async with client.get(f"/api/albums/{album}/photo-ids?order=nope", headers=AUTH) as r:
        assert r.status == 400


def test_cursors_round_trip_and_reject_the_wrong_order():
    assert Cursor.decode(Cursor(1690000000.5, 12).encode(), GalleryOrder.TAKEN) == Cursor(1690000000.5, 12)
    assert Cursor.decode(Cursor("IMG 1.jpg", 3).encode(), GalleryOrder.NAME) == Cursor("IMG 1.jpg", 3)
    assert Cursor.decode(Cursor("IMG", 3).encode(), GalleryOrder.UPLOADED) is None
    assert Cursor.decode("!!!", GalleryOrder.TAKEN) is None


async def test_display_versions_list_real_sizes_and_the_original(client, album):
    [photo_id] = await upload(client, album, ("wide.jpg", jpeg_taken(None, seed=9, size=(2400, 1200))))
    await wait_for_photos(client, [photo_id])
    async with client.get(f"/api/photos/{photo_id}/display", headers=AUTH) as r:
        body = await r.json()
    assert body["width"] == 2400 and "variant=original&v=" in body["original"]["url"]
    sizes = [(v["width"], v["height"]) for v in body["versions"]]
    assert sizes == sorted(sizes) and all(w <= 2400 and h <= 1200 for w, h in sizes)
    assert (1080, 540) in sizes  # display-1080x1920 fits the width, never upscaled
    for version in body["versions"]:
        async with client.get(version["url"], headers=AUTH) as r:
            assert r.status == 200 and "X-Photoq-Fallback" not in r.headers
            assert "immutable" in r.headers["Cache-Control"]
    async with client.get("/api/photos/999999/display", headers=AUTH) as r:
        assert r.status == 404


async def test_the_album_says_which_hashes_it_has_before_any_byte_is_sent(client, album):
    import hashlib

    data = jpeg_taken(None, seed=21)
    [photo_id] = await upload(client, album, ("have.jpg", data))
    have = hashlib.sha256(data).hexdigest()
    other = hashlib.sha256(b"something else").hexdigest()
    async with client.post(f"/api/albums/{album}/hashes", json={"sha256": [other, have.upper(), have]},
                           headers=AUTH) as r:
        assert r.status == 200
        assert await r.json() == {"present": [have], "photo_ids": {have: photo_id}}
    async with client.post("/api/albums", json={"name": "Other"}, headers=AUTH) as r:
        other_album = (await r.json())["id"]
    async with client.post(f"/api/albums/{other_album}/hashes", json={"sha256": [have]}, headers=AUTH) as r:
        assert (await r.json())["present"] == []  # per album, as duplicates are
    for body, code in [({"sha256": "abc"}, "bad_hashes"), ({"sha256": ["xyz"]}, "bad_hashes"),
                       ({"sha256": [have] * 1001}, "too_many_hashes"), ({}, "bad_hashes")]:
        async with client.post(f"/api/albums/{album}/hashes", json=body, headers=AUTH) as r:
            assert r.status == 400 and (await r.json())["error"] == code
    async with client.post("/api/albums/9999/hashes", json={"sha256": [have]}, headers=AUTH) as r:
        assert r.status == 404
