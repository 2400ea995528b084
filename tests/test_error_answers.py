"""Every 4xx answer of the API is the contract's JSON error, `{"error": code, "message": sentence}`, whether photoq
raised it, aiohttp did (no route, wrong method, body too large), or every file of an upload was refused; and the
HTTP status of every error comes from one table, photoq/errors.py."""

from __future__ import annotations

import ast
import base64
from pathlib import Path

import aiohttp
import pytest

import photoq.app  # every module that could define an error class
from photoq import errors
from photoq.errors import PhotoqError, error_for_status

from .support import AUTH, jpeg, multipart

TUS = {"Tus-Resumable": "1.0.0"}


def all_error_classes(cls: type[PhotoqError] = PhotoqError) -> list[type[PhotoqError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += all_error_classes(sub)
    return found


def test_every_error_status_is_chosen_in_photoq_errors():
    elsewhere = [f"{c.__module__}.{c.__qualname__}" for c in all_error_classes() if c.__module__ != errors.__name__]
    assert not elsewhere, f"error classes (and so statuses) outside photoq/errors.py: {elsewhere}"
    statuses = [c.status for c in all_error_classes()]
    assert len(statuses) == len(set(statuses)), "two error classes answer with one status"
    for cls in all_error_classes():
        assert error_for_status(cls.status) is cls
    assert error_for_status(418) is None


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_only_the_web_layer_and_the_http_clients_import_aiohttp():
    package = Path(photoq.app.__file__).parent
    allowed = {"app.py", "cli.py", "ops/import_targets.py"}  # the server's wiring; clients of a running server
    speaking = sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                      if p.parent.name != "web" and str(p.relative_to(package)) not in allowed
                      and any(m.split(".")[0] == "aiohttp" for m in imported_modules(p)))
    assert not speaking, f"HTTP outside photoq/web: {speaking}"


async def tus_upload(client, album: int, data: bytes) -> str:
    metadata = f"album_id {base64.b64encode(str(album).encode()).decode()}," \
               f"filename {base64.b64encode(b'notes.jpg').decode()}"
    headers = {**AUTH, **TUS, "Upload-Length": str(len(data)), "Upload-Metadata": metadata}
    async with client.post("/api/uploads", headers=headers) as r:
        assert r.status == 201
        return r.headers["Location"]


async def test_every_4xx_carries_error_and_message(client, album):
    async with client.post(f"/api/albums/{album}/photos", data=multipart(("ok.jpg", jpeg(seed=1))),
                           headers=AUTH) as r:
        photo = (await r.json())["photos"][0]["id"]
    notes = b"these are notes, not a photo\n" * 20
    location = await tus_upload(client, album, notes)
    no_file = aiohttp.MultipartWriter("form-data")
    no_file.append("no file here").set_content_disposition("form-data", name="caption")
    requests = [
        # (method, path, keyword arguments, expected status, expected error code or None for any)
        ("GET", "/api/albums", {}, 401, "unauthorized"),
        ("GET", "/api/no-such-thing", {"headers": AUTH}, 404, "not_found"),
        ("DELETE", "/api/stats", {"headers": AUTH}, 405, "method_not_allowed"),
        ("POST", "/api/albums", {"headers": AUTH, "data": b"{not json"}, 400, None),
        ("POST", "/api/albums", {"headers": AUTH, "json": {"name": "\u202e"}}, 400, "bad_name"),
        ("POST", "/api/albums", {"headers": AUTH, "data": b"x" * 3_000_000}, 413, "too_large"),
        ("GET", "/api/photos/abc", {"headers": AUTH}, 400, "bad_id"),
        ("GET", "/api/photos/999999", {"headers": AUTH}, 404, "not_found"),
        ("GET", f"/api/photos/{photo}/file?variant=nope", {"headers": AUTH}, 400, None),
        ("POST", f"/api/photos/{photo}/retry", {"headers": AUTH}, 409, "nothing_to_retry"),
        ("POST", f"/api/albums/{album}/photos", {"headers": AUTH, "json": {}}, 400, "bad_multipart"),
        ("POST", f"/api/albums/{album}/photos", {"headers": AUTH, "data": no_file}, 400, "unexpected_field"),
        ("POST", f"/api/albums/{album}/photos", {"headers": AUTH, "data": multipart(("n.jpg", notes))}, 415,
         "unsupported_media_type"),
        ("POST", "/api/albums/999999/photos", {"headers": AUTH, "data": multipart(("n.jpg", notes))}, 404,
         "not_found"),
        ("POST", "/api/uploads", {"headers": AUTH}, 412, "unsupported_tus_version"),
        ("HEAD", "/api/uploads/" + "x" * 32, {"headers": {**AUTH, **TUS}}, 404, None),  # HEAD: no body to check
        ("PATCH", "/api/uploads/" + "x" * 32, {"headers": {**AUTH, **TUS, "Upload-Offset": "0",
                                                            "Content-Type": "application/offset+octet-stream"},
                                               "data": b"x"}, 404, "not_found"),
        ("PATCH", location, {"headers": {**AUTH, **TUS, "Upload-Offset": "0",
                                         "Content-Type": "application/offset+octet-stream"}, "data": notes},
         415, "unsupported_media_type"),
    ]
    for method, path, kwargs, status, code in requests:
        async with client.request(method, path, **kwargs) as r:
            assert r.status == status, (method, path, r.status, await r.text())
            if method == "HEAD":
                continue
            assert r.content_type == "application/json", (method, path, r.content_type)
            body = await r.json()
            assert isinstance(body.get("error"), str) and body["error"], (method, path, body)
            assert isinstance(body.get("message"), str) and body["message"].strip(), (method, path, body)
            if code is not None:
                assert body["error"] == code, (method, path, body)


async def test_rate_limited_and_overloaded_answers_are_errors_too(start_client):
    client = await start_client(ratelimit={"capacity": 1, "refill_per_second": 0.001})
    async with client.get("/api/stats", headers=AUTH) as r:
        assert r.status == 200
    async with client.get("/api/stats", headers=AUTH) as r:
        assert r.status == 429 and "Retry-After" in r.headers
        body = await r.json()
        assert body["error"] == "rate_limited" and body["message"]


@pytest.mark.parametrize("status", sorted({c.status for c in all_error_classes()}))
def test_each_status_has_a_default_sentence(status):
    kind = error_for_status(status)
    assert kind is not None
    error = kind()
    assert error.status == status and error.code and error.message.endswith(".")
