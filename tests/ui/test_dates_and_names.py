"""One date format in the browser's locale and time zone, "camera time" only where the camera recorded no offset;
long file names shortened in the middle, never inside the extension (issue: defect 9)."""

from __future__ import annotations

import io

from PIL import Image
from playwright.async_api import expect

from tests.support import photo_like

from .conftest import PHONE, api, screenshot, until, upload, write_files


def jpeg_taken_at(when: str, offset: str | None = None) -> bytes:
    exif = Image.Exif()
    ifd = exif.get_ifd(0x8769)
    ifd[36867] = when  # DateTimeOriginal
    if offset:
        ifd[36881] = offset  # OffsetTimeOriginal
    buffer = io.BytesIO()
    photo_like(640, 480, seed=5).save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


async def test_dates_in_the_browsers_locale_and_zone_camera_time_only_without_offset(browser, start_ui):
    ui = await start_ui()
    album = await api(ui, "POST", "/api/albums", json={"name": "Dates"})
    [no_offset] = await upload(ui, album["id"], ("clock.jpg", jpeg_taken_at("2023:07:01 14:03:00")))
    [with_offset] = await upload(ui, album["id"], ("zoned.jpg", jpeg_taken_at("2023:07:01 14:03:00", "+02:00")))
    await until(lambda: _complete(ui, album["id"], 2), 90, "processing")

    page = await ui.new_page(browser, locale="de-DE", timezone_id="Asia/Tokyo")
    await page.goto(ui.url(f"/photos/{no_offset}"))
    facts = page.locator(".facts")
    await expect(facts.locator("dd").nth(1)).to_have_text("01.07.2023, 14:03 (camera time)")
    uploaded = facts.locator("time").last
    expected = await uploaded.evaluate("""t => new Date(t.getAttribute('datetime')).toLocaleString('de-DE',
        { dateStyle: 'medium', timeStyle: 'short', timeZone: 'Asia/Tokyo' })""")
    await expect(uploaded).to_have_text(expected)
    for stamp in await page.locator("#photo-history time").all():  # the history says dates the same way
        text = await stamp.inner_text()
        assert text.count(".") == 2 and "," in text and "UTC" not in text, text

    # With an offset the moment is known: shown in the browser's zone (14:03 at +02:00 is 21:03 in Tokyo).
    await page.goto(ui.url(f"/photos/{with_offset}"))
    await expect(facts.locator("dd").nth(1)).to_have_text("01.07.2023, 21:03")
    await screenshot(page, "defect9-dates-de-tokyo")


async def test_long_file_names_are_shortened_in_the_middle(browser, start_ui, tmp_path):
    ui = await start_ui()
    await api(ui, "POST", "/api/admin/queue/pause")
    album = await api(ui, "POST", "/api/albums", json={"name": "Names"})
    long_name = "IMG_20230701_140312_HDR_portrait_mode_with_a_very_long_name_indeed.jpeg"
    page = await ui.new_page(browser, viewport=PHONE, color_scheme="dark")
    await page.goto(ui.url(f"/albums/{album['id']}"))
    paths = write_files(tmp_path / "up", {long_name: jpeg_taken_at("2023:07:01 14:03:00")})
    await page.locator("#file-input").set_input_files(paths)
    row_name = page.locator(".upload-row .upload-name")
    await expect(row_name).to_have_attribute("title", long_name)
    text = await row_name.inner_text()
    assert text.endswith(".jpeg") and "…" in text and text.startswith("IMG_2023"), text
    await screenshot(page, "defect9-long-name-upload-phone-dark")

    laptop = await ui.new_page(browser)
    await laptop.goto(ui.url(f"/albums/{album['id']}"))
    name = laptop.locator(".placeholder-name")
    await expect(name).to_have_attribute("title", long_name)
    text = await name.inner_text()
    assert text.endswith(".jpeg") and "…" in text, text
    # Its box is wide enough: nothing more is cut off at the end by the stylesheet.
    assert await name.evaluate("n => n.scrollWidth <= n.clientWidth")
    await screenshot(laptop, "defect9-long-name-tile")


async def _complete(ui, album_id: int, count: int) -> bool:
    return (await api(ui, "GET", f"/api/stats?album_id={album_id}"))["complete"] == count
