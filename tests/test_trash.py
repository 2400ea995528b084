"""Albums and photos managed over the API: rename, cover, moving and deleting several photos, and the trash
(gone for API clients at once, restorable for 30 days, purged by the sweep or "empty now"; ids never given again)."""

from __future__ import annotations

from photoq.trash import RETENTION_DAYS
from photoq.web.keys import STORAGE, TRASH

from .support import AUTH, jpeg, multipart, wait_for_photos


async def upload(client, album, *files) -> list[int]:
    async with client.post(f"/api/albums/{album}/photos", data=multipart(*files), headers=AUTH) as r:
        assert r.status == 202, await r.text()
        return [p["id"] for p in (await r.json())["photos"]]


async def call(client, method, path, status=200, **kwargs):
    async with client.request(method, path, headers=AUTH, **kwargs) as r:
        assert r.status == status, (method, path, r.status, await r.text())
        return await r.json() if r.content_type == "application/json" else None


async def new_album(client, name) -> int:
    return (await call(client, "POST", "/api/albums", 201, json={"name": name}))["id"]


def originals(settings) -> list:
    return sorted(p.name for p in (settings.data_dir / "originals").rglob("*") if p.is_file())


async def test_a_deleted_photo_is_gone_for_the_api_until_restored(client, album, settings):
    ids = await upload(client, album, ("a.jpg", jpeg(seed=1)), ("b.jpg", jpeg(seed=2)))
    await wait_for_photos(client, ids)
    await call(client, "DELETE", f"/api/photos/{ids[0]}", 204)
    await call(client, "GET", f"/api/photos/{ids[0]}", 404)
    await call(client, "GET", f"/api/photos/{ids[0]}/file", 404)
    listing = await call(client, "GET", f"/api/albums/{album}/photos")
    assert [p["id"] for p in listing["photos"]] == [ids[1]]
    assert (await call(client, "GET", f"/api/albums/{album}"))["photo_count"] == 1
    assert (await call(client, "GET", f"/api/stats?album_id={album}"))["total"] == 1
    assert (await call(client, "GET", f"/api/albums/{album}/photo-ids"))["ids"] == [ids[1]]
    assert len(originals(settings)) == 2  # kept for a restore

    trash = await call(client, "GET", "/api/trash")
    assert trash["retention_days"] == RETENTION_DAYS == 30
    assert [p["id"] for p in trash["photos"]] == [ids[0]] and trash["albums"] == []

    restored = await call(client, "POST", f"/api/trash/photos/{ids[0]}/restore")
    assert restored["id"] == ids[0] and restored["processing_status"] == "complete"
    assert (await call(client, "GET", f"/api/albums/{album}"))["photo_count"] == 2
    await call(client, "POST", f"/api/trash/photos/{ids[0]}/restore", 404)


async def test_the_same_bytes_uploaded_after_a_delete_are_a_new_photo_and_block_the_restore(client, album):
    data = jpeg(seed=3)
    [first] = await upload(client, album, ("a.jpg", data))
    await call(client, "DELETE", f"/api/photos/{first}", 204)
    [second] = await upload(client, album, ("again.jpg", data))
    assert second != first  # not a duplicate of a photo in the trash
    body = await call(client, "POST", f"/api/trash/photos/{first}/restore", 409)
    assert body["error"] == "duplicate"


async def test_an_unfinished_photo_gets_its_jobs_back_on_restore(client, album):
    await call(client, "POST", "/api/admin/queue/pause")
    [photo_id] = await upload(client, album, ("slow.jpg", jpeg(seed=4)))
    await call(client, "DELETE", f"/api/photos/{photo_id}", 204)
    assert (await call(client, "GET", "/api/admin/queue"))["queue_size"] == 0  # its jobs went with it
    await call(client, "POST", f"/api/trash/photos/{photo_id}/restore")
    assert (await call(client, "GET", "/api/admin/queue"))["queue_size"] == 2
    await call(client, "POST", "/api/admin/queue/resume")
    await wait_for_photos(client, [photo_id])


async def test_a_deleted_album_comes_back_with_its_photos_but_not_the_ones_deleted_before(client, settings):
    album = await new_album(client, "Holiday")
    ids = await upload(client, album, ("a.jpg", jpeg(seed=5)), ("b.jpg", jpeg(seed=6)), ("c.jpg", jpeg(seed=7)))
    await wait_for_photos(client, ids)
    await call(client, "DELETE", f"/api/photos/{ids[2]}", 204)
    await call(client, "DELETE", f"/api/albums/{album}", 204)
    await call(client, "GET", f"/api/albums/{album}", 404)
    await call(client, "GET", f"/api/photos/{ids[0]}", 404)
    assert (await call(client, "GET", "/api/albums"))["albums"] == []
    trash = await call(client, "GET", "/api/trash")
    assert [(a["id"], a["photo_count"]) for a in trash["albums"]] == [(album, 2)]
    assert trash["photos"] == []  # the photo deleted before its album waits with the album's contents
    await call(client, "POST", f"/api/trash/photos/{ids[2]}/restore", 409)

    restored = await call(client, "POST", f"/api/trash/albums/{album}/restore")
    assert restored["name"] == "Holiday" and restored["photo_count"] == 2
    assert [p["id"] for p in (await call(client, "GET", "/api/trash"))["photos"]] == [ids[2]]
    await call(client, "DELETE", "/api/albums/999999", 404)


