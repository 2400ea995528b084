"""The web UI, end to end in a real browser: log in, albums, uploads with live progress, failures and retry,
block_while_processing, the queue page, and CSRF protection."""

from __future__ import annotations

import re
from urllib.parse import unquote

from playwright.async_api import expect

from photoq.web.keys import DB, EVENTS, STORAGE
from tests.support import AUTH, TEST_TOKEN, image_bytes, jpeg, noisy_png

from .conftest import (
    PHONE,
    album_photo_ids,
    api,
    create_album,
    screenshot,
    until,
    upload,
    write_files,
)

MARKER = "window.__photoqNoReload = 'still here'"
MARKER_SURVIVED = "window.__photoqNoReload === 'still here'"


# -- logging in ------------------------------------------------------------------------------------------------


async def test_log_in_with_the_token_form_and_with_the_login_link(browser, start_ui):
    ui = await start_ui()
    page = await ui.new_page(browser, logged_in=False)

    await page.goto(ui.url("/queue"))
    assert unquote(page.url).endswith("/login?next=/queue")
    await page.get_by_label("Admin token").fill("not-the-token")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_contain_text("That token is not right")
    await screenshot(page, "01-login-wrong-token")
    await page.get_by_label("Admin token").fill(TEST_TOKEN)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", level=1, name="Queue")).to_be_visible()
    assert page.url == ui.url("/queue")
    cookie = next(c for c in await page.context.cookies() if c["name"] == "photoq_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert TEST_TOKEN not in cookie["value"]

    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_label("Admin token")).to_be_visible()
    await page.goto(ui.url("/"))
    assert "/login" in page.url

    link_page = await ui.new_page(browser, logged_in=False)
    link = await ui.login_link("%2F")
    await link_page.goto(link)
    await expect(link_page.get_by_role("heading", level=1, name="Albums")).to_be_visible()
    assert "code=" not in link_page.url  # the one-time code left the address bar at once
    await screenshot(link_page, "02-albums-empty")
    other = await ui.new_page(browser, logged_in=False)
    await other.goto(link)  # a login link works once
    await expect(other.get_by_role("alert")).to_contain_text("expired or was already used")


# -- albums and uploads ------------------------------------------------------------------------------------------


