"""A corpus of hostile requests against a real server: each gets the contract's status and JSON error, nothing
half-stored stays behind, and the server keeps serving. Plus bounded fuzzing of multipart ingest and the probe."""

from __future__ import annotations

import io
import json
import random
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from photoq import imaging
from photoq.web.keys import STORAGE

from . import hostile as h
from .hostile import Part, multipart_body, multipart_type, raw_http, request_head
from .support import AUTH, TEST_TOKEN, jpeg, photo_like, until, wait_for_photos

MAX_FILE_BYTES = 1_000_000
MAX_FILES = 8
LIMITS = {"upload": {"max_file_bytes": MAX_FILE_BYTES, "max_files_per_request": MAX_FILES}}


@dataclass
class Outcome:
    status: int | None  # None: the connection ended without an answer (the client hung up)
    body: dict | None
    headers: dict


@dataclass
class Ctx:
    client: object
    album: int

    @property
    def host_port(self) -> tuple[str, int]:
        return self.client.server.host, self.client.server.port

    async def request(self, method: str, path: str, *, data: bytes | None = None, content_type: str | None = None,
                      headers: dict | None = None, params: dict | None = None) -> Outcome:
        all_headers = {**AUTH, **(headers or {})}
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        async with self.client.request(method, path, data=data, headers=all_headers, params=params) as r:
            text = await r.text()
            body = json.loads(text) if r.content_type == "application/json" else None
            return Outcome(r.status, body, dict(r.headers))

    async def upload(self, *parts: Part, boundary: str = h.BOUNDARY, close: bool = True) -> Outcome:
        return await self.request("POST", f"/api/albums/{self.album}/photos",
                                  data=multipart_body(*parts, boundary=boundary, close=close),
                                  content_type=multipart_type(boundary))

    async def raw_upload(self, body: bytes, content_length: int, *, hang_up: bool) -> Outcome:
        head = request_head("POST", f"/api/albums/{self.album}/photos", {
            "Authorization": f"Bearer {TEST_TOKEN}", "Content-Type": multipart_type(),
            "Content-Length": str(content_length), "Connection": "close"})
        response = await raw_http(*self.host_port, head, body, close_after_send=hang_up)
        body_json = json.loads(response.body) if response.body.startswith(b"{") else None
        return Outcome(response.status, body_json, response.headers)


@dataclass
class Case:
    name: str
    run: Callable[[Ctx], Awaitable[Outcome]]
    status: int | None
    error: str | None  # the top-level error code, or each part's error code for per-part rejections
    accepted: int = 0  # photos this case may add to the album
    check: Callable[[Outcome], None] | None = None


def one_file(data: bytes, filename="photo.jpg") -> Callable[[Ctx], Awaitable[Outcome]]:
    return lambda ctx: ctx.upload(Part(data, filename))


def filename_is(expected: str) -> Callable[[Outcome], None]:
    def check(outcome: Outcome) -> None:
        assert outcome.body["photos"][0]["filename"] == expected
    return check


def filename_is_safe(outcome: Outcome) -> None:
    name = outcome.body["photos"][0]["filename"]
    assert 0 < len(name) <= 255
    assert "/" not in name and "\\" not in name and name not in (".", "..")
    assert all(c.isprintable() for c in name), repr(name)
    assert not set(name) & set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def get(path: str) -> Callable[[Ctx], Awaitable[Outcome]]:
    return lambda ctx: ctx.request("GET", path.format(album=ctx.album))


def post_json(raw: bytes) -> Callable[[Ctx], Awaitable[Outcome]]:
    return lambda ctx: ctx.request("POST", "/api/albums", data=raw, content_type="application/json")


def good(seed: int) -> bytes:
    return jpeg(160, 120, seed=seed)


def too_many_parts(ctx: Ctx) -> Awaitable[Outcome]:
    return ctx.upload(*[Part(good(100 + i), f"{i}.jpg") for i in range(MAX_FILES + 1)])


