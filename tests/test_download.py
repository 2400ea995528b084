"""Downloading originals as one streamed ZIP: a whole album, or chosen photos (API JSON or the page's form post)."""

from __future__ import annotations

import io
import zipfile

from .support import AUTH, image_bytes, jpeg, log_in, multipart


async def upload(client, album_id, *files) -> list[int]:
    async with client.post(f"/api/albums/{album_id}/photos", data=multipart(*files), headers=AUTH) as r:
        assert r.status in (200, 202), await r.text()
        return [p["id"] for p in (await r.json())["photos"]]


async def zip_from(response) -> zipfile.ZipFile:
    assert response.status == 200, await response.text()
    assert response.content_type == "application/zip"
    body = await response.read()
    assert int(response.headers["Content-Length"]) == len(body)
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.testzip() is None
    return archive


async def test_an_album_downloads_as_a_zip_of_its_originals(client, album):
    files = [("IMG_0001.jpg", jpeg(seed=1)), ("IMG_0001.jpg", jpeg(seed=2)), ("scan.png", image_bytes("PNG", seed=3))]
    await upload(client, album, *files)
    async with client.get(f"/api/albums/{album}/download", headers=AUTH) as response:
        assert "attachment" in response.headers["Content-Disposition"]
        assert response.headers["Content-Disposition"].endswith("Test.zip")
        archive = await zip_from(response)
    assert archive.namelist() == ["IMG_0001.jpg", "IMG_0001 (2).jpg", "scan.png"]
    assert [archive.read(n) for n in archive.namelist()] == [data for _, data in files]


async def test_chosen_photos_download_in_the_order_asked(client, album):
    ids = await upload(client, album, *[(f"p{i}.jpg", jpeg(seed=i)) for i in range(4)])
    async with client.post("/api/photos/download", json={"photo_ids": [ids[3], ids[1], ids[3]]}, headers=AUTH) as r:
        archive = await zip_from(r)
    assert archive.namelist() == ["p3.jpg", "p1.jpg"]
    assert archive.read("p1.jpg") == jpeg(seed=1)


async def test_bad_or_unknown_ids_are_refused_before_any_byte(client, album):
    ids = await upload(client, album, ("a.jpg", jpeg()))
    for body, status, code in [
        ({"photo_ids": []}, 400, "bad_photo_ids"),
        ({"photo_ids": "1"}, 400, "bad_photo_ids"),
        ({"photo_ids": [True]}, 400, "bad_photo_ids"),
        ({"photo_ids": [ids[0], 999999]}, 404, "not_found"),
        ({"photo_ids": list(range(1, 20_002))}, 400, "too_many_photos"),
    ]:
        async with client.post("/api/photos/download", json=body, headers=AUTH) as r:
            assert r.status == status, body
            assert (await r.json())["error"] == code
    async with client.get("/api/albums/999/download", headers=AUTH) as r:
        assert r.status == 404
    async with client.get(f"/api/albums/{album}/download") as r:
        assert r.status == 401


async def test_an_empty_album_is_an_empty_zip(client, album):
    async with client.get(f"/api/albums/{album}/download", headers=AUTH) as r:
        archive = await zip_from(r)
    assert archive.namelist() == []


async def test_the_form_post_needs_the_session_and_its_csrf_token(client, album):
    ids = await upload(client, album, ("a.jpg", jpeg(seed=5)), ("b.jpg", jpeg(seed=6)))
    await log_in(client)
    async with client.get(f"/albums/{album}") as r:
        page = await r.text()
    csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
    form = {"photo_ids": f"{ids[0]},{ids[1]}"}
    async with client.post("/api/photos/download", data=form) as r:
        assert r.status == 403
    async with client.post("/api/photos/download", data={**form, "csrf_token": csrf}) as r:
        archive = await zip_from(r)
    assert archive.namelist() == ["a.jpg", "b.jpg"]


async def test_a_missing_original_is_left_out_not_a_broken_archive(client, album, settings):
    ids = await upload(client, album, ("a.jpg", jpeg(seed=7)), ("b.jpg", jpeg(seed=8)))
    async with client.get(f"/api/photos/{ids[0]}", headers=AUTH) as r:
        sha = (await r.json())["sha256"]
    for path in (settings.data_dir / "originals").rglob(f"{sha}.*"):
        path.unlink()
    async with client.get(f"/api/albums/{album}/download", headers=AUTH) as r:
        archive = await zip_from(r)
        assert r.headers["X-Photoq-Photo-Count"] == "1"
    assert archive.namelist() == ["b.jpg"]