async def test_upload_five_files_and_watch_each_placeholder_become_a_thumbnail(browser, start_ui, tmp_path):
    ui = await start_ui()
    page = await ui.new_page(browser)
    album_id = await create_album(page, ui, "Summer 2025")
    await expect(page.get_by_role("status").filter(has_text="Album created")).to_be_visible()

    # Paused first, so every placeholder is on screen before the first thumbnail replaces it.
    await api(ui, "POST", "/api/admin/queue/pause")
    files = {
        "beach.jpg": jpeg(2400, 1600, seed=1),
        "dunes.jpg": jpeg(1600, 2400, seed=2),
        "harbour.png": noisy_png(900, 700, seed=3),
        "sunset.jpg": jpeg(3000, 2000, seed=4),
        "pier.webp": image_bytes("WEBP", 1400, 1000, seed=5),
    }
    paths = write_files(tmp_path / "upload", files)
    await page.evaluate(MARKER)
    await page.locator("#file-input").set_input_files(paths)

    results = page.locator("#upload-results")
    await expect(results.locator("#upload-text")).to_have_text("5 photos uploaded.")
    await expect(results.locator(".upload-row[data-state=uploaded]")).to_have_count(5)
    total = sum(len(data) for data in files.values())
    progress = page.locator("#upload-progress")
    assert int(await progress.get_attribute("data-sent-bytes")) == total
    assert await progress.evaluate("p => p.value === p.max")
    assert await page.evaluate("window.photoqAlbumPage.progressEvents") > 0  # upload.onprogress really fired
    for bar in await results.locator(".upload-bar").all():
        assert await bar.evaluate("b => b.value === b.max")

    tiles = page.locator("#gallery .tile")
    await expect(tiles).to_have_count(5)
    await expect(page.locator("#gallery .tile[data-state=queued]")).to_have_count(5)
    await expect(tiles.first.get_by_text("Queued")).to_be_visible()
    await expect(page.locator("#processing-text")).to_have_text("Processing 0 of 5")
    await screenshot(page, "03-album-uploaded-queued")

    await api(ui, "POST", "/api/admin/queue/resume")
    await expect(page.locator("#gallery .tile img.tile-img")).to_have_count(5, timeout=90_000)
    await expect(page.locator("#gallery .placeholder")).to_have_count(0)
    await expect(page.locator("#processing-text")).to_have_text("All 5 photos are processed.", timeout=90_000)
    assert await page.evaluate(MARKER_SURVIVED), "the page was reloaded"
    for image in await page.locator("#gallery img.tile-img").all():
        await expect(image).to_have_attribute("alt", re.compile(r"\.(jpg|png|webp)$"))
        await image.evaluate("img => img.decode()")
        assert await image.evaluate("img => img.naturalWidth > 0")
    # Every tile got its ThumbHash placeholder from the live `photo` events.
    await expect(page.locator("#gallery .tile[data-thumbhash]")).to_have_count(5)
    await screenshot(page, "04-album-processed")

    # The photo page shows a display variant picked by srcset, with facts and the processing history.
    await tiles.filter(has=page.get_by_alt_text("beach.jpg")).locator("a").click()  # opens the viewer
    await page.get_by_role("dialog", name="beach.jpg").get_by_role("link", name="Details").click()
    await expect(page.get_by_role("heading", level=1, name="beach.jpg")).to_be_visible()
    hero = page.locator("#photo-img")
    await hero.evaluate("img => img.decode()")
    assert "variant=display-" in await hero.evaluate("img => img.currentSrc")
    await expect(page.locator(".facts")).to_contain_text("2400 × 1600")
    await expect(page.locator("#photo-history li")).to_have_count(2)
    await screenshot(page, "05-photo")

    await page.goto(ui.url("/"))
    card = page.locator(f"#album-{album_id}")
    await expect(card).to_contain_text("5 photos")
    await expect(card.locator(".album-cover img")).to_be_visible()
    await screenshot(page, "06-albums")

    phone = await ui.new_page(browser, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                              color_scheme="dark")
    await phone.goto(ui.url(f"/albums/{album_id}"))
    await expect(phone.locator("#gallery img.tile-img")).to_have_count(5)
    # The server-rendered tiles carry the placeholder too, and the page's decoder paints it.
    await expect(phone.locator("#gallery .tile[data-thumbhash]")).to_have_count(5)
    thumbhash = await phone.locator("#gallery .tile").first.get_attribute("data-thumbhash")
    assert (await phone.evaluate("h => window.photoq.thumbHashToDataURL(h)", thumbhash)).startswith("data:image/png")
    for image in await phone.locator("#gallery img.tile-img").all():
        await image.evaluate("img => img.decode()")
    await screenshot(phone, "07-phone-album-dark")
    await phone.goto(ui.url("/"))
    await phone.locator(f"#album-{album_id} .album-cover img").evaluate("img => img.decode()")
    await screenshot(phone, "08-phone-albums-dark")


async def test_rejected_files_show_the_servers_message_next_to_them(browser, start_ui, tmp_path):
    ui = await start_ui()
    page = await ui.new_page(browser)
    await create_album(page, ui, "Mixed bag")
    good = jpeg(800, 600, seed=21)
    paths = write_files(tmp_path / "a", {"good.jpg": good, "notes.jpg": b"these are my holiday notes\n" * 40})
    await page.locator("#file-input").set_input_files(paths)

    rows = page.locator("#upload-list .upload-row")
    await expect(page.locator("#upload-text")).to_have_text("1 photo uploaded, 1 rejected.")
    rejected = rows.filter(has_text="notes.jpg")
    await expect(rejected).to_have_attribute("data-state", "rejected")
    await expect(rejected.locator(".upload-status")).to_have_text(
        "The file is not a supported image (JPEG, PNG, WebP, GIF, TIFF, HEIC or AVIF).")
    await expect(rows.filter(has_text="good.jpg")).to_have_attribute("data-state", "uploaded")
    await expect(page.locator("#gallery img.tile-img")).to_have_count(1, timeout=60_000)

    # The same bytes again: a duplicate, with a link to the photo that is already there.
    again = write_files(tmp_path / "b", {"good-copy.jpg": good})
    await page.locator("#file-input").set_input_files(again)
    duplicate = page.locator("#upload-list .upload-row").filter(has_text="good-copy.jpg")
    await expect(duplicate).to_have_attribute("data-state", "duplicate")
    await expect(duplicate.locator(".upload-status")).to_contain_text("Already in this album.")
    await expect(duplicate.get_by_role("link", name="See the photo")).to_be_visible()
    await expect(page.locator("#gallery .tile")).to_have_count(1)
    await screenshot(page, "09-upload-duplicate")

    # Deleting the album from the albums page: a two-step menu, no script needed.
    await page.goto(ui.url("/"))
    await page.get_by_label("Delete album Mixed bag").click()
    await page.get_by_role("button", name="Delete album").click()
    await expect(page.get_by_role("status").filter(has_text="The album and its photos were moved to the trash.")).to_be_visible()
    await expect(page.get_by_text("No albums yet")).to_be_visible()
    assert (await api(ui, "GET", "/api/albums"))["albums"] == []


