"""Every URL of an album or a photo, built in one place for the JSON API, the pages and their templates.

photoq/static/urls.js mirrors these functions for the scripts (tests/test_urls.py checks that both agree), so a
page, a script and the API never disagree about a path.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode


def album_page(album_id: int) -> str:
    return f"/albums/{album_id}"


def album_page_in_order(album_id: int, order: str, after: str | None = None) -> str:
    """The album page in a gallery order, from a cursor on."""
    return f"/albums/{album_id}?" + urlencode({"order": order, **({"after": after} if after else {})})


def photo_page(photo_id: int) -> str:
    return f"/photos/{photo_id}"


def photo_retry_form(photo_id: int) -> str:
    return f"/photos/{photo_id}/retry"


def photo_delete_form(photo_id: int) -> str:
    return f"/photos/{photo_id}/delete"


def album_photos_api(album_id: int, **query: object) -> str:
    """The album's photo list (or, with POST, its upload endpoint); query parameters whose value is None are left
    out."""
    params = {key: value for key, value in query.items() if value is not None}
    return f"/api/albums/{album_id}/photos" + (f"?{urlencode(params)}" if params else "")


def album_photo_ids_api(album_id: int, order: str | None = None) -> str:
    return f"/api/albums/{album_id}/photo-ids" + (f"?{urlencode({'order': order})}" if order else "")


def album_hashes_api(album_id: int) -> str:
    return f"/api/albums/{album_id}/hashes"


def album_download_api(album_id: int) -> str:
    return f"/api/albums/{album_id}/download"


def photos_download_api() -> str:
    return "/api/photos/download"


def photo_display_api(photo_id: int) -> str:
    return f"/api/photos/{photo_id}/display"


def photo_api(photo_id: int) -> str:
    return f"/api/photos/{photo_id}"


def photo_retry_api(photo_id: int) -> str:
    return f"/api/photos/{photo_id}/retry"


def photo_file(photo_id: int, variant: str = "original", version: str | None = None) -> str:
    """A photo's file (the original or one output). With its version (models.original_version or output_version: the
    picture's content and when it was written), a URL the browser may cache for good: it changes with the picture,
    e.g. when `photoq reprocess` renders the output again."""
    url = f"/api/photos/{photo_id}/file?variant={quote(variant, safe='')}"
    return url if version is None else f"{url}&v={quote(version, safe='')}"


def events(album_id: int | None = None) -> str:
    return "/api/events" + (f"?album_id={album_id}" if album_id is not None else "")