def cut_off_mid_body(ctx: Ctx) -> Awaitable[Outcome]:
    body = multipart_body(Part(good(7), "a.jpg"), Part(jpeg(800, 600, seed=8), "b.jpg"))
    return ctx.raw_upload(body[: len(body) * 2 // 3], len(body), hang_up=True)


def lying_length_longer(ctx: Ctx) -> Awaitable[Outcome]:
    # The body claims more bytes than are ever sent; the client gives up waiting and hangs up.
    body = multipart_body(Part(good(9), "a.jpg"), close=False)
    return ctx.raw_upload(body, len(body) + 50_000, hang_up=True)


def lying_length_shorter(ctx: Ctx) -> Awaitable[Outcome]:
    # The server reads only what Content-Length announced, so for it the multipart body ends inside the file.
    # (What the client sends after that is parsed as the next request, which aiohttp refuses as bad HTTP.)
    body = multipart_body(Part(good(10), "a.jpg"))
    return ctx.raw_upload(body[: len(body) // 2], len(body) // 2, hang_up=False)


def nested_multipart(ctx: Ctx) -> Awaitable[Outcome]:
    inner = multipart_body(Part(good(11), "inner.jpg"), boundary="inner-boundary")
    part = Part(inner, "outer.jpg", headers=[(b"Content-Type", multipart_type("inner-boundary").encode())])
    return ctx.upload(part)


def no_final_boundary(ctx: Ctx) -> Awaitable[Outcome]:
    return ctx.upload(Part(good(12), "a.jpg"), close=False)


def huge_part_header(ctx: Ctx) -> Awaitable[Outcome]:
    return ctx.upload(Part(good(13), "a.jpg", headers=[(b"X-Padding", b"a" * 200_000)]))


def thousands_of_part_headers(ctx: Ctx) -> Awaitable[Outcome]:
    return ctx.upload(Part(good(14), "a.jpg", headers=[(f"X-H{i}".encode(), b"v") for i in range(20_000)]))


def mixed_good_and_bad(ctx: Ctx) -> Awaitable[Outcome]:
    return ctx.upload(Part(good(15), "good.jpg"), Part(h.HTML, "bad.jpg"))


def deeply_nested_json() -> bytes:
    return b"[" * 100_000 + b"]" * 100_000


CORPUS: list[Case] = [
    # -- file contents ---------------------------------------------------------------------------------------
    Case("zero-bytes", one_file(b""), 400, "empty_file"),
    Case("one-byte", one_file(b"\xff"), 415, "unsupported_media_type"),
    Case("jpeg-truncated-in-header", one_file(good(1)[:120]), 400, "corrupt_image"),
    # A header that parses over data that does not is only found out by decoding: accepted, then `failed`
    # (test_faults.py follows such files through processing).
    Case("jpeg-header-then-garbage", one_file(h.jpeg_header_then_garbage(1)), 202, None, accepted=1),
    Case("jpeg-truncated-in-scan-data", one_file(h.jpeg_truncated_in_scan(2)), 202, None, accepted=1),
    Case("png-declaring-10-gigapixels", one_file(h.png_declaring(100_000, 100_000), "bomb.png"), 413,
         "too_many_pixels"),
    Case("gif-declaring-3.6-gigapixels", one_file(h.gif_declaring(60_000, 60_000), "bomb.gif"), 413,
         "too_many_pixels"),
    Case("tiff-declaring-10-gigapixels", one_file(h.tiff_declaring(100_000, 100_000), "bomb.tif"), 413,
         "too_many_pixels"),
    Case("webp-declaring-256-megapixels", one_file(h.webp_declaring(16_000, 16_000), "bomb.webp"), 413,
         "too_many_pixels"),
    Case("animated-gif-5000-frames", one_file(h.animated_gif(5000), "anim.gif"), 202, None, accepted=1),
    Case("jpeg-zip-polyglot", one_file(h.jpeg_zip_polyglot(3)), 202, None, accepted=1),
    Case("html-named-jpg", one_file(h.HTML, "index.jpg"), 415, "unsupported_media_type"),
    Case("svg-named-jpg", one_file(h.SVG, "logo.jpg"), 415, "unsupported_media_type"),
    Case("pdf-named-jpg", one_file(h.PDF, "doc.jpg"), 415, "unsupported_media_type"),
    Case("bmp", one_file(h.bmp(), "old.bmp"), 415, "unsupported_media_type"),
    Case("malformed-exif-huge-entry-count", one_file(h.jpeg_with_exif_block(h.MALFORMED_EXIF[0], 4)), 202, None,
         accepted=1),
    Case("malformed-exif-offset-out-of-range", one_file(h.jpeg_with_exif_block(h.MALFORMED_EXIF[1], 5)), 202,
         None, accepted=1),
    Case("malformed-exif-ifd-loop", one_file(h.jpeg_with_exif_block(h.MALFORMED_EXIF[2], 6)), 202, None,
         accepted=1),
    Case("huge-exif-block", one_file(h.huge_exif(7)), 202, None, accepted=1),
    # -- filenames (nothing on disk is named by them; they come back as safe display names) -------------------
    Case("filename-dot-dot-slash", one_file(good(20), "../../../etc/passwd"), 202, None, accepted=1,
         check=filename_is("passwd")),
    Case("filename-percent-encoded-traversal", one_file(good(21), "..%2F..%2Fetc%2Fshadow"), 202, None,
         accepted=1, check=filename_is("shadow")),
    Case("filename-windows-path", one_file(good(22), "C:\\Windows\\System32\\evil.jpg"), 202, None, accepted=1,
         check=filename_is("evil.jpg")),
    # Raw NUL and control bytes make the part's header invalid HTTP: the request is malformed as a whole.
    Case("filename-with-raw-nul", one_file(good(23), b"photo\x00.php.jpg"), 400, "bad_multipart"),
    Case("filename-with-raw-escape-sequence", one_file(good(24), "\x1b[31mred\x07.jpg"), 400, "bad_multipart"),
    # Escaped the way browsers and HTTP libraries send them, they arrive and are stripped from the display name.
    Case("filename-percent-encoded-nul-and-controls", one_file(good(23), "photo%00%1B[31m%0D%0A%07.jpg"), 202,
         None, accepted=1, check=filename_is("photo[31m.jpg")),
    Case("filename-with-tab", one_file(good(24), "tab\there.jpg"), 202, None, accepted=1,
         check=filename_is("tabhere.jpg")),
    # aiohttp refuses header lines over 8 kB: a 10 kB filename is a malformed request, not a stored name.
    Case("filename-10-kB", one_file(good(25), "a" * 10_000 + ".jpg"), 400, "bad_multipart"),
    Case("filename-1000-characters", one_file(good(25), "\u00e9" * 1000 + ".jpg"), 202, None, accepted=1,
         check=lambda o: o.body["photos"][0]["filename"] == "\u00e9" * 255),
    Case("filename-rtl-override", one_file(good(26), "invoice\u202egpj.exe"), 202, None, accepted=1,
         check=filename_is("invoicegpj.exe")),
    Case("filename-rfc5987-traversal", lambda ctx: ctx.upload(Part(
        good(27), raw_disposition=b"form-data; name=\"file\"; filename*=UTF-8''..%2F..%2Fboot.jpg")),
         202, None, accepted=1, check=filename_is("boot.jpg")),
    Case("filename-only-dots", one_file(good(28), ".."), 202, None, accepted=1, check=filename_is("upload")),
    # -- multipart structure --------------------------------------------------------------------------------
    Case("part-without-filename", lambda ctx: ctx.upload(Part(good(30), None)), 400, "missing_filename"),
    Case("part-with-empty-filename", one_file(good(31), ""), 400, "missing_filename"),
    Case("wrong-field-name", lambda ctx: ctx.upload(Part(good(32), "a.jpg", name="photo")), 400,
         "unexpected_field"),
    Case("part-without-content-disposition", lambda ctx: ctx.upload(Part(good(33), raw_disposition=b"")), 400,
         "unexpected_field"),
    Case("no-boundary", lambda ctx: ctx.request("POST", f"/api/albums/{ctx.album}/photos",
                                                data=multipart_body(Part(good(34))),
                                                content_type="multipart/form-data"), 400, "bad_multipart"),
    Case("not-multipart", lambda ctx: ctx.request("POST", f"/api/albums/{ctx.album}/photos", data=good(35),
                                                  content_type="image/jpeg"), 400, "bad_multipart"),
    Case("boundary-never-appears", lambda ctx: ctx.request(
        "POST", f"/api/albums/{ctx.album}/photos", data=random.Random(1).randbytes(5000),
        content_type=multipart_type()), 400, "bad_multipart"),
    Case("empty-body", lambda ctx: ctx.request("POST", f"/api/albums/{ctx.album}/photos", data=b"",
                                               content_type=multipart_type()), 400, "bad_multipart"),
    Case("no-final-boundary", no_final_boundary, 400, "bad_multipart"),
    Case("nested-multipart", nested_multipart, 400, "bad_multipart"),
    Case("part-header-200-kB", huge_part_header, 400, "bad_multipart"),
    Case("part-with-20000-headers", thousands_of_part_headers, 400, "bad_multipart"),
    Case("too-many-parts", too_many_parts, 413, "too_many_files"),
    Case("oversized-part", one_file(h.png_declaring(10, 10) + b"\0" * (MAX_FILE_BYTES + 1), "big.png"), 413,
         "too_large"),
    Case("one-good-part-one-html-part", mixed_good_and_bad, 202, None, accepted=1,
         check=lambda o: [p["status"] for p in o.body["photos"]] == ["pending", "rejected"]),
    Case("cut-off-mid-body", cut_off_mid_body, None, None),
    Case("content-length-longer-than-body", lying_length_longer, None, None),
    Case("content-length-shorter-than-body", lying_length_shorter, 400, "bad_multipart"),
    # -- JSON bodies -----------------------------------------------------------------------------------------
    Case("json-syntax-error", post_json(b"{not json"), 400, "bad_json"),
    Case("json-not-an-object", post_json(b'["a", "b"]'), 400, "bad_json"),
    Case("json-invalid-utf8", post_json(b'{"name": "\xff\xfe"}'), 400, "bad_json"),
    Case("json-nested-100000-deep", post_json(deeply_nested_json()), 400, "bad_json"),
    Case("json-lone-surrogate-name", post_json(b'{"name": "\\ud800"}'), 400, "bad_name"),
    Case("json-nul-in-name", post_json(b'{"name": "a\\u0000b"}'), 400, "bad_name"),
    Case("json-name-not-a-string", post_json(b'{"name": {"$gt": ""}}'), 400, "bad_name"),
    Case("json-2-MB", post_json(b'{"name": "' + b"a" * 2_000_000 + b'"}'), 413, "too_large"),
    # -- ids -------------------------------------------------------------------------------------------------
    Case("id-not-numeric", get("/api/albums/abc"), 400, "bad_id"),
    Case("id-negative", get("/api/photos/-1"), 400, "bad_id"),
    Case("id-exponent", get("/api/photos/1e3"), 400, "bad_id"),
    Case("id-arabic-indic-digits", get("/api/photos/\u0661\u0662"), 400, "bad_id"),
    Case("id-percent-encoded-nul", get("/api/photos/%00"), 400, "bad_id"),
    Case("id-above-sqlite-range", get("/api/photos/9223372036854775808"), 404, "not_found"),
    Case("id-100-digits", get("/api/photos/" + "9" * 100 + "/file"), 404, "not_found"),
    Case("album-id-huge-on-upload", lambda ctx: ctx.request(
        "POST", "/api/albums/99999999999999999999999/photos", data=multipart_body(Part(good(40))),
        content_type=multipart_type()), 404, "not_found"),
    Case("cursor-not-numeric", get("/api/albums/{album}/photos?after=abc"), 400, "bad_id"),
    Case("limit-huge", get("/api/albums/{album}/photos?limit=" + "9" * 40), 400, "bad_limit"),
    Case("stats-album-id-negative", get("/api/stats?album_id=-5"), 400, "bad_id"),
    Case("variant-name-traversal", lambda ctx: variant_traversal(ctx), 400, "unknown_variant", accepted=1),
]


@pytest.fixture
async def ctx(start_client) -> Ctx:
    client = await start_client(**LIMITS, ratelimit={"enabled": False})
    async with client.post("/api/albums", json={"name": "Hostile"}, headers=AUTH) as r:
        album = (await r.json())["id"]
    # Processing the accepted files is not what this test is about (test_faults.py does that).
    async with client.post("/api/admin/queue/pause", headers=AUTH) as r:
        assert r.status == 200
    return Ctx(client, album)


def test_the_corpus_is_big_enough():
    assert len(CORPUS) >= 30
    assert len({c.name for c in CORPUS}) == len(CORPUS)


def database_rows(ctx: Ctx, sql: str) -> list[tuple]:
    path = ctx.client.app[STORAGE].database_path
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return conn.execute(sql).fetchall()


def stored_originals(ctx: Ctx) -> list:
    return [p for p in ctx.client.app[STORAGE].originals.rglob("*") if p.is_file()]


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
async def test_hostile_request_gets_the_contracts_answer_and_leaves_nothing_behind(ctx, case):
    outcome = await case.run(ctx)
    assert outcome.status == case.status, (outcome.status, outcome.body)
    if case.status is not None and case.status >= 400:
        assert outcome.body is not None, "every error is JSON"
        assert "Traceback" not in json.dumps(outcome.body)
        if "photos" in outcome.body:  # every part was rejected: the contract's per-part body
            assert outcome.body["accepted"] == 0 and outcome.body["rejected"] == len(outcome.body["photos"])
            for entry in outcome.body["photos"]:
                assert entry["status"] == "rejected" and entry["message"]
                if case.error:
                    assert entry["error"] == case.error
        else:
            assert set(outcome.body) == {"error", "message"} and outcome.body["message"]
            if case.error:
                assert outcome.body["error"] == case.error
    if case.check:
        assert case.check(outcome) is not False

    storage = ctx.client.app[STORAGE]
    # A hung-up request is cleaned up by its handler after the connection drops: wait for that outcome.
    await until(lambda: not any(storage.tmp.iterdir()), what="the temp dir to empty")
    rows = database_rows(ctx, "SELECT sha256 FROM photos")
    assert len(rows) == case.accepted, "a rejected file left a row"
    assert database_rows(ctx, "SELECT * FROM staged_files") == []
    assert sorted(p.name.split(".")[0] for p in stored_originals(ctx)) == sorted(r[0] for r in rows)

    # The server is still up and still takes a good photo.
    async with ctx.client.get("/healthz") as r:
        assert r.status == 200
    follow_up = await ctx.upload(Part(good(999), "after.jpg"))
    assert follow_up.status == 202, follow_up.body


async def variant_traversal(ctx: Ctx) -> Outcome:
    """Variant names are looked up in the configured outputs, never joined to a path."""
    outcome = await ctx.upload(Part(good(50), "a.jpg"))
    photo_id = outcome.body["photos"][0]["id"]
    for variant in ("../../token", "../../../photoq.db", "/etc/passwd", "thumb-150/../../../token", "%2e%2e",
                    "original\x00", "thumb-150.webp"):
        outcome = await ctx.request("GET", f"/api/photos/{photo_id}/file", params={"variant": variant})
        assert outcome.status == 400 and outcome.body["error"] == "unknown_variant", variant
    return outcome


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
async def test_the_accepted_hostile_files_process_without_harm(client, album):
    """What passes the header check is decoded for real: deceptive but whole files complete, and a header over
    data that does not decode ends `failed` (see test_faults.py); none of it disturbs the rest."""
    files = [Part(h.animated_gif(5000), "anim.gif"), Part(h.jpeg_zip_polyglot(3), "poly.jpg"),
             Part(h.huge_exif(7), "exif.jpg"), Part(good(8), "plain.jpg")]
    files += [Part(h.jpeg_with_exif_block(payload, 20 + i), f"bad-exif-{i}.jpg")
              for i, payload in enumerate(h.MALFORMED_EXIF)]
    async with client.post(f"/api/albums/{album}/photos", data=multipart_body(*files),
                           headers={**AUTH, "Content-Type": multipart_type()}) as r:
        assert r.status == 202
        ids = [p["id"] for p in (await r.json())["photos"]]
    await wait_for_photos(client, ids)
    async with client.get(f"/api/photos/{ids[0]}", headers=AUTH) as r:
        info = await r.json()
    assert (info["width"], info["height"], info["content_type"]) == (16, 16, "image/gif")
    async with client.get(f"/api/photos/{ids[1]}/file", headers=AUTH) as r:
        assert r.headers["Content-Type"] == "image/jpeg"  # the ZIP rides along, but it is served as a JPEG


# -- fuzzing -----------------------------------------------------------------------------------------------------

FUZZ_SEEDS = {
    "jpeg": jpeg(64, 48, seed=1),
    "jpeg-exif": h.jpeg_with_exif_block(h.MALFORMED_EXIF[2], 2),
    "png": h.png_declaring(4, 4),
    "gif": h.animated_gif(3, (8, 8)),
    "tiff": h.tiff_declaring(4, 4),
    "webp": h.webp_declaring(16, 16),
}
FUZZ_STATUSES = {200, 202, 400, 413, 415}


@st.composite
def file_contents(draw) -> bytes:
    kind = draw(st.sampled_from(["seed", "mutated-seed", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=600))
    data = bytearray(FUZZ_SEEDS[draw(st.sampled_from(sorted(FUZZ_SEEDS)))])
    if kind == "mutated-seed":
        for _ in range(draw(st.integers(1, 6))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


FILENAMES = st.one_of(
    st.sampled_from(["a.jpg", "../x.png", "..", "", "%00%2F.gif", "\u202eexe.jpg", "IMG_0001.JPG"]),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40),
    st.none(),
    st.binary(max_size=20),  # raw bytes, often not valid in a header at all
)


def sometimes(one_in: int):
    """True about once in `one_in` draws (and False is what failing examples shrink to)."""
    return st.sampled_from([False] * (one_in - 1) + [True])


@st.composite
def multipart_requests(draw) -> tuple[bytes, str]:
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        parts.append(Part(
            draw(file_contents()),
            filename=draw(FILENAMES),
            name=draw(st.sampled_from(["file"] * 5 + ["photo", "", "fil\u00e9"])),
            headers=draw(st.lists(st.tuples(st.sampled_from([b"Content-Type", b"X-Junk", b"Content-Length"]),
                                            st.binary(min_size=1, max_size=30).filter(lambda b: b"\r" not in b
                                                                                      and b"\n" not in b)),
                                  max_size=1)) if draw(sometimes(6)) else [],
        ))
    body = bytearray(multipart_body(*parts, boundary=h.BOUNDARY, close=not draw(sometimes(6))))
    if body and draw(sometimes(4)):  # damage the framing itself
        position = draw(st.integers(0, len(body)))
        body[position:position + draw(st.integers(0, 40))] = draw(st.binary(max_size=40))
    # Now and then the header names a boundary the body does not use.
    boundary = draw(st.sampled_from(["a", "x" * 70, "--", "b\u00e9", ""])) if draw(sometimes(8)) else h.BOUNDARY
    return bytes(body), boundary


@pytest.mark.filterwarnings("ignore")
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(request=multipart_requests())
async def test_fuzzed_multipart_uploads_get_a_contract_answer_and_leave_nothing_behind(ctx, request):
    body, boundary = request
    try:
        content_type = multipart_type(boundary)
        outcome = await ctx.request("POST", f"/api/albums/{ctx.album}/photos", data=body, content_type=content_type)
    except UnicodeEncodeError:
        return  # the client library cannot send that header at all
    assert outcome.status in FUZZ_STATUSES, (outcome.status, outcome.body)
    assert outcome.body is not None
    if outcome.status >= 400 and "photos" not in outcome.body:
        assert set(outcome.body) == {"error", "message"}
    storage = ctx.client.app[STORAGE]
    await until(lambda: not any(storage.tmp.iterdir()), what="the temp dir to empty")
    assert database_rows(ctx, "SELECT * FROM staged_files") == []
    shas = {r[0] for r in database_rows(ctx, "SELECT sha256 FROM photos")}
    assert {p.name.split(".")[0] for p in stored_originals(ctx)} == shas


def mutate(data: bytearray, draw) -> bytearray:
    """Structural damage: splices, deletions, repeats and extreme values written over length fields."""
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "repeat", "int16", "int32"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif op == "repeat":
            data[at:at] = data[at:at + draw(st.integers(1, 256))] * draw(st.integers(2, 50))
        else:
            size = 2 if op == "int16" else 4
            value = draw(st.sampled_from([0, 1, 2**(8 * size - 1) - 1, 2**(8 * size) - 1, 2**(8 * size - 1)]))
            data[at:at + size] = value.to_bytes(size, draw(st.sampled_from(["big", "little"])))
    return data


@pytest.fixture(scope="module")
def probe_seeds() -> dict[str, bytes]:
    from PIL import Image

    def save(img, fmt, **kw) -> bytes:
        buffer = io.BytesIO()
        img.save(buffer, fmt, **kw)
        return buffer.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Camera"
    base = photo_like(40, 30, 3)
    return {
        "jpeg-exif": save(base, "JPEG", exif=exif.tobytes()),
        "jpeg-progressive": save(base, "JPEG", progressive=True),
        "png-exif": save(base, "PNG", exif=exif.tobytes()),
        "png-palette": save(base.convert("P"), "PNG", transparency=0),
        "gif-animated": h.animated_gif(4, (10, 10)),
        "tiff-exif": save(base, "TIFF", exif=exif.tobytes(), compression="tiff_lzw"),
        "tiff-multipage": save(base, "TIFF", save_all=True, append_images=[base.rotate(90)]),
        "webp-exif": save(base, "WEBP", exif=exif.tobytes()),
        "webp-lossless": save(base, "WEBP", lossless=True),
    }


@pytest.mark.filterwarnings("ignore")
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_header_probe_only_ever_raises_image_errors(probe_seeds, tmp_path, data):
    name = data.draw(st.sampled_from(sorted(probe_seeds)), label="seed")
    mutated = bytes(mutate(bytearray(probe_seeds[name]), data.draw))
    path = tmp_path / "fuzzed"
    path.write_bytes(mutated)
    try:
        result = imaging.probe(str(path), 50_000_000)
    except imaging.ImageError as exc:
        assert str(exc) and exc.code in ("unsupported_media_type", "corrupt_image", "too_many_pixels")
    else:
        assert result.width * result.height <= 50_000_000 and result.width > 0 and result.height > 0
        json.dumps(result.exif)
