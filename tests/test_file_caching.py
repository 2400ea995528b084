"""Output files and the browser cache: pages link each output with the time it was written (`v`), so the browser may
keep it for good and still sees a re-rendered output at once; a grid image never points at an output that is not
written yet (it would be served as the whole original)."""

from __future__ import annotations

import html
import re

from photoq.config import Output

from .support import AUTH, wait_for_photos
from .test_reprocess import DISPLAY, LARGE, SMALL, processed_photos, reprocess, restart

EXTRA = Output("extra", "thumbnail", 96, 96)


async def page_html(client, path: str) -> str:
    async with client.get(path, headers=AUTH) as r:
        assert r.status == 200
        return await r.text()


def image_urls(markup: str, photo_id: int) -> list[str]:
    prefix = f"/api/photos/{photo_id}/file?"
    return sorted({html.unescape(u) for u in re.findall(r'(/api/photos/\d+/file\?[^" ,]+)', markup)
                   if html.unescape(u).startswith(prefix)})


async def test_a_versioned_output_url_is_cached_for_good_and_a_bare_one_is_revalidated(start_client):
    client, album_id, [photo_id, _] = await processed_photos(start_client)
    urls = image_urls(await page_html(client, f"/albums/{album_id}"), photo_id)
    assert urls and all("&v=" in u for u in urls), urls
    async with client.get(urls[0], headers=AUTH) as r:
        assert r.status == 200
        assert r.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    bare = urls[0].split("&v=")[0]
    async with client.get(bare, headers=AUTH) as r:
        assert r.status == 200
        assert r.headers["Cache-Control"] == "private, no-cache"
        etag = r.headers["ETag"]
    async with client.get(bare, headers={**AUTH, "If-None-Match": etag}) as r:
        assert r.status == 304  # revalidation costs no bytes


async def test_pages_link_only_written_thumbnails_and_new_versions_after_a_re_render(start_client):
    client, album_id, [photo_id, _] = await processed_photos(start_client)
    before = image_urls(await page_html(client, f"/albums/{album_id}"), photo_id)

    # An output added to the configuration is not written for old photos until `photoq reprocess`: a grid image
    # that offered it would make the browser download the whole original for a thumbnail.
    client = await restart(client, start_client, outputs=(SMALL, EXTRA, LARGE, DISPLAY))
    for path in ("/", f"/albums/{album_id}"):
        urls = image_urls(await page_html(client, path), photo_id)
        assert urls and not any("variant=extra" in u for u in urls), (path, urls)
    assert image_urls(await page_html(client, f"/albums/{album_id}"), photo_id) == before

    answer = await reprocess(client)
    assert answer["queued"] == 2  # the new thumbnail of both photos
    await wait_for_photos(client, [photo_id])
    after = image_urls(await page_html(client, f"/albums/{album_id}"), photo_id)
    assert any("variant=extra" in u for u in after)
    assert set(before) <= set(after)  # the others were not written again: same versions

    # Rendered again with another size: a new version, so no browser keeps showing the old picture.
    client = await restart(client, start_client, outputs=(SMALL, EXTRA, Output("large", "thumbnail", 200, 200),
                                                          DISPLAY))
    await reprocess(client)
    await wait_for_photos(client, [photo_id])
    rerendered = image_urls(await page_html(client, f"/albums/{album_id}"), photo_id)
    old_large = [u for u in after if "variant=large" in u]
    new_large = [u for u in rerendered if "variant=large" in u]
    assert old_large and new_large and old_large != new_large
    photo_page = image_urls(await page_html(client, f"/photos/{photo_id}"), photo_id)
    assert photo_page and all("&v=" in u for u in photo_page if "variant=original" not in u)
