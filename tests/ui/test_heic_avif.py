"""An iPhone photo (HEIC, turned by irot and EXIF) picked in the album page, shown by Chromium from AVIF outputs."""

from __future__ import annotations

import re

from playwright.async_api import expect

from photoq.config import Output
from tests.test_heic import sideways_heic

from .conftest import create_album, screenshot, write_files

AVIF_OUTPUTS = (
    Output("thumb-300", "thumbnail", 300, 300, "avif"),
    Output("display-400", "variant", 400, 400, "avif"),
    Output("display-1000", "variant", 1000, 1000, "avif"),
)


async def test_a_heic_upload_is_shown_upright_from_avif_outputs(browser, start_ui, tmp_path):
    ui = await start_ui(outputs=AVIF_OUTPUTS)
    page = await ui.new_page(browser)
    await create_album(page, ui, "Phone")
    [path] = write_files(tmp_path / "upload", {"IMG_0042.HEIC": sideways_heic(640, 960)})
    await page.locator("#file-input").set_input_files([path])
    await expect(page.locator("#upload-text")).to_have_text("1 photo uploaded.")

    tile_image = page.locator("#gallery img.tile-img")
    await expect(tile_image).to_have_count(1, timeout=60_000)
    await tile_image.evaluate("img => img.decode()")
    assert await tile_image.evaluate("img => img.currentSrc.includes('variant=thumb-300')")
    width, height = await tile_image.evaluate("img => [img.naturalWidth, img.naturalHeight]")  # scaled by srcset
    assert width > 0 and height * 2 == width * 3

    await page.locator("#gallery .tile a").first.click()  # opens the viewer
    await page.get_by_role("dialog", name="IMG_0042.HEIC").get_by_role("link", name="Details").click()
    await expect(page.get_by_role("heading", level=1, name="IMG_0042.HEIC")).to_be_visible()
    await expect(page.locator(".facts")).to_contain_text("640 × 960")
    hero = page.locator("#photo-img")
    await expect(hero).to_have_attribute("srcset", re.compile(r"^/api/photos/1/file\?variant=display-400&v=[\w-]+ 267w, "
                                                              r"/api/photos/1/file\?variant=display-1000&v=[\w-]+ 640w$"))
    await hero.evaluate("img => img.decode()")
    assert "variant=display-" in await hero.evaluate("img => img.currentSrc")
    # Decoded by Chromium's own AVIF decoder: portrait, with the top-left quadrant red.
    natural = await hero.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert natural[1] * 2 == natural[0] * 3
    top_left = await hero.evaluate("""img => {
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        const context = canvas.getContext('2d');
        context.drawImage(img, 0, 0);
        return Array.from(context.getImageData(img.naturalWidth / 4, img.naturalHeight / 4, 1, 1).data);
    }""")
    assert top_left[0] > 200 and top_left[1] < 60 and top_left[2] < 60, top_left
    await screenshot(page, "heic-photo-from-avif")
