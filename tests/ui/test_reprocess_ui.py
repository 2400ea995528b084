"""While `photoq reprocess` renders a photo's thumbnails again, the gallery keeps showing the ones made before, and
shows the new ones (new URLs, past the browser's cache) once they are written."""

from __future__ import annotations

from playwright.async_api import expect

from tests.support import jpeg, wait_for_photos

from .conftest import api, create_album, upload


async def test_the_gallery_keeps_the_thumbnails_while_they_are_made_again(browser, start_ui):
    ui = await start_ui(processing={"workers": 1})
    page = await ui.new_page(browser)
    album_id = await create_album(page, ui, "Again")
    ids = await upload(ui, album_id, ("a.jpg", jpeg(seed=5)), ("b.jpg", jpeg(seed=6)))
    await wait_for_photos(ui.api, ids)
    tiles = [page.locator(f"#photo-{photo_id}") for photo_id in ids]
    for tile in tiles:
        await expect(tile.locator("img.tile-img")).to_be_visible()
    first_sources = [await tile.locator("img.tile-img").get_attribute("src") for tile in tiles]

    await api(ui, "POST", "/api/admin/queue/pause")
    answer = await api(ui, "POST", "/api/admin/reprocess", json={"all": True, "variants": ["thumb-150", "thumb-300"]})
    assert answer["outputs"] == {"thumb-150": 2, "thumb-300": 2}
    for tile in tiles:
        # The page heard that the photo is processing again, and still shows its thumbnail, not a placeholder.
        await expect(tile).to_have_attribute("data-status", "processing")
        await expect(tile).to_have_attribute("data-state", "done")
        await expect(tile.locator("img.tile-img")).to_be_visible()

    await api(ui, "POST", "/api/admin/queue/resume")
    await wait_for_photos(ui.api, ids)
    for tile, first_source in zip(tiles, first_sources):
        await expect(tile).to_have_attribute("data-status", "complete")
        await expect(tile.locator("img.tile-img")).to_be_visible()
        await expect(tile.locator("img.tile-img")).not_to_have_attribute("src", first_source)
        assert await tile.locator("img.tile-img").evaluate("img => img.complete && img.naturalWidth > 0")