async def test_a_photo_that_fails_shows_retry_and_retry_completes_it(browser, start_ui, tmp_path):
    ui = await start_ui(queue={"max_attempts": 1, "breaker_threshold": 100})
    page = await ui.new_page(browser)
    album_id = await create_album(page, ui, "Fragile")
    await api(ui, "POST", "/api/admin/queue/pause")
    await page.evaluate(MARKER)
    await page.locator("#file-input").set_input_files(write_files(tmp_path / "f", {"lost.jpg": jpeg(1200, 900, seed=31)}))
    await expect(page.locator("#gallery .tile[data-state=queued]")).to_have_count(1)

    # A real failure: the stored original disappears before processing starts.
    [photo_id] = await album_photo_ids(ui, album_id)
    photo = await ui.app[DB].get_photo(photo_id)
    original = ui.app[STORAGE].original_path(photo.sha256, photo.format)
    hidden = original.with_name(original.name + ".away")
    original.rename(hidden)
    await api(ui, "POST", "/api/admin/queue/resume")

    tile = page.locator(f"#photo-{photo_id}")
    await expect(tile).to_have_attribute("data-state", "failed", timeout=60_000)
    await expect(tile.get_by_role("button", name="Retry lost.jpg")).to_be_visible()
    report = page.locator("#error-report")
    await expect(report).to_be_visible()
    await expect(report).to_contain_text("The original file is missing from storage.")
    await expect(report.get_by_role("button", name="Retry all")).to_be_visible()
    await expect(report.get_by_role("button", name="Clear errors")).to_be_visible()
    # Both of the photo's jobs have to be finished failing before a retry can bring it back whole.
    await until(lambda: _no_unfinished_jobs(ui, album_id))
    await expect(page.locator("#processing-text")).to_have_text("Done: 1 photo could not be processed.")
    await expect(page.locator("#errors-heading")).to_have_text("1 photo could not be processed")
    await screenshot(page, "10-album-failed")

    queue_page = await page.context.new_page()
    await queue_page.goto(ui.url("/queue"))
    failed_rows = queue_page.locator("table.jobs tbody tr")
    await expect(failed_rows).to_have_count(1)  # the photo once, though both of its jobs failed
    await expect(failed_rows.first).to_contain_text("Thumbnails, Display versions")
    await expect(failed_rows.first).to_contain_text("The original file is missing from storage.")
    await expect(queue_page.locator("#stat-failed")).to_have_text("1")
    await expect(queue_page.locator("#breaker")).to_have_count(0)  # shown only when it is not closed
    for word in ("thumbnail ", "variant", "jobs"):
        assert word not in (await queue_page.locator("main").inner_text()).lower().replace("thumbnails", "")
    await expect(queue_page.get_by_role("button", name="Retry all")).to_be_visible()
    await expect(queue_page.get_by_role("button", name="Clear failed")).to_be_visible()
    await screenshot(queue_page, "10b-queue-failed")
    await queue_page.close()

    hidden.rename(original)
    await tile.get_by_role("button", name="Retry lost.jpg").click()
    await expect(tile.locator("img.tile-img")).to_be_visible(timeout=60_000)
    await expect(tile).not_to_have_attribute("data-failed", "1")
    await expect(report).to_be_hidden()
    await until(lambda: _photo_complete(ui, photo_id))
    assert await page.evaluate(MARKER_SURVIVED)
    await screenshot(page, "11-album-retried")

    await page.goto(ui.url(f"/photos/{photo_id}"))
    history = page.locator("#photo-history")
    await expect(history).to_contain_text("The original file is missing from storage.")
    await expect(history.locator(".outcome-complete")).to_have_count(2)
    await screenshot(page, "12-photo-history")


async def _no_unfinished_jobs(ui, album_id) -> bool:
    return not await ui.app[DB].album_has_unfinished_jobs(album_id)


async def _photo_complete(ui, photo_id) -> bool:
    return (await ui.app[DB].get_photo(photo_id)).processing_status == "complete"


