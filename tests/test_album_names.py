"""One rule for album names, whether they come from the API or from the web UI's form; and one cleaning rule
(photoq.models.clean_text) for album names and filenames alike."""

from __future__ import annotations

import pytest

from photoq.ingest import MAX_FILENAME_CHARS, display_filename
from photoq.models import MAX_ALBUM_NAME, clean_album_name, clean_text

from .support import AUTH, jpeg, log_in, multipart, session_csrf

# Invisible characters, each with the name it is hidden in and the name once cleaned.
INVISIBLE = [
    ("invoice\u202egpj.exe", "invoicegpj.exe"),  # RIGHT-TO-LEFT OVERRIDE: shows as "invoiceexe.jpg"
    ("a\u202ab\u202bc\u202cd\u202de", "abcde"),  # the other embeddings and overrides
    ("\u2066left\u2067right\u2068first\u2069", "leftrightfirst"),  # isolates
    ("\u200eLRM\u200fRLM\u061cALM", "LRMRLMALM"),  # directional marks
    ("zero\u200bwidth\u200cnon\u200djoiner\u2060word\ufeffbom", "zerowidthnonjoinerwordbom"),
    ("soft\u00adhyphen", "softhyphen"),
    ("private\ue000use", "privateuse"),
    ("tag\U000e0041s", "tags"),  # language tags, invisible
]


@pytest.mark.parametrize("raw", [None, 5, "", "   ", "x" * 201, "a\x00b", "line\nbreak", "\ud800", "tab\there",
                                 "esc\x1b[31mred", "del\x7f", "c1\x85next", "line\u2028sep", "para\u2029sep",
                                 "\u202e", "\u200b \u200b"])
def test_unacceptable_names(raw):
    with pytest.raises(ValueError):
        clean_album_name(raw)


def test_names_are_trimmed():
    assert clean_album_name("  Summer 2025 ") == "Summer 2025"


@pytest.mark.parametrize("raw, cleaned", INVISIBLE)
def test_album_names_and_filenames_lose_the_same_invisible_characters(raw, cleaned):
    assert clean_text(raw) == cleaned
    assert clean_album_name(raw) == cleaned
    assert display_filename(raw) == cleaned


def test_control_characters_are_removed_from_filenames_where_an_album_name_is_refused():
    raw = "a\x00b\x1b[1mc\nd\te\x7ff\u2028g.jpg"
    assert clean_text(raw) == display_filename(raw) == "ab[1mcdefg.jpg"


def test_visible_text_of_every_script_is_kept():
    for name in ("Été à Zürich", "東京 2025", "Москва", "עברית ועוד", "العربية", "😀 party 🎉", "a\u0301 combining"):
        assert clean_album_name(name) == name
        assert display_filename(name) == name


def test_very_long_names():
    assert clean_album_name("é" * MAX_ALBUM_NAME) == "é" * MAX_ALBUM_NAME
    with pytest.raises(ValueError):
        clean_album_name("é" * (MAX_ALBUM_NAME + 1))
    # invisible characters do not count against the limit, since they are not kept
    assert clean_album_name("x" * MAX_ALBUM_NAME + "\u200b" * 100) == "x" * MAX_ALBUM_NAME
    # a filename is shortened rather than refused (the photo must not be lost over its name)
    assert display_filename("\u202e" + "é" * 1000 + ".jpg") == "é" * MAX_FILENAME_CHARS


async def test_the_api_and_an_upload_clean_the_same_name_alike(client):
    raw = "\u200bHoliday\u202e gpj.exe\u2066"
    async with client.post("/api/albums", json={"name": raw}, headers=AUTH) as r:
        assert r.status == 201
        album = await r.json()
    assert album["name"] == "Holiday gpj.exe"
    async with client.get(f"/api/albums/{album['id']}", headers=AUTH) as r:
        assert (await r.json())["name"] == "Holiday gpj.exe"
    async with client.post(f"/api/albums/{album['id']}/photos", data=multipart((raw, jpeg(seed=3))),
                           headers=AUTH) as r:
        assert r.status == 202
        assert (await r.json())["photos"][0]["filename"] == "Holiday gpj.exe"
    async with client.post("/api/albums", json={"name": "\u202e\u200b"}, headers=AUTH) as r:
        assert r.status == 400 and (await r.json())["error"] == "bad_name"


async def test_the_web_form_refuses_what_the_api_refuses(client):
    await log_in(client)
    csrf = session_csrf(client)
    async with client.post("/albums", data={"name": "bad\x01name", "csrf_token": csrf}, allow_redirects=False) as r:
        assert r.status == 400
    async with client.post("/api/albums", json={"name": "bad\x01name"}, headers=AUTH) as r:
        assert r.status == 400
    async with client.get("/api/albums", headers=AUTH) as r:
        assert (await r.json())["albums"] == []
    async with client.post("/albums", data={"name": "Trip\u202e", "csrf_token": csrf}, allow_redirects=False) as r:
        assert r.status == 303
    async with client.get("/api/albums", headers=AUTH) as r:
        assert [a["name"] for a in (await r.json())["albums"]] == ["Trip"]
