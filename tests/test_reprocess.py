"""`photoq reprocess`: after the output settings change, only the missing or stale outputs are rendered again, on a
real app with real uploads and image processes, through the API and the command (with and without a running
`photoq serve`)."""

from __future__ import annotations

import io
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from photoq import imaging
from photoq.config import Output
from photoq.ops.doctor import Doctor
from photoq.models import JobKind, OutputFile
from photoq.ops.reprocess import settings_fingerprints
from photoq.web.keys import CONFIG, DB, QUEUE, STORAGE

from .support import (
    AUTH,
    TEST_TOKEN,
    ServerProcess,
    SseReader,
    jpeg,
    log_in,
    multipart,
    session_csrf,
    wait_for_photos,
)
from .test_cli import photoq
from .test_queue_behaviour import upload_with_originals_gone

SMALL = Output("small", "thumbnail", 64, 64)
LARGE = Output("large", "thumbnail", 128, 128)
DISPLAY = Output("display", "variant", 320, 320)
BASE = (SMALL, LARGE, DISPLAY)
LARGER = Output("large", "thumbnail", 200, 200)  # LARGE with another size
# 640x480 photos: small 64x48, large 128x96 (200x150 as LARGER), display 320x240.


async def post_json(client, path, body, headers=AUTH):
    async with client.post(path, json=body, headers=headers) as r:
        return r.status, await r.json()


async def reprocess(client, **body) -> dict:
    status, answer = await post_json(client, "/api/admin/reprocess", body)
    assert status == 200, answer
    return answer


async def processed_photos(start_client, outputs=BASE, count=2, **sections):
    """A started app with `count` photos fully processed under `outputs`: (client, album id, photo ids)."""
    client = await start_client(outputs=outputs, **sections)
    status, album = await post_json(client, "/api/albums", {"name": "A"})
    assert status == 201
    async with client.post(f"/api/albums/{album['id']}/photos", headers=AUTH,
                           data=multipart(*[(f"{i}.jpg", jpeg(seed=40 + i)) for i in range(count)])) as r:
        assert r.status == 202, await r.text()
        ids = [p["id"] for p in (await r.json())["photos"]]
    await wait_for_photos(client, ids)
    return client, album["id"], ids


async def restart(client, start_client, outputs, **sections):
    """Stop the app and start it again on the same data directory with other output settings."""
    await client.close()
    return await start_client(outputs=outputs, **sections)


def snapshot(client, ids) -> dict[tuple[int, str], tuple[int, int]]:
    """(photo id, file name) -> (inode, mtime): an output written again gets a new inode (written, then renamed)."""
    files = {}
    for photo_id in ids:
        for path in client.app[STORAGE].variant_dir(photo_id).iterdir():
            info = path.stat()
            files[(photo_id, path.name)] = (info.st_ino, info.st_mtime_ns)
    return files


def rewritten(before: dict, after: dict) -> set[tuple[int, str]]:
    return {key for key in after if before.get(key) != after[key]}


def pixel_size(client, photo_id, filename) -> tuple[int, int]:
    with Image.open(client.app[STORAGE].variant_dir(photo_id) / filename) as im:
        return im.size


async def job_counts(client) -> dict:
    return await client.app[DB].job_counts()


# -- what is queued ------------------------------------------------------------------------------------------------


async def test_a_changed_size_renders_only_that_output_again(start_client):
    client, _, ids = await processed_photos(start_client)
    assert (await reprocess(client))["queued"] == 0  # fresh outputs: nothing to do
    before = snapshot(client, ids)

    client = await restart(client, start_client, (SMALL, LARGER, DISPLAY))
    answer = await reprocess(client)
    assert answer == {"queued": 2, "outputs": {"large": 2}, "photos": 2, "already_queued": 0, "skipped_failed": 0,
                      "dry_run": False}
    await wait_for_photos(client, ids)

    after = snapshot(client, ids)
    assert rewritten(before, after) == {(i, "large.webp") for i in ids}
    for photo_id in ids:
        assert pixel_size(client, photo_id, "large.webp") == (200, 150)
        outputs = await client.app[DB].photo_outputs(photo_id)
        assert (outputs["large"].width, outputs["large"].height) == (200, 150)
        assert outputs["large"].spec == "webp 200x200 q80 m0" and outputs["large"].format == "webp"
        assert (outputs["small"].width, outputs["small"].height) == (64, 48)
    assert (await reprocess(client))["queued"] == 0