async def test_block_while_processing_shows_progress_after_a_reload_and_the_form_comes_back(browser, start_ui, tmp_path):
    ui = await start_ui(upload={"block_while_processing": True})
    page = await ui.new_page(browser)
    album_id = await create_album(page, ui, "One batch at a time")
    await api(ui, "POST", "/api/admin/queue/pause")
    # Five files, three at a time: the last two start when the album is already busy with the first ones, and
    # get in because they belong to the same batch (X-Photoq-Batch).
    files = {f"IMG_{n:04d}.jpg": jpeg(1600, 1200, seed=40 + n) for n in range(5)}
    await page.locator("#file-input").set_input_files(write_files(tmp_path / "b", files))
    await expect(page.locator("#upload-text")).to_have_text("5 photos uploaded.")
    await expect(page.locator("#upload-panel")).to_be_hidden()  # replaced by the progress view at once

    await page.reload()  # or close the browser and come back: decided by the server
    await expect(page.locator("#processing-panel")).to_be_visible()
    await expect(page.locator("#processing-text")).to_have_text("Processing 0 of 5")
    await expect(page.locator("#upload-panel")).to_be_hidden()
    await expect(page.locator("#file-input")).to_be_hidden()
    await expect(page.locator("#busy-note")).to_contain_text("open again by themselves")
    await screenshot(page, "13-album-busy-after-reload")
    async with ui.api.post(f"/api/albums/{album_id}/photos", headers=AUTH) as r:
        assert r.status == 409  # the server agrees: the album is busy

    await page.evaluate(MARKER)
    await api(ui, "POST", "/api/admin/queue/resume")
    await expect(page.locator("#upload-panel")).to_be_visible(timeout=90_000)
    await expect(page.locator("#processing-text")).to_have_text("All 5 photos are processed.")
    await expect(page.locator("#processing-text")).to_be_visible()
    await expect(page.locator("#busy-note")).to_be_hidden()
    await expect(page.locator("#paused-note")).to_have_count(0)  # processing visibly resumed
    await expect(page.locator("#gallery img.tile-img")).to_have_count(5)
    assert await page.evaluate(MARKER_SURVIVED), "the form came back by a reload, not by itself"
    await screenshot(page, "14-album-unblocked")


async def test_queue_page_pause_and_resume_change_what_happens(browser, start_ui, tmp_path):
    ui = await start_ui()
    queue_page = await ui.new_page(browser)
    await queue_page.goto(ui.url("/queue"))
    await queue_page.get_by_role("button", name="Pause processing").click()
    await expect(queue_page.get_by_role("status").filter(has_text="Processing is paused")).to_be_visible()
    await expect(queue_page.get_by_role("button", name="Resume processing")).to_be_visible()

    album_page = await queue_page.context.new_page()
    album_id = await create_album(album_page, ui, "Paused test")
    await expect(album_page.locator("#paused-note")).to_contain_text("Processing is paused")
    await album_page.locator("#file-input").set_input_files(write_files(tmp_path / "q", {"wait.jpg": jpeg(seed=51)}))
    tile = album_page.locator("#gallery .tile")
    await expect(tile).to_have_attribute("data-state", "queued")
    # Paused: the jobs wait. The queue page shows them live, without a reload.
    await expect(queue_page.locator("#stat-queued")).to_have_text("1")  # one photo, though two jobs
    await expect(queue_page.locator(".stat-age")).to_have_text(re.compile(r"^\d+ s$"))
    [photo_id] = await album_photo_ids(ui, album_id)
    assert (await ui.app[DB].get_photo(photo_id)).thumbnail_status == "pending"
    await screenshot(queue_page, "15-queue-paused")

    # Meanwhile the photo page shows the original, and swaps in a display version once there is one.
    photo_page = await queue_page.context.new_page()
    await photo_page.goto(ui.url(f"/photos/{photo_id}"))
    await expect(photo_page.locator("#photo-stage figcaption")).to_have_text(
        "Showing the original until the display versions are ready.")
    assert "variant=original" in await photo_page.locator("#photo-img").evaluate("img => img.currentSrc")
    await expect(photo_page.locator("#photo-history")).to_contain_text("waiting in the queue")
    await photo_page.evaluate(MARKER)

    await queue_page.get_by_role("button", name="Resume processing").click()
    await expect(queue_page.get_by_role("status").filter(has_text="Processing resumed")).to_be_visible()
    await expect(tile.locator("img.tile-img")).to_be_visible(timeout=60_000)
    await expect(photo_page.locator("#photo-stage figcaption")).to_have_count(0, timeout=60_000)
    await expect(photo_page.locator("#photo-img")).to_have_attribute("srcset", re.compile("display-"))
    await expect(photo_page.locator("#photo-status .badge")).to_have_text("Ready")
    assert await photo_page.evaluate(MARKER_SURVIVED)
    await expect(queue_page.locator("#stat-queued")).to_have_text("0", timeout=60_000)
    await screenshot(queue_page, "16-queue-idle")
    await queue_page.set_viewport_size(PHONE)
    await screenshot(queue_page, "17-phone-queue")


