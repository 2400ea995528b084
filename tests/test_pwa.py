"""photoq as an installable app: manifest, icons, service worker, offline page, and the share target's two steps."""

from __future__ import annotations

import io
import json
import re
from urllib.parse import unquote

from PIL import Image

from photoq.shares import MAX_SHARES, SHARE_TTL_SECONDS

from .support import AUTH, jpeg
from .support import log_in as log_in_with_form


async def log_in(client) -> str:
    """A browser session: the cookie is kept by the client; returns the page's CSRF token."""
    await log_in_with_form(client)
    async with client.get("/") as r:
        return re.search(r'name="csrf-token" content="([^"]+)"', await r.text()).group(1)


def shared(*files, extra: dict | None = None):
    import aiohttp
    form = aiohttp.FormData()
    for name, value in (extra or {}).items():
        form.add_field(name, value)
    for filename, data in files:
        form.add_field("file", data, filename=filename, content_type="image/jpeg")
    return form


async def test_the_manifest_names_icons_that_exist_and_a_share_target(client):
    async with client.get("/manifest.webmanifest") as r:  # no credentials: browsers fetch it without cookies
        assert r.status == 200
        assert r.content_type == "application/manifest+json"
        manifest = json.loads(await r.text())
    assert manifest["start_url"] == "/" and manifest["display"] == "standalone"
    sizes = set()
    for icon in manifest["icons"]:
        async with client.get(icon["src"]) as r:
            assert r.status == 200, icon
            body = await r.read()
        if icon["type"] == "image/png":
            width, height = Image.open(io.BytesIO(body)).size
            assert f"{width}x{height}" == icon["sizes"]
            sizes.add((width, icon["purpose"]))
    assert {(192, "any"), (512, "any"), (512, "maskable")} <= sizes
    target = manifest["share_target"]
    assert target["action"] == "/share" and target["method"] == "POST"
    assert target["enctype"] == "multipart/form-data" and target["params"]["files"][0]["name"] == "file"


async def test_the_service_worker_caches_only_the_public_shell(client):
    async with client.get("/sw.js") as r:
        assert r.status == 200 and r.content_type == "text/javascript"
        source = await r.text()
    shell = json.loads(re.search(r"const SHELL = (\[.*?\]);", source).group(1))
    assert "/offline" in shell
    for url in shell:
        assert url == "/offline" or url.startswith("/static/"), url
        async with client.get(url) as r:  # each one public, so the worker can fetch it logged out
            assert r.status == 200, url
    assert "__VERSION__" not in source and "__SHELL__" not in source


async def test_the_offline_page_is_public_and_holds_nothing_private(client, album):
    async with client.get("/offline") as r:
        assert r.status == 200
        text = await r.text()
    assert "You are offline" in text and "csrf-token" not in text and "Test" not in text


async def test_a_share_waits_for_the_user_to_choose_the_album(client, album):
    csrf = await log_in(client)
    files = [("beach.jpg", jpeg(seed=1)), ("notes.txt", b"not a photo at all, just some text" * 10),
             ("dune.jpg", jpeg(seed=2))]
    # The share sheet's POST carries no CSRF token and no Origin of ours.
    async with client.post("/share", data=shared(*files, extra={"title": "Holiday"}), allow_redirects=False) as r:
        assert r.status == 303, await r.text()
        location = r.headers["Location"]
    assert re.fullmatch(r"/share/[A-Za-z0-9_-]{16,64}", location)
    async with client.get(f"/api/albums/{album}", headers=AUTH) as r:
        assert (await r.json())["photo_count"] == 0  # nothing is added before the user confirms
    async with client.get(location) as r:
        page = await r.text()
    assert "beach.jpg" in page and "dune.jpg" in page and "Add 2 photos" in page
    assert "not a supported image" in page.lower() or "not an image" in page.lower()
    async with client.get(location + "/0") as r:
        assert r.status == 200 and r.content_type == "image/jpeg"
    # Confirming is a form post like any other: without the CSRF token it is refused.
    async with client.post(location, data={"album_id": str(album)}, allow_redirects=False) as r:
        assert r.status == 403
    async with client.post(location, data={"album_id": str(album), "csrf_token": csrf}, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == f"/albums/{album}"
    async with client.get(f"/api/albums/{album}/photos", headers=AUTH) as r:
        assert [p["filename"] for p in (await r.json())["photos"]] == ["beach.jpg", "dune.jpg"]
    async with client.get(location) as r:
        assert r.status == 404  # used up


async def test_a_share_can_go_into_a_new_album_or_be_discarded(client):
    csrf = await log_in(client)
    async with client.post("/share", data=shared(("a.jpg", jpeg(seed=3))), allow_redirects=False) as r:
        first = r.headers["Location"]
    async with client.post(first, data={"new_album": "From my phone", "csrf_token": csrf}, allow_redirects=False) as r:
        album_id = int(r.headers["Location"].rsplit("/", 1)[1])
    async with client.get(f"/api/albums/{album_id}", headers=AUTH) as r:
        body = await r.json()
    assert body["name"] == "From my phone" and body["photo_count"] == 1
    async with client.post("/share", data=shared(("b.jpg", jpeg(seed=4))), allow_redirects=False) as r:
        second = r.headers["Location"]
    async with client.post(second + "/discard", data={"csrf_token": csrf}, allow_redirects=False) as r:
        assert r.status == 303
    async with client.get(second) as r:
        assert r.status == 404


async def test_a_share_from_another_sites_page_is_refused(client):
    await log_in(client)
    async with client.post("/share", data=shared(("a.jpg", jpeg())), headers={"Origin": "https://evil.example"},
                           allow_redirects=False) as r:
        assert r.status == 403


async def test_a_share_without_a_session_goes_to_the_login_then_the_share_page(client):
    async with client.post("/share", data=shared(("a.jpg", jpeg())), allow_redirects=False) as r:
        assert r.status == 303 and unquote(r.headers["Location"]) == "/login?next=/share"


async def test_old_shares_expire_and_only_a_few_are_kept(client, settings):
    from photoq.web.keys import SHARES

    await log_in(client)
    inbox = client.server.app[SHARES]
    for n in range(MAX_SHARES + 3):
        async with client.post("/share", data=shared((f"{n}.jpg", jpeg(seed=n))), allow_redirects=False) as r:
            assert r.status == 303
    assert len(await inbox.pending()) == MAX_SHARES
    now = inbox.clock()
    inbox.clock = lambda: now + SHARE_TTL_SECONDS + 1
    assert await inbox.sweep() == MAX_SHARES
    assert not any((settings.data_dir / "shares").iterdir())


async def test_logging_out_clears_the_browsers_cache(client):
    csrf = await log_in(client)
    async with client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Clear-Site-Data"] == '"cache"'