async def test_a_changed_format_is_served_from_the_old_file_until_it_is_rendered_again(start_client):
    client, _, ids = await processed_photos(start_client)
    before = snapshot(client, ids)
    client = await restart(client, start_client, (SMALL, LARGE, Output("display", "variant", 320, 320, "jpeg")),
                           processing={"workers": 1})
    await client.post("/api/admin/queue/pause", headers=AUTH)

    async def served(photo_id):
        async with client.get(f"/api/photos/{photo_id}/file?variant=display", headers=AUTH) as r:
            assert r.status == 200 and "X-Photoq-Fallback" not in r.headers
            with Image.open(io.BytesIO(await r.read())) as im:
                return r.headers["Content-Type"], im.format

    # The configuration says jpeg, the file on disk is still the webp it was written as: that is what is served,
    # and doctor does not call it missing.
    assert await served(ids[0]) == ("image/webp", "WEBP")
    assert await Doctor(client.app[CONFIG], client.app[DB], client.app[STORAGE], repair=False).run() == 0
    assert (await reprocess(client))["outputs"] == {"display": 2}
    assert await served(ids[0]) == ("image/webp", "WEBP")  # and still, while the re-render waits

    await client.post("/api/admin/queue/resume", headers=AUTH)
    await wait_for_photos(client, ids)
    for photo_id in ids:
        assert await served(photo_id) == ("image/jpeg", "JPEG")
        folder = client.app[STORAGE].variant_dir(photo_id)
        assert not (folder / "display.webp").exists()  # the old file went once the new one was recorded
        assert (await client.app[DB].photo_outputs(photo_id))["display"].spec == "jpeg 320x320 q80"
    after = snapshot(client, ids)
    assert rewritten(before, after) == {(i, "display.jpg") for i in ids}
    assert {(i, "small.webp") for i in ids} <= after.keys()


async def test_an_added_output_is_the_only_one_rendered_for_old_photos(start_client):
    client, _, ids = await processed_photos(start_client)
    before = snapshot(client, ids)
    client = await restart(client, start_client, (*BASE, Output("medium", "thumbnail", 96, 96)))
    assert (await reprocess(client))["outputs"] == {"medium": 2}
    await wait_for_photos(client, ids)
    after = snapshot(client, ids)
    assert rewritten(before, after) == {(i, "medium.webp") for i in ids}
    assert all(pixel_size(client, i, "medium.webp") == (96, 72) for i in ids)


async def test_variant_limits_what_is_queued_and_a_dry_run_queues_nothing(start_client):
    client, _, ids = await processed_photos(start_client)
    before = snapshot(client, ids)
    client = await restart(client, start_client, (Output("small", "thumbnail", 48, 48), LARGE,
                                                  Output("display", "variant", 256, 256)))

    dry = await reprocess(client, variants=["small"], dry_run=True)
    assert dry["outputs"] == {"small": 2} and dry["dry_run"] is True
    assert (await job_counts(client))["pending"] == 0
    assert (await client.app[DB].get_photo(ids[0])).processing_status == "complete"

    assert (await reprocess(client, variants=["small"]))["outputs"] == {"small": 2}
    await wait_for_photos(client, ids)
    assert rewritten(before, snapshot(client, ids)) == {(i, "small.webp") for i in ids}
    assert (await reprocess(client, variants=["small", "large"]))["queued"] == 0
    assert (await reprocess(client))["outputs"] == {"display": 2}
    await wait_for_photos(client, ids)
    assert rewritten(before, snapshot(client, ids)) == {(i, n) for i in ids for n in ("small.webp", "display.webp")}


async def test_a_deleted_output_file_is_queued_and_all_renders_everything_again(start_client):
    client, album, ids = await processed_photos(start_client)
    before = snapshot(client, ids)
    (client.app[STORAGE].variant_dir(ids[0]) / "large.webp").unlink()
    assert await reprocess(client, dry_run=True) == {
        "queued": 1, "outputs": {"large": 1}, "photos": 1, "already_queued": 0, "skipped_failed": 0, "dry_run": True}
    assert (await reprocess(client))["outputs"] == {"large": 1}
    await wait_for_photos(client, ids)
    after = snapshot(client, ids)
    assert rewritten(before, after) == {(ids[0], "large.webp")}

    answer = await reprocess(client, all=True, variants=["display"], album_id=album)
    assert answer["outputs"] == {"display": 2}
    await wait_for_photos(client, ids)
    assert rewritten(after, snapshot(client, ids)) == {(i, "display.webp") for i in ids}