async def test_a_form_post_without_the_csrf_token_is_refused(browser, start_ui):
    ui = await start_ui()
    page = await ui.new_page(browser)
    await page.goto(ui.url("/"))
    await page.locator("form.create-album input[name=csrf_token]").evaluate("input => input.remove()")
    await page.get_by_label("New album name").fill("Forged")
    async with page.expect_response(lambda r: r.url.endswith("/albums") and r.request.method == "POST") as info:
        await page.get_by_role("button", name="Create album").click()
    response = await info.value
    assert response.status == 403
    await expect(page.locator("body")).to_contain_text("CSRF token is missing or wrong")
    assert (await api(ui, "GET", "/api/albums"))["albums"] == []

    # The same from script: the API refuses a cookie-authenticated write without the header.
    await page.goto(ui.url("/"))
    status = await page.evaluate("""() => fetch('/api/albums', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                                     body: JSON.stringify({name: 'Forged'})}).then(r => r.status)""")
    assert status == 403
    with_token = await page.evaluate("""() => fetch('/api/albums', {method: 'POST', headers: {'Content-Type': 'application/json',
        'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content}, body: JSON.stringify({name: 'Real'})}).then(r => r.status)""")
    assert with_token == 201


async def test_the_pages_work_without_javascript(browser, start_ui):
    ui = await start_ui()
    page = await ui.new_page(browser, logged_in=False, java_script_enabled=False)
    await page.goto(ui.url("/"))
    await page.get_by_label("Admin token").fill(TEST_TOKEN)
    await page.get_by_role("button", name="Log in").click()
    album_id = await create_album(page, ui, "No script")
    # (The <noscript> hint about uploading is not rendered here: Chromium's "scripts disabled" emulation still
    # parses <noscript> as if scripting were on.)
    await expect(page.locator("#gallery-empty")).to_be_visible()
    await page.get_by_role("link", name="Queue").click()
    await page.get_by_role("button", name="Pause processing").click()
    await expect(page.get_by_role("button", name="Resume processing")).to_be_visible()
    assert (await api(ui, "GET", "/api/admin/queue"))["paused"] is True
    await page.get_by_role("button", name="Resume processing").click()
    await expect(page.get_by_role("button", name="Pause processing")).to_be_visible()
    await page.goto(ui.url(f"/albums/{album_id}"))
    await page.get_by_label("More actions for No script").click()  # opens the menu (a <details>)
    await page.get_by_role("button", name="Delete album").click()
    await expect(page.get_by_role("status").filter(has_text="The album and its photos were moved to the trash.")).to_be_visible()
    assert page.url == ui.url("/")
    await screenshot(page, "18-no-javascript-albums")


async def test_a_run_that_starts_and_ends_while_the_page_is_not_connected_is_still_reported(browser, start_ui):
    """The page may hear of a run only once it is over (a laptop asleep, Wi-Fi gone, or a photo done between two
    coalesced stats events): the first stats after reconnecting must still say what happened."""
    ui = await start_ui()
    page = await ui.new_page(browser)
    album_id = await create_album(page, ui, "Away")
    await page.evaluate(MARKER)
    broadcaster = ui.app[EVENTS]
    await until(lambda: broadcaster.subscriber_count == 1)
    await page.route("**/api/events**", lambda route: route.abort())  # reconnecting fails until unrouted
    await broadcaster.stop()  # ends the page's live connection
    await broadcaster.start()
    await upload(ui, album_id, ("away.jpg", jpeg(800, 600, seed=41)))
    [photo_id] = await album_photo_ids(ui, album_id)
    await until(lambda: _photo_complete(ui, photo_id))
    assert broadcaster.subscriber_count == 0  # the page heard nothing of the run
    await page.unroute("**/api/events**")
    await expect(page.locator("#processing-text")).to_have_text("The photo is processed.", timeout=30_000)
    await expect(page.locator("#gallery .tile[data-state=done]")).to_have_count(1)
    assert await page.evaluate(MARKER_SURVIVED)
