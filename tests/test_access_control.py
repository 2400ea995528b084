"""Access control: every route is locked unless it is on a short public list, served files say exactly what
they are, no client-supplied path reaches the filesystem, and the admin token stays out of the logs."""

from __future__ import annotations

import asyncio
import io
import re

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from .hostile import Part, multipart_body, multipart_type, raw_http, request_head
from .support import AUTH, TEST_TOKEN, ServerProcess, image_bytes, jpeg, wait_for_photos

# The only ways in without credentials: the health check, the login page, and the static files it needs.
PUBLIC_ROUTES = {("GET", "/healthz"), ("HEAD", "/healthz"), ("GET", "/login"), ("HEAD", "/login"),
                 ("POST", "/login"),
                 # The installable app's files: nothing private in them, and browsers fetch them without cookies.
                 *((m, p) for m in ("GET", "HEAD") for p in ("/manifest.webmanifest", "/sw.js", "/offline"))}
PUBLIC_STATIC_PREFIXES = ("/static",)
DUMMY_SEGMENT = "1"


def walk_routes(app: web.Application) -> list[tuple[str, str, str]]:
    """(method, canonical path, concrete path) for every route, with a dummy value for each dynamic segment."""
    found = []
    for route in app.router.routes():
        resource = route.resource
        if resource is None:
            continue
        canonical = resource.canonical
        if isinstance(resource, web.StaticResource):
            concrete = canonical.rstrip("/") + "/photoq.css"
        else:
            concrete = re.sub(r"\{[^}]+\}", DUMMY_SEGMENT, canonical)
        method = "GET" if route.method == "*" else route.method
        found.append((method, canonical, concrete))
    return found


def test_the_walk_sees_every_route_of_the_contract(settings):
    from photoq.app import create_app

    seen = {(m, c) for m, c, _ in walk_routes(create_app(settings))}
    for expected in [("GET", "/api/albums"), ("POST", "/api/albums/{id}/photos"), ("GET", "/api/photos/{id}/file"),
                     ("GET", "/api/events"), ("POST", "/api/admin/queue/pause"), ("DELETE", "/api/photos/{id}"),
                     ("GET", "/healthz"), ("GET", "/login")]:
        assert expected in seen, expected


@pytest.mark.parametrize("credentials", [
    {},
    {"Authorization": "Bearer not-the-token-but-long-enough"},
    {"Authorization": f"Basic {TEST_TOKEN}"},
    {"Authorization": f"Bearer {TEST_TOKEN}x"},
    {"Cookie": f"photoq_session={TEST_TOKEN}"},  # the token is not a session value
    {"Cookie": "photoq_session=0000000000000000000000000000000000000000000000000000000000000000"},
], ids=["none", "wrong-token", "basic-scheme", "token-prefix", "token-as-cookie", "forged-cookie"])
async def test_every_route_but_the_public_ones_needs_credentials(client, credentials):
    routes = walk_routes(client.app)
    assert len(routes) > 20
    guessing = credentials.get("Authorization", "").startswith("Bearer ")
    for method, canonical, path in routes:
        async with client.request(method, path, headers=credentials, allow_redirects=False) as r:
            if guessing and r.status == 429:  # wrong tokens are guesses: after a few, the address is locked out
                assert "Retry-After" in r.headers
                if method != "HEAD" and r.content_type == "application/json":
                    assert (await r.json())["error"] == "login_locked"
                continue
            if (method, canonical) in PUBLIC_ROUTES or canonical.startswith(PUBLIC_STATIC_PREFIXES):
                assert r.status < 400 or r.status == 401 and canonical == "/login", (method, path, r.status)
                continue
            if canonical.startswith("/api/") or canonical == "/metrics":
                assert r.status == 401, (method, path, r.status)
                if method != "HEAD":
                    body = await r.json()
                    assert body["error"] == "unauthorized" and body["message"], (method, path)
            else:
                assert r.status in (302, 303, 307), (method, path, r.status)
                assert r.headers["Location"].startswith("/login"), (method, path, r.headers["Location"])


async def test_the_public_static_files_are_only_the_login_pages_assets(client):
    async with client.get("/login") as r:
        page = await r.text()
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', page)
    assert assets, "the login page links its styles"
    for asset in assets:
        async with client.get(asset) as r:
            assert r.status == 200, asset


async def test_unknown_paths_without_credentials_reveal_nothing(client):
    for path in ["/api/nothing-here", "/api/albums/1/secret", "/admin", "/.env", "/data/photoq.db"]:
        async with client.get(path, allow_redirects=False) as r:
            assert r.status in (401, 303, 404), path
            if path.startswith("/api/"):
                assert r.status == 401


# -- served files --------------------------------------------------------------------------------------------------


FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "TIFF": "image/tiff", "WEBP": "image/webp"}


