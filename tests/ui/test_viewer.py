"""The full-screen viewer and the gallery's orders, in a real Chromium: date headings, the order switch, the
viewer's choice of version, keys, swipe, pinch and wheel zoom up to the original, "n of m", preloading, and focus."""

from __future__ import annotations

import io
import re

from PIL import Image
from playwright.async_api import expect

from tests.support import photo_like, wait_for_photos

from .conftest import PHONE, SCREENSHOTS, api, screenshot, until, upload

LAPTOP_800 = {"width": 1280, "height": 800}


async def viewport_shot(page, name: str) -> None:
    """The viewer fills the screen: a picture of the screen, not of the whole page behind it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), animations="disabled")


def dated_jpeg(taken: str | None, seed: int, size=(2400, 1600)) -> bytes:
    exif = Image.Exif()
    if taken:
        exif.get_ifd(0x8769)[36867] = taken
    buffer = io.BytesIO()
    photo_like(*size, seed=seed).save(buffer, format="JPEG", quality=80, exif=exif.tobytes())
    return buffer.getvalue()


PHOTOS = [  # upload order; by date taken the gallery shows: no-date (upload time, now), 2024-07-14 x2, 2023, 2019
    ("harbour.jpg", "2019:05:01 08:00:00", (2400, 1600)),
    ("lake-evening.jpg", "2024:07:14 19:00:00", (1600, 2400)),
    ("market.jpg", "2023:01:02 10:00:00", (2400, 1600)),
    ("lake-morning.jpg", "2024:07:14 07:30:00", (2400, 1600)),
    ("scan.jpg", None, (1200, 900)),
]


async def album_with_photos(ui) -> tuple[int, dict[str, int]]:
    album_id = (await api(ui, "POST", "/api/albums", json={"name": "Travels"}))["id"]
    ids = {}
    for n, (name, taken, size) in enumerate(PHOTOS):
        [ids[name]] = await upload(ui, album_id, (name, dated_jpeg(taken, seed=n, size=size)))
    await wait_for_photos(ui.api, list(ids.values()))
    return album_id, ids


async def test_gallery_orders_with_a_timeline_and_the_viewer(browser, start_ui):
    ui = await start_ui()
    album_id, ids = await album_with_photos(ui)
    page = await ui.new_page(browser, viewport=LAPTOP_800)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    await page.goto(ui.url(f"/albums/{album_id}"))

    tiles = page.locator("#gallery .tile")
    expected = ["scan.jpg", "lake-evening.jpg", "lake-morning.jpg", "market.jpg", "harbour.jpg"]
    assert [await t.get_attribute("data-filename") for t in await tiles.all()] == expected
    headings = await page.locator("#gallery .gallery-day time").evaluate_all("ts => ts.map(t => t.dateTime)")
    assert headings[1:] == ["2024-07-14", "2023-01-02", "2019-05-01"]  # one heading for the two lake photos
    await expect(page.get_by_role("navigation", name="Sort photos by").get_by_role("link", name="Date taken")) \
        .to_have_attribute("aria-current", "true")
    await screenshot(page, "viewer-01-gallery-timeline-laptop")

    # Open the third photo by date taken; the viewer is a modal dialog with the count.
    opener = page.locator(f"#photo-{ids['lake-morning.jpg']} .tile-link")
    await opener.click()
    dialog = page.get_by_role("dialog", name="lake-morning.jpg")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator(".viewer-count")).to_have_text("3 of 5")
    # 2400x1600 fitted into 1280x800 at 1x needs 1200x800: the 2160-wide version, not the 1080 one nor the original.
    showing = await dialog.get_attribute("data-showing")
    assert "variant=display-2160x3840" in showing, showing
    await until(lambda: page.evaluate("document.querySelector('.viewer-img').complete"), what="the photo to load")
    # The next photo (by date taken) is preloaded while this one is on show.
    await until(lambda: page.evaluate(
        f"performance.getEntriesByType('resource').some(e => e.name.includes('/api/photos/{ids['market.jpg']}/display'))"),
        what="the next photo to be preloaded")
    await viewport_shot(page, "viewer-02-open-laptop")

    # Focus stays in the dialog.
    for _ in range(8):
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.closest('dialog') !== null")

    viewer = page.locator("dialog.viewer")  # its name follows the photo on show
    await page.keyboard.press("ArrowRight")
    await expect(viewer.locator(".viewer-count")).to_have_text("4 of 5")
    await expect(page.locator(".viewer-name")).to_have_text("market.jpg")
    await page.keyboard.press("ArrowLeft")
    await page.keyboard.press("ArrowLeft")
    await expect(page.locator(".viewer-name")).to_have_text("lake-evening.jpg")

    # Swipe (a drag) to the next photo.
    box = await page.locator(".viewer-stage").bounding_box()
    y = box["y"] + box["height"] / 2
    await page.mouse.move(box["x"] + 900, y)
    await page.mouse.down()
    await page.mouse.move(box["x"] + 500, y, steps=5)
    await page.mouse.up()
    await expect(page.locator(".viewer-name")).to_have_text("lake-morning.jpg")

    # Wheel zoom: up to the original's own pixels, which then replaces the display version.
    for _ in range(15):
        await page.mouse.wheel(0, -400)
    await expect(viewer).to_have_class("viewer zoomed")
    zoom = float(await viewer.get_attribute("data-zoom"))
    assert abs(zoom - 2400 / 1200) < 0.01, zoom  # 1200 CSS px at 1x shows 2400 px at 200%
    await expect(viewer).to_have_attribute(
        "data-showing", re.compile(rf"^/api/photos/{ids['lake-morning.jpg']}/file\?variant=original&v=\w+$"))
    await viewport_shot(page, "viewer-03-zoomed-laptop")
    await page.keyboard.press("0")
    assert float(await viewer.get_attribute("data-zoom")) == 1

    await page.keyboard.press("Escape")
    await expect(viewer).to_be_hidden()
    # Focus returns to the gallery, on the photo last looked at.
    assert await page.evaluate("document.activeElement.closest('.tile').dataset.filename") == "lake-morning.jpg"

    # Name order through the switch; remembered for the photo page's arrows too.
    await page.get_by_role("link", name="Name").click()
    assert [await t.get_attribute("data-filename") for t in await page.locator("#gallery .tile").all()] == sorted(expected)
    assert await page.locator("#gallery .gallery-day").count() == 0
    await page.goto(ui.url(f"/photos/{ids['lake-morning.jpg']}"))
    await expect(page.locator(".crumbs-count")).to_have_text("3 of 5")
    await expect(page.get_by_role("link", name="Next photo")).to_have_attribute("href", f"/photos/{ids['market.jpg']}")
    assert not any("/api/photos/" in u and "variant=original" in u for u in requests if "display" in u)


async def test_viewer_from_the_photo_page_on_a_phone_with_pinch(browser, start_ui):
    ui = await start_ui()
    album_id, ids = await album_with_photos(ui)
    page = await ui.new_page(browser, viewport=PHONE, color_scheme="dark", device_scale_factor=3, has_touch=True)
    await page.goto(ui.url(f"/photos/{ids['market.jpg']}"))
    button = page.get_by_role("button", name="View full screen")
    await button.click()
    dialog = page.get_by_role("dialog", name="market.jpg")
    await expect(dialog.locator(".viewer-count")).to_have_text("4 of 5")
    # 390x844 CSS px at 3x: 2400x1600 fitted needs 1170x780 device px: the 2160-wide version.
    assert "variant=display-2160x3840" in await dialog.get_attribute("data-showing")
    await until(lambda: page.evaluate("document.querySelector('.viewer-img').complete"), what="the photo to load")
    await viewport_shot(page, "viewer-04-phone-dark")

    # A pinch: two pointers moving apart.
    await page.evaluate("""() => {
      const stage = document.querySelector('.viewer-stage');
      const fire = (type, id, x, y) => stage.dispatchEvent(new PointerEvent(type, {pointerId: id, pointerType: 'touch',
        clientX: x, clientY: y, bubbles: true, isPrimary: id === 1}));
      fire('pointerdown', 1, 150, 400); fire('pointerdown', 2, 240, 400);
      for (let i = 1; i <= 5; i++) { fire('pointermove', 1, 150 - i * 20, 400); fire('pointermove', 2, 240 + i * 20, 400); }
      fire('pointerup', 1, 50, 400); fire('pointerup', 2, 340, 400);
    }""")
    zoom = float(await page.locator("dialog.viewer").get_attribute("data-zoom"))
    assert 2.0 < zoom <= 2400 / (390 * 3) * 2 + 0.01, zoom
    await viewport_shot(page, "viewer-05-phone-pinched-dark")
    await page.get_by_role("button", name="Close (Esc)").click()
    await expect(dialog).to_be_hidden()
    assert await page.evaluate("document.activeElement.textContent.includes('View full screen')")


async def test_the_version_choice_is_a_pure_function(browser, start_ui):
    ui = await start_ui()
    page = await ui.new_page(browser)
    await page.goto(ui.url("/"))
    await page.add_script_tag(url=ui.url("/static/viewer.js"))
    versions = [{"width": 1080, "height": 720, "url": "a"}, {"width": 2160, "height": 1440, "url": "b"},
                {"width": 1038, "height": 692, "url": "c"}]
    cases = [
        ((4000, 2667, 1280, 800, 1), "b"),   # needs 1200x800
        ((4000, 2667, 1000, 700, 1), "c"),   # needs 1000x667: the 1038 covers it and is the smallest that does
        ((4000, 2667, 1070, 720, 1), "a"),   # needs 1070x713
        ((4000, 2667, 390, 844, 3), "b"),    # needs 1170x780
        ((4000, 2667, 3840, 2160, 2), "b"),  # needs more than any: the largest
        ((4000, 2667, 300, 200, 1), "c"),    # needs 300x200: the smallest
    ]
    for args, expected in cases:
        got = await page.evaluate("([v, a]) => window.photoq.viewerMath.chooseVersion(v, ...a).url", [versions, list(args)])
        assert got == expected, (args, got)
    assert await page.evaluate("window.photoq.viewerMath.chooseVersion([], 1, 1, 1, 1, 1)") is None
    assert await page.evaluate("window.photoq.viewerMath.maxZoom(4000, 1000, 2)") == 2
    assert await page.evaluate("window.photoq.viewerMath.maxZoom(800, 1000, 1)") == 1