async def test_purging_removes_files_and_ids_are_never_given_again(client, settings):
    album = await new_album(client, "Gone")
    keep = await new_album(client, "Kept")
    shared = jpeg(seed=8)
    ids = await upload(client, album, ("own.jpg", jpeg(seed=9)), ("shared.jpg", shared))
    [kept] = await upload(client, keep, ("shared.jpg", shared))
    await wait_for_photos(client, [*ids, kept])
    storage = client.server.app[STORAGE]
    variants = [storage.variant_dir(i) for i in ids]
    await call(client, "DELETE", f"/api/albums/{album}", 204)
    assert len(originals(settings)) == 2 and all(v.is_dir() for v in variants)  # kept while in the trash
    body = await call(client, "DELETE", "/api/trash")
    assert body == {"purged_albums": 1, "purged_photos": 0}
    assert len(originals(settings)) == 1  # the shared original stays for the other album
    assert not any(v.exists() for v in variants)
    assert (await call(client, "GET", f"/api/photos/{kept}/file")) is None
    # The newest album and photos were purged: a new album and photo get new ids.
    assert await new_album(client, "Next") > keep
    [newer] = await upload(client, keep, ("new.jpg", jpeg(seed=10)))
    assert newer > max(ids + [kept])


async def test_the_sweep_purges_only_what_is_older_than_the_retention(client, album):
    [old, recent] = await upload(client, album, ("old.jpg", jpeg(seed=11)), ("recent.jpg", jpeg(seed=12)))
    trash = client.server.app[TRASH]
    real_clock = trash.clock
    trash.clock = lambda: real_clock() - 31 * 86400
    await call(client, "DELETE", f"/api/photos/{old}", 204)
    trash.clock = real_clock
    await call(client, "DELETE", f"/api/photos/{recent}", 204)
    purged = await trash.sweep()
    assert (purged.albums, purged.photos) == (0, 1)
    assert [p["id"] for p in (await call(client, "GET", "/api/trash"))["photos"]] == [recent]
    await call(client, "DELETE", f"/api/trash/photos/{recent}", 204)
    await call(client, "DELETE", f"/api/trash/photos/{recent}", 404)


async def test_rename_and_cover(client, album):
    ids = await upload(client, album, ("a.jpg", jpeg(seed=13)), ("b.jpg", jpeg(seed=14)))
    await wait_for_photos(client, ids)
    body = await call(client, "PATCH", f"/api/albums/{album}", json={"name": "  Renamed  ", "cover_photo_id": ids[1]})
    assert body["name"] == "Renamed" and body["cover_photo_id"] == ids[1]
    assert (await call(client, "GET", f"/api/albums/{album}"))["name"] == "Renamed"
    for payload, status in [({"name": ""}, 400), ({"cover_photo_id": 999}, 404), ({"cover_photo_id": "x"}, 400),
                            ({}, 400)]:
        await call(client, "PATCH", f"/api/albums/{album}", status, json=payload)
    other = await new_album(client, "Other")
    [elsewhere] = await upload(client, other, ("c.jpg", jpeg(seed=15)))
    await call(client, "PATCH", f"/api/albums/{album}", 404, json={"cover_photo_id": elsewhere})
    body = await call(client, "PATCH", f"/api/albums/{album}", json={"cover_photo_id": None})
    assert body["cover_photo_id"] is None


async def test_move_and_delete_several_photos(client, album):
    ids = await upload(client, album, *[(f"{i}.jpg", jpeg(seed=20 + i)) for i in range(4)])
    other = await new_album(client, "Other")
    [has_it] = await upload(client, other, ("same.jpg", jpeg(seed=20)))
    body = await call(client, "POST", "/api/photos/move", json={"photo_ids": ids[:3], "album_id": other})
    assert body == {"moved": ids[1:3], "already_in_album": [ids[0]]}
    moved = await call(client, "GET", f"/api/albums/{other}/photos")
    assert sorted(p["id"] for p in moved["photos"]) == sorted([has_it, *ids[1:3]])
    await call(client, "POST", "/api/photos/move", 404, json={"photo_ids": ids, "album_id": 999})
    await call(client, "POST", "/api/photos/move", 400, json={"photo_ids": [], "album_id": other})
    body = await call(client, "POST", "/api/photos/trash", json={"photo_ids": [ids[0], ids[3], 999999]})
    assert body == {"trashed": [ids[0], ids[3]]}
    assert (await call(client, "GET", f"/api/albums/{album}"))["photo_count"] == 0
