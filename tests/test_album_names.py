"""One rule for album names, whether they come from the API or from the web UI's form."""

from __future__ import annotations

import pytest

from photoq.models import clean_album_name

from .support import AUTH, log_in, session_csrf


@pytest.mark.parametrize("raw", [None, 5, "", "   ", "x" * 201, "a\x00b", "line\nbreak", "\ud800"])
def test_unacceptable_names(raw):
    with pytest.raises(ValueError):
        clean_album_name(raw)


def test_names_are_trimmed():
    assert clean_album_name("  Summer 2025 ") == "Summer 2025"


async def test_the_web_form_refuses_what_the_api_refuses(client):
    await log_in(client)
    csrf = session_csrf(client)
    async with client.post("/albums", data={"name": "bad\x01name", "csrf_token": csrf}, allow_redirects=False) as r:
        assert r.status == 400
    async with client.post("/api/albums", json={"name": "bad\x01name"}, headers=AUTH) as r:
        assert r.status == 400
    async with client.get("/api/albums", headers=AUTH) as r:
        assert (await r.json())["albums"] == []