async def test_doctor_repair_renders_only_the_missing_output_again(start_client):
    client, _, ids = await processed_photos(start_client)
    before = snapshot(client, ids)
    (client.app[STORAGE].variant_dir(ids[1]) / "small.webp").unlink()
    assert await Doctor(client.app[CONFIG], client.app[DB], client.app[STORAGE], repair=True).run() == 0
    await wait_for_photos(client, ids)
    assert rewritten(before, snapshot(client, ids)) == {(ids[1], "small.webp")}


async def test_a_photo_being_rendered_again_is_processing_and_keeps_showing_its_outputs(start_client):
    client, album, ids = await processed_photos(start_client)
    client = await restart(client, start_client, (SMALL, LARGER, DISPLAY))
    await client.post("/api/admin/queue/pause", headers=AUTH)
    async with client.get("/api/events", headers=AUTH) as events:
        reader = SseReader(events)
        await reader.next()  # initial stats
        await reprocess(client)
        seen = {}
        while len(seen) < len(ids):
            event = await reader.next()
            if event.name == "photo":
                seen[event.data["id"]] = event.data
    for photo_id in ids:
        assert (seen[photo_id]["processing_status"], seen[photo_id]["thumbnail_status"],
                seen[photo_id]["variant_status"]) == ("processing", "pending", "complete")
        async with client.get(f"/api/photos/{photo_id}", headers=AUTH) as r:
            assert (await r.json())["processing_status"] == "processing"
        async with client.get(f"/api/photos/{photo_id}/file?variant=large", headers=AUTH) as r:
            assert r.status == 200 and "X-Photoq-Fallback" not in r.headers  # the old output, until replaced

    # The gallery keeps the thumbnails made before instead of a "Queued" placeholder.
    await log_in(client)
    async with client.get(f"/albums/{album}") as r:
        html = await r.text()
    for photo_id in ids:
        tile = html[html.index(f'id="photo-{photo_id}"'):]
        tile = tile[:tile.index("</li>")]
        assert 'data-state="done"' in tile and 'class="tile-img"' in tile

    # Asked again while queued: nothing is queued twice.
    again = await reprocess(client)
    assert again["queued"] == 0 and again["already_queued"] == 2
    assert (await job_counts(client))["pending"] == 2

    await client.post("/api/admin/queue/resume", headers=AUTH)
    await wait_for_photos(client, ids)
    assert (await reprocess(client))["queued"] == 0


async def test_an_unfinished_job_takes_on_outputs_asked_for_while_it_runs(start_client):
    client, _, ids = await processed_photos(start_client, count=1)
    (photo_id,) = ids
    client = await restart(client, start_client, (Output("small", "thumbnail", 48, 48), LARGER, DISPLAY))
    queue, db = client.app[QUEUE], client.app[DB]
    await queue.pause()
    assert await queue.queue_outputs([(photo_id, JobKind.THUMBNAIL, ["small"])]) == [("queued", ["small"])]
    # A worker claims the job for "small" (claimed by hand here, so that the next step happens while it runs).
    (claimed,), _ = await db.claim_jobs(time.time(), time.time() + 60, 1)
    assert claimed.job.outputs == ("small",)
    assert await queue.queue_outputs([(photo_id, JobKind.THUMBNAIL, ["small", "large"])]) == [("queued", ["large"])]
    spec = imaging.OutputSpec("small", 48, 48)
    state = await db.complete_job(claimed.job, [OutputFile("small", 48, 36, 10, format="webp",
                                                           spec=imaging.spec_fingerprint(spec))], time.time())
    # Not complete: the job runs again for what was asked meanwhile, with fresh attempts.
    assert state.thumbnail_status == "pending"
    (job,) = await db.list_jobs(None, 10)
    assert (job.status, job.outputs, job.attempts) == ("pending", ("large",), 0)

    before = snapshot(client, ids)
    await queue.resume()
    await wait_for_photos(client, ids)
    assert rewritten(before, snapshot(client, ids)) == {(photo_id, "large.webp")}
    assert pixel_size(client, photo_id, "large.webp") == (200, 150)