async def test_served_files_carry_their_real_content_type_and_nosniff(client, album):
    files = {fmt: image_bytes(fmt, 120, 90, seed=i) for i, fmt in enumerate(FORMATS)}
    parts = [Part(data, f"photo.{fmt.lower()}") for fmt, data in files.items()]
    # A client's Content-Type is ignored: a JPEG sent as text/html is a JPEG, HTML sent as image/jpeg is refused.
    parts.append(Part(jpeg(120, 90, seed=9), "lies.html", headers=[(b"Content-Type", b"text/html")]))
    parts.append(Part(b"<html><script>alert(1)</script></html>", "page.jpg", headers=[(b"Content-Type",
                                                                                       b"image/jpeg")]))
    parts.append(Part(b'<svg xmlns="http://www.w3.org/2000/svg"/>', "v.svg",
                      headers=[(b"Content-Type", b"image/svg+xml")]))
    async with client.post(f"/api/albums/{album}/photos", data=multipart_body(*parts),
                           headers={**AUTH, "Content-Type": multipart_type()}) as r:
        assert r.status == 202
        entries = (await r.json())["photos"]
    assert [e["status"] for e in entries] == ["pending"] * 6 + ["rejected"] * 2
    ids = [e["id"] for e in entries[:6]]
    await wait_for_photos(client, ids)

    expected = list(FORMATS.values()) + ["image/jpeg"]
    for photo_id, content_type, data in zip(ids, expected, list(files.values()) + [None]):
        async with client.get(f"/api/photos/{photo_id}/file", headers=AUTH) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == content_type
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            body = await r.read()
            if data is not None:
                assert body == data
        async with client.get(f"/api/photos/{photo_id}/file?variant=thumb-300", headers=AUTH) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "image/webp"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert Image.open(io.BytesIO(await r.read())).format == "WEBP"
        async with client.get(f"/api/photos/{photo_id}", headers=AUTH) as r:
            assert (await r.json())["content_type"] == content_type


async def test_every_response_says_nosniff(client, album):
    for path, headers in [("/healthz", {}), ("/login", {}), ("/api/albums", AUTH), ("/api/photos/999", AUTH),
                          ("/api/albums", {}), ("/", {}), ("/static/photoq.css", {})]:
        async with client.get(path, headers=headers, allow_redirects=False) as r:
            assert r.headers.get("X-Content-Type-Options") == "nosniff", path


# -- no client path reaches the filesystem ---------------------------------------------------------------------------


TRAVERSALS = [
    "/static/../db.py", "/static/%2e%2e/db.py", "/static/..%2fdb.py", "/static/..%5cdb.py", "/static/%2e%2e%2fdb.py",
    "/static/photoq.css/../../db.py", "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/static/....//db.py",
    "/static/../../../../../../etc/passwd", "/static/%c0%ae%c0%ae/db.py", "/static/photoq.css%00.py",
    "/static/../api/albums", "/static/%2e%2e/api/albums",
    "/api/photos/..%2f..%2fphotoq.db/file", "/api/photos/1%2f..%2f..%2ftoken/file", "/api/albums/..%2f1",
    "/api/photos/1/file?variant=../../../db.py", "/api/photos/1/file?variant=%2e%2e%2f%2e%2e%2ftoken",
    "/api/photos/1/..%2f..%2f..%2fetc%2fpasswd",
]


@pytest.mark.parametrize("credentials", [{}, {"Authorization": f"Bearer {TEST_TOKEN}"}], ids=["anonymous", "admin"])
async def test_no_client_path_reaches_the_filesystem(client, album, credentials):
    async with client.post(f"/api/albums/{album}/photos", headers={**AUTH, "Content-Type": multipart_type()},
                           data=multipart_body(Part(jpeg(64, 64, seed=3), "a.jpg"))) as r:
        assert r.status == 202
    for path in TRAVERSALS:
        # Raw bytes on the wire: an HTTP client library would tidy the dot segments away before sending.
        head = request_head("GET", path, {**credentials, "Connection": "close"})
        response = await raw_http(client.server.host, client.server.port, head)
        assert response.status in (303, 400, 401, 403, 404), (path, response.status)
        assert b"aiosqlite" not in response.body and b"root:" not in response.body, path
        assert b'"albums"' not in response.body and b"SQLite format" not in response.body, path


# -- the token stays out of the logs -------------------------------------------------------------------------------


async def test_the_token_never_appears_in_the_log_after_the_first_run_line(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[server]\nlog_level = "debug"\n')  # the chattiest the log gets
    server = ServerProcess(tmp_path / "data", workers=1, config=config, extra_env={"PHOTOQ_AUTH_TOKEN": ""})
    server.start()
    try:
        token = (tmp_path / "data" / "token").read_text().strip()
        bearer = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(base_url=server.url) as session:
            async with session.get(f"/login?token={token}", allow_redirects=False) as r:
                assert r.status == 400  # token links are refused (they would stay in the browser's history)
                assert token not in await r.text()
            async with session.get(f"/login?token={token}x&next=/api/albums", allow_redirects=False) as r:
                assert r.status == 400
            async with session.post("/login", data={"token": token, "next": "/"}, allow_redirects=False) as r:
                assert r.status == 303
                session_cookie = r.cookies["photoq_session"].value
            async with session.post("/api/albums", json={"name": "Holidays"}, headers=bearer) as r:
                assert r.status == 201
                album = (await r.json())["id"]
            async with session.post(f"/api/albums/{album}/photos", headers=bearer,
                                    data=aiohttp.FormData({"file": io.BytesIO(jpeg(64, 64))})) as r:
                assert r.status in (202, 400)
            async with session.get(f"/api/albums?token={token}", headers=bearer) as r:
                assert r.status == 200
            async with session.get(f"/api/nothing?access_token={token}", headers=bearer) as r:
                assert r.status == 404
            async with session.get("/api/albums", headers={"Authorization": f"Bearer {token[:-1]}"}) as r:
                assert r.status == 401
            async with session.get("/api/events", headers=bearer) as r:
                await r.content.readline()
        await asyncio.sleep(0)
        assert server.terminate() == 0
        server.start()  # a second start never prints the token again
        async with aiohttp.ClientSession(base_url=server.url) as session, \
                session.get("/api/albums", headers=bearer) as r:
            assert r.status == 200
    finally:
        server.stop()
    log = server.log()
    lines_with_token = [line for line in log.splitlines() if token in line]
    assert not lines_with_token, lines_with_token  # not even the first run's login link: it carries a code
    assert log.count("/login?code=") == 1 and log.index("/login?code=") < log.index("POST /api/albums")
    assert session_cookie not in log
