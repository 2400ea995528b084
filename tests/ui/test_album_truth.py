"""The album page tells the truth (issue: defects 1 and 2): the batch's "n of m" comes from the server and survives
a reload, another tab and navigation; a retry that fails again is never reported as done."""

from __future__ import annotations

from playwright.async_api import expect

from tests.hostile import jpeg_header_then_garbage
from tests.support import AUTH, jpeg, multipart

from .conftest import PHONE, api, create_album, screenshot, until, write_files


async def upload_batch(ui, album_id: int, key: str, *files) -> None:
    headers = {**AUTH, "X-Photoq-Batch": key}
    async with ui.api.post(f"/api/albums/{album_id}/photos", data=multipart(*files), headers=headers) as r:
        assert r.status == 202, await r.text()


async def batch(ui, album_id: int) -> dict:
    return (await api(ui, "GET", f"/api/stats?album_id={album_id}"))["batch"]


async def test_batch_progress_survives_reload_other_tabs_and_navigation(browser, start_ui):
    ui = await start_ui()
    page = await ui.new_page(browser)
    album_id = await create_album(page, ui, "Iceland 2023")

    # A slow upload: the first two files are processed before the next three arrive (same selection, same batch).
    key = "iceland-selection-1"
    await upload_batch(ui, album_id, key, ("1.jpg", jpeg(seed=1)), ("2.jpg", jpeg(seed=2)))
    await until(lambda: _finished(ui, album_id), 90, "the first files to be processed")
    await api(ui, "POST", "/api/admin/queue/pause")
    await upload_batch(ui, album_id, key, *[(f"{i}.jpg", jpeg(seed=i)) for i in range(3, 6)])
    assert (await batch(ui, album_id))["done"] == 2

    text = page.locator("#processing-text")
    bar = page.locator("#processing-progress")
    await page.reload()
    await expect(text).to_have_text("Processing 2 of 5")
    assert await bar.evaluate("b => [b.value, b.max]") == [2, 5]
    # Another tab, on a phone: the same numbers.
    phone = await ui.new_page(browser, viewport=PHONE, color_scheme="dark")
    await phone.goto(ui.url(f"/albums/{album_id}"))
    await expect(phone.locator("#processing-text")).to_have_text("Processing 2 of 5")
    await screenshot(phone, "defect1-batch-after-reload-phone-dark")
    # Albums and back.
    await page.get_by_role("link", name="Albums").first.click()
    await page.get_by_role("link", name="Iceland 2023").click()
    await expect(text).to_have_text("Processing 2 of 5")
    await screenshot(page, "defect1-batch-after-navigation")

    await api(ui, "POST", "/api/admin/queue/resume")
    await expect(text).to_have_text("All 5 photos are processed.", timeout=90_000)
    await expect(phone.locator("#processing-text")).to_have_text("All 5 photos are processed.", timeout=90_000)
    assert await bar.evaluate("b => b.value === b.max")
    await expect(page.locator("#processing-panel")).to_have_attribute("data-state", "done")
    await screenshot(page, "defect1-batch-done")


async def _finished(ui, album_id: int) -> bool:
    current = await batch(ui, album_id)
    return bool(current and current["finished"])


async def test_a_retry_that_fails_again_is_not_reported_as_done(browser, start_ui, tmp_path):
    ui = await start_ui()
    page = await ui.new_page(browser)
    album_id = await create_album(page, ui, "Broken card")
    paths = write_files(tmp_path / "up", {"broken.jpg": jpeg_header_then_garbage(seed=7), "fine.jpg": jpeg(seed=8)})
    await page.locator("#file-input").set_input_files(paths)
    text = page.locator("#processing-text")
    await expect(text).to_have_text("Done: 1 processed, 1 failed.", timeout=90_000)
    await expect(page.locator("#processing-panel")).to_have_attribute("data-state", "failed")

    tile = page.locator("#gallery .tile[data-failed='1']")
    await tile.get_by_role("button", name="Retry broken.jpg").click()
    await expect(text).to_have_text("Done: 1 photo could not be processed.", timeout=90_000)
    panel = page.locator("#processing-panel")
    await expect(panel).to_have_attribute("data-state", "failed")
    await expect(text).not_to_have_text("Processing is done.")
    # Said in the danger colour (the bar too, by the same data-state), not as a success.
    danger = await page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--danger-text')")
    colour = await text.evaluate("el => getComputedStyle(el).color")
    probe = await page.evaluate("""c => { const s = document.createElement('span'); s.style.color = c;
        document.body.append(s); const v = getComputedStyle(s).color; s.remove(); return v; }""", danger.strip())
    assert colour == probe
    await screenshot(page, "defect2-retry-failed-again")


async def test_a_photo_that_failed_for_good_offers_delete_and_download_first(browser, start_ui, tmp_path):
    ui = await start_ui()
    page = await ui.new_page(browser)
    album_id = await create_album(page, ui, "Damaged")
    paths = write_files(tmp_path / "up", {"IMG_0001.jpg": jpeg_header_then_garbage(seed=9)})
    await page.locator("#file-input").set_input_files(paths)
    item = page.locator("#error-list li")
    await expect(item).to_have_count(1, timeout=90_000)
    names = [await b.get_attribute("aria-label") for b in await item.locator("button, a.button").all()]
    assert names == ["Delete IMG_0001.jpg", "Download original of IMG_0001.jpg", "Retry IMG_0001.jpg"]
    await expect(page.locator("#error-report")).to_contain_text("upload it again from its source")
    await screenshot(page, "defect2-failure-card")

    # The same card after a reload (server-rendered).
    await page.reload()
    names = [await b.get_attribute("aria-label") for b in await item.locator("button, a.button").all()]
    assert names == ["Delete IMG_0001.jpg", "Download original of IMG_0001.jpg", "Retry IMG_0001.jpg"]
    download = item.get_by_role("link", name="Download original of IMG_0001.jpg")
    async with ui.api.get(await download.get_attribute("href"), headers=AUTH) as r:
        assert r.status == 200 and await r.read() == jpeg_header_then_garbage(seed=9)

    # The photo page promises no display versions and puts Delete and Download first.
    await item.get_by_role("link", name="IMG_0001.jpg", exact=True).click()
    stage = page.locator("#photo-stage")
    await expect(stage).not_to_contain_text("until the display versions are ready")
    await expect(stage).not_to_contain_text("being prepared")
    card = page.locator("#failure-card")
    await expect(card).to_contain_text("upload it again from its source")
    labels = [(await b.inner_text()).strip() for b in await card.locator("button, a.button").all()]
    assert labels == ["Delete photo", "Download original", "Retry"]
    await screenshot(page, "defect2-photo-page-failed")
    phone = await ui.new_page(browser, viewport=PHONE, color_scheme="dark")
    await phone.goto(page.url)
    await screenshot(phone, "defect2-photo-page-failed-phone-dark")
    await phone.goto(ui.url(f"/albums/{album_id}"))
    await screenshot(phone, "defect2-failure-card-phone-dark")