async def test_failed_photos_are_left_for_retry_failed(start_client):
    sections = {"queue": {"max_attempts": 1, "breaker_threshold": 100}}
    client, album, (good,) = await processed_photos(start_client, count=1, **sections)
    (bad,), _ = await upload_with_originals_gone(client, album, ("bad.jpg", jpeg(seed=99)))
    await wait_for_photos(client, [bad], statuses=("failed",))
    client = await restart(client, start_client, (SMALL, LARGER, DISPLAY), **sections)
    answer = await reprocess(client)
    assert (answer["outputs"], answer["photos"], answer["skipped_failed"]) == ({"large": 1}, 1, 1)
    await wait_for_photos(client, [good])
    photo = await client.app[DB].get_photo(bad)
    assert photo.processing_status == "failed"
    assert {str(j.status) for j in await client.app[DB].list_jobs(None, 10) if j.photo_id == bad} == {"failed"}


# -- the endpoint's refusals ---------------------------------------------------------------------------------------


async def test_bad_reprocess_requests_get_clear_errors_and_queue_nothing(start_client):
    client, album, ids = await processed_photos(start_client, count=1)
    client = await restart(client, start_client, (SMALL, LARGER, DISPLAY))
    wrong = {**settings_fingerprints(client.app[CONFIG]), "large": "webp 128x128 q80 m0"}
    cases = [
        ({"variants": ["nope"]}, 400, "unknown_variant"),
        ({"variants": "large"}, 400, "bad_variants"),
        ({"variants": []}, 400, "bad_variants"),
        ({"variants": [1]}, 400, "bad_variants"),
        ({"album_id": "1"}, 400, "bad_id"),
        ({"album_id": album + 1}, 404, "unknown_album"),
        ({"dry_run": "yes"}, 400, "bad_request"),
        ({"expect": ["large"]}, 400, "bad_request"),
        ({"expect": wrong}, 409, "settings_differ"),
    ]
    for body, status, code in cases:
        got, answer = await post_json(client, "/api/admin/reprocess", body)
        assert (got, answer["error"]) == (status, code), body
        assert answer["message"]
    async with client.post("/api/admin/reprocess", data="{not json", headers=AUTH) as r:
        assert r.status == 400 and (await r.json())["error"] == "bad_json"
    async with client.post("/api/admin/reprocess", json={}) as r:
        assert r.status == 401
    # A browser session needs the CSRF token, as every other write does.
    await log_in(client)
    async with client.post("/api/admin/reprocess", json={}) as r:
        assert r.status == 403 and (await r.json())["error"] == "csrf_failed"
    assert (await job_counts(client))["pending"] == 0
    assert (await client.app[DB].get_photo(ids[0])).processing_status == "complete"

    csrf = {"X-CSRF-Token": session_csrf(client)}
    status, answer = await post_json(client, "/api/admin/reprocess", {}, headers=csrf)
    assert status == 200 and answer["outputs"] == {"large": 1}
    await wait_for_photos(client, ids)


# -- the command ---------------------------------------------------------------------------------------------------


def config_file(path: Path, outputs) -> Path:
    path.write_text("".join(
        f'[[outputs]]\nname = "{o.name}"\nkind = "{o.kind}"\nwidth = {o.width}\nheight = {o.height}\n'
        f'format = "{o.format}"\n\n' for o in outputs))
    return path


@pytest.fixture
def server(tmp_path):
    server = ServerProcess(tmp_path / "data", workers=1, config=config_file(tmp_path / "before.toml", BASE))
    yield server
    server.stop()


async def upload_and_process(server, count=2) -> list[int]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        async with session.post("/api/albums", json={"name": "A"}, headers=AUTH) as r:
            album = (await r.json())["id"]
        async with session.post(f"/api/albums/{album}/photos", headers=AUTH,
                                data=multipart(*[(f"{i}.jpg", jpeg(seed=70 + i)) for i in range(count)])) as r:
            assert r.status == 202
            ids = [p["id"] for p in (await r.json())["photos"]]
        await wait_for_photos(session, ids)
    return ids


async def set_paused(data: Path, paused: bool) -> None:
    from photoq.db import Database
    from photoq.queue import PAUSED_SETTING

    db = Database(data / "photoq.db")
    await db.open()
    try:
        await db.set_setting(PAUSED_SETTING, "1" if paused else "0")
    finally:
        await db.close()


async def large_sizes(data: Path, ids) -> set[tuple[int, int]]:
    from photoq.db import Database

    db = Database(data / "photoq.db")
    await db.open()
    try:
        return {(o["large"].width, o["large"].height) for o in [await db.photo_outputs(i) for i in ids]}
    finally:
        await db.close()


