"""photoq installed as an app, in a real Chromium: the service worker's offline shell (and what it never keeps),
and the share target's page where the user picks the album."""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.support import jpeg

from .conftest import PHONE, api, create_album, screenshot, upload, write_files

SHARE_FORM = """(files) => {
  const form = document.createElement('form');
  form.method = 'post'; form.action = '/share'; form.enctype = 'multipart/form-data';
  const input = document.createElement('input');
  input.type = 'file'; input.name = 'file'; input.multiple = true; input.id = 'fake-share';
  form.append(input);
  document.body.append(form);
}"""


async def controlled(page) -> None:
    await page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    if not await page.evaluate("!!navigator.serviceWorker.controller"):
        await page.reload()
    assert await page.evaluate("!!navigator.serviceWorker.controller")


async def test_offline_shell_and_nothing_private_in_its_cache(browser, start_ui):
    ui = await start_ui()
    page = await ui.new_page(browser)
    album_id = await create_album(page, ui, "Private trip")
    await upload(ui, album_id, ("secret.jpg", jpeg(seed=1)))
    await page.reload()
    await controlled(page)
    manifest = await page.evaluate("fetch('/manifest.webmanifest').then(r => r.json())")
    assert manifest["share_target"]["action"] == "/share"

    await page.context.set_offline(True)
    await page.goto(ui.url(f"/albums/{album_id}"))
    await expect(page.get_by_role("heading", level=1, name="You are offline")).to_be_visible()
    assert "Private trip" not in await page.content()
    api_offline = await page.evaluate("fetch('/api/albums').then(() => 'answered', () => 'failed')")
    assert api_offline == "failed"  # never answered from a cache
    await screenshot(page, "pwa-offline-laptop")  # 1280 x 860: the suite's laptop

    cached = await page.evaluate("""async () => {
      const urls = [];
      for (const name of await caches.keys()) {
        for (const request of await (await caches.open(name)).keys()) urls.push(new URL(request.url).pathname);
      }
      return urls;
    }""")
    assert "/offline" in cached and all(u == "/offline" or u.startswith("/static/") for u in cached), cached

    await page.context.set_offline(False)  # the offline page reloads by itself: the album is back
    await expect(page.get_by_role("heading", level=1, name="Private trip")).to_be_visible()
    await page.get_by_role("button", name="Log out").click()
    await page.goto(ui.url(f"/albums/{album_id}"))
    assert "/login" in page.url  # the album page is not served from anywhere once logged out


async def test_share_to_photoq_then_pick_the_album(browser, start_ui, tmp_path):
    ui = await start_ui()
    page = await ui.new_page(browser, viewport=PHONE, color_scheme="dark")
    album_id = await create_album(page, ui, "Phone photos")
    await create_album(page, ui, "Another album")
    paths = write_files(tmp_path / "share", {"IMG_2041.jpg": jpeg(1200, 900, seed=2),
                                             "IMG_2042.jpg": jpeg(900, 1200, seed=3),
                                             "notes.txt": b"a shopping list, not a photo" * 20})
    await page.evaluate(SHARE_FORM)
    await page.set_input_files("#fake-share", paths)
    await page.evaluate("document.getElementById('fake-share').form.submit()")
    await expect(page.get_by_role("heading", level=1, name="Add shared photos")).to_be_visible()
    assert re.search(r"/share/[A-Za-z0-9_-]+$", page.url)
    await expect(page.get_by_text("IMG_2041.jpg")).to_be_visible()
    await expect(page.get_by_text("notes.txt")).to_be_visible()
    await page.get_by_label("Album", exact=True).select_option(label="Phone photos (0)")
    await screenshot(page, "pwa-share-phone-dark")
    await page.get_by_role("button", name="Add 2 photos").click()
    await expect(page.get_by_role("heading", level=1, name="Phone photos")).to_be_visible()
    await expect(page.get_by_role("status").filter(has_text="Added 2 shared photo")).to_be_visible()
    body = await api(ui, "GET", f"/api/albums/{album_id}/photos")
    assert sorted(p["filename"] for p in body["photos"]) == ["IMG_2041.jpg", "IMG_2042.jpg"]

    laptop = await ui.new_page(browser)
    await laptop.goto(ui.url("/share"))
    await expect(laptop.get_by_role("heading", name="Nothing shared is waiting")).to_be_visible()
    await screenshot(laptop, "pwa-share-none-laptop")
