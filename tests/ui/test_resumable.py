"""Large files from the album page go as resumable (tus) uploads, in a real browser: they complete like any other
file, and a connection lost in the middle resumes from the server's offset instead of starting again."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

from playwright.async_api import expect

from tests.support import jpeg, noisy_png

from .conftest import album_photo_ids, api, create_album, screenshot, write_files

CHUNK_BYTES = 8 * 1024 * 1024  # resumable.js sends chunks of this size


def track_requests(page) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    page.on("request", lambda r: seen.append((r.method, urlsplit(r.url).path)))
    return seen


async def test_files_above_the_threshold_go_through_tus_and_complete(browser, start_ui, tmp_path):
    ui = await start_ui(upload={"resumable_threshold_bytes": 200_000})
    page = await ui.new_page(browser)
    album_id = await create_album(page, ui, "Resumable")
    seen = track_requests(page)
    big, small = noisy_png(400, 300, seed=1), jpeg(320, 240, seed=2)
    assert len(big) > 200_000 > len(small)
    paths = write_files(tmp_path / "upload", {"big.png": big, "small.jpg": small})
    await page.locator("#file-input").set_input_files(paths)

    await expect(page.locator("#upload-text")).to_have_text("2 photos uploaded.")
    await expect(page.locator(".upload-row[data-state=uploaded]")).to_have_count(2)
    assert ("POST", "/api/uploads") in seen
    assert any(method == "PATCH" and path.startswith("/api/uploads/") for method, path in seen)
    assert seen.count(("POST", f"/api/albums/{album_id}/photos")) == 1  # the small file only
    await expect(page.locator("#gallery .tile")).to_have_count(2)
    await expect(page.locator("#gallery .tile[data-state=done]")).to_have_count(2)
    photos = (await api(ui, "GET", f"/api/albums/{album_id}/photos"))["photos"]
    by_name = {p["filename"]: p for p in photos}
    assert by_name["big.png"]["sha256"] == hashlib.sha256(big).hexdigest()
    assert by_name["big.png"]["thumbnail_status"] == "complete"  # its tile shows the thumbnail
    await screenshot(page, "resumable-01-uploaded")


async def test_a_chunk_lost_on_the_way_resumes_from_the_servers_offset(browser, start_ui, tmp_path):
    ui = await start_ui(upload={"resumable_threshold_bytes": 0})
    page = await ui.new_page(browser)
    album_id = await create_album(page, ui, "Flaky Wi-Fi")
    data = noisy_png(1800, 1700, seed=3)  # ~9 MB: two chunks
    assert CHUNK_BYTES < len(data) < 2 * CHUNK_BYTES
    requests: list[tuple[str, str | None]] = []
    dropped = []

    async def flaky_network(route, request):
        offset = request.headers.get("upload-offset")
        requests.append((request.method, offset))
        if request.method == "PATCH" and offset != "0" and not dropped:
            dropped.append(offset)
            await route.abort("connectionreset")
            return
        await route.continue_()

    await page.route("**/api/uploads/*", flaky_network)
    paths = write_files(tmp_path / "upload", {"big.png": data})
    await page.locator("#file-input").set_input_files(paths)

    await expect(page.locator("#upload-text")).to_have_text("1 photo uploaded.", timeout=60_000)
    patches = [offset for method, offset in requests if method == "PATCH"]
    assert patches == ["0", str(CHUNK_BYTES), str(CHUNK_BYTES)], requests  # the second chunk again, not the file
    heads = [i for i, (method, _) in enumerate(requests) if method == "HEAD"]
    assert heads and requests.index(("PATCH", str(CHUNK_BYTES))) < heads[0], requests  # asked for the offset
    [photo_id] = await album_photo_ids(ui, album_id)
    photo = await api(ui, "GET", f"/api/photos/{photo_id}")
    assert photo["sha256"] == hashlib.sha256(data).hexdigest() and photo["size_bytes"] == len(data)
    await expect(page.locator(f"#photo-{photo_id}[data-state=done]")).to_be_visible(timeout=60_000)