async def test_the_command_asks_the_running_server_which_refuses_other_settings(server, tmp_path):
    data = tmp_path / "data"
    server.start()
    ids = await upload_and_process(server)
    after = config_file(tmp_path / "after.toml", (SMALL, LARGER, DISPLAY))
    env = {"PHOTOQ_PORT": str(server.port), "PHOTOQ_AUTH_TOKEN": TEST_TOKEN}
    args = ("reprocess", "--data-dir", str(data), "--config", str(after))

    unknown = photoq(*args, "--variant", "nope", cwd=tmp_path, env=env)
    assert unknown.returncode == 2 and "unknown output 'nope'" in unknown.stderr

    # The server renders with what it was started with: it refuses rather than queue nothing or the wrong thing.
    refused = photoq(*args, cwd=tmp_path, env=env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "restart the server" in refused.stderr

    server.terminate()
    server.config = after
    server.start()
    done = photoq(*args, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "queued 2 output(s) of 2 photo(s) in the running server" in done.stdout and "large: 2" in done.stdout
    async with aiohttp.ClientSession(base_url=server.url) as session:
        await wait_for_photos(session, ids)
    assert await large_sizes(data, ids) == {(200, 150)}
    again = photoq(*args, cwd=tmp_path, env=env)
    assert again.returncode == 0 and "nothing is missing or stale" in again.stdout


async def test_the_command_without_a_server_writes_the_database_and_a_kill_loses_nothing(server, tmp_path):
    data = tmp_path / "data"
    server.start()
    ids = await upload_and_process(server)
    assert server.terminate() == 0
    after = config_file(tmp_path / "after.toml", (SMALL, LARGER, DISPLAY))
    env = {"PHOTOQ_PORT": str(server.port), "PHOTOQ_AUTH_TOKEN": TEST_TOKEN}
    args = ("reprocess", "--data-dir", str(data), "--config", str(after))

    dry = photoq(*args, "--dry-run", cwd=tmp_path, env=env)
    assert dry.returncode == 0 and "would queue 2 output(s) of 2 photo(s)" in dry.stdout
    queued = photoq(*args, cwd=tmp_path, env=env)
    assert queued.returncode == 0, queued.stdout + queued.stderr
    assert "queued 2 output(s) of 2 photo(s); they run when photoq next starts" in queued.stdout
    again = photoq(*args, cwd=tmp_path, env=env)
    assert "queued 0 output(s)" in again.stdout and "2 output(s) already queued" in again.stdout

    # kill -9 while the re-render runs: the queued jobs are committed, nothing is lost. The server starts paused,
    # so that the first claim happens after we listen.
    await set_paused(data, True)
    server.config = after
    server.start()
    async with aiohttp.ClientSession(base_url=server.url) as session:
        async with session.get("/api/events", headers=AUTH) as events:
            reader = SseReader(events)
            await reader.next()  # initial stats
            async with session.post("/api/admin/queue/resume", headers=AUTH) as r:
                assert r.status == 200
            while (await reader.next()).name != "photo":  # a re-render was claimed
                pass
    server.kill9()
    server.start()
    async with aiohttp.ClientSession(base_url=server.url) as session:
        await wait_for_photos(session, ids)
    assert await large_sizes(data, ids) == {(200, 150)}
    fresh = photoq(*args, cwd=tmp_path, env=env)
    assert fresh.returncode == 0 and "nothing is missing or stale" in fresh.stdout, fresh.stdout


async def test_outputs_recorded_before_version_3_are_judged_by_size_and_format(start_client):
    client, _, ids = await processed_photos(start_client)
    # What a database migrated from version 2 holds: rows that do not say what rendered them.
    with sqlite3.connect(client.app[STORAGE].database_path) as conn:
        conn.execute("UPDATE outputs SET format = NULL, spec = NULL")
    conn.close()
    assert (await reprocess(client))["queued"] == 0  # sizes and files match: fresh
    before = snapshot(client, ids)
    client = await restart(client, start_client, (SMALL, LARGER, Output("display", "variant", 320, 320, "png")))
    async with client.get(f"/api/photos/{ids[0]}/file?variant=display", headers=AUTH) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "image/webp"  # found without a recorded format
    assert (await reprocess(client))["outputs"] == {"display": 2, "large": 2}
    await wait_for_photos(client, ids)
    assert rewritten(before, snapshot(client, ids)) == {(i, n) for i in ids for n in ("large.webp", "display.png")}
    assert (await reprocess(client))["queued"] == 0

