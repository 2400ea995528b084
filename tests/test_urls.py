"""One URL builder: photoq/web/urls.py for the API, pages and templates, and its mirror photoq/static/urls.js for
the scripts. Both must give the same URL for the same photo; the scripts' own unit tests (tests/js, node's test
runner) run from here so that `make test` runs them."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from photoq.web import urls
from tests.support import REPO_ROOT

NODE = shutil.which("node")
CASES = [
    ("albumPage", "album_page", [7], {}),
    ("photoPage", "photo_page", [42], {}),
    ("photoRetryForm", "photo_retry_form", [42], {}),
    ("photoDeleteForm", "photo_delete_form", [42], {}),
    ("albumPhotosApi", "album_photos_api", [3], {}),
    ("albumPhotosApi", "album_photos_api", [3], {"limit": 500, "after": 12}),
    ("photoApi", "photo_api", [9], {}),
    ("albumPageInOrder", "album_page_in_order", [3, "taken"], {}),
    ("albumPageInOrder", "album_page_in_order", [3, "name", "WyJhIiwxXQ"], {}),
    ("albumPhotoIdsApi", "album_photo_ids_api", [3], {}),
    ("albumPhotoIdsApi", "album_photo_ids_api", [3, "uploaded"], {}),
    ("albumDownloadApi", "album_download_api", [3], {}),
    ("albumHashesApi", "album_hashes_api", [3], {}),
    ("photosDownloadApi", "photos_download_api", [], {}),
    ("photoDisplayApi", "photo_display_api", [9], {}),
    ("photoRetryApi", "photo_retry_api", [9], {}),
    ("events", "events", [], {}),
    ("events", "events", [4], {}),
    ("photoFile", "photo_file", [5, "original"], {}),
    ("photoFile", "photo_file", [5, "display-1080x1920"], {}),
    ("photoFile", "photo_file", [5, "thumb 300/x"], {}),
    ("photoFile", "photo_file", [5, "thumb-300", "0123456789ab-18bcfe569f4"], {}),
    ("photoFile", "photo_file", [5, "original", "0123456789abcdef"], {}),
    ("photoFile", "photo_file", [5, "thumb-300", "a b&c"], {}),
]


def test_python_builder_gives_the_contract_paths():
    assert urls.photo_file(5) == "/api/photos/5/file?variant=original"
    assert urls.photo_file(5, "thumb-150") == "/api/photos/5/file?variant=thumb-150"
    assert urls.photo_file(5, "thumb-150", "0123456789ab-18bcfe569f4") == \
        "/api/photos/5/file?variant=thumb-150&v=0123456789ab-18bcfe569f4"
    assert urls.album_photos_api(3, limit=5, status=None) == "/api/albums/3/photos?limit=5"
    assert urls.album_page(2) == "/albums/2" and urls.photo_page(3) == "/photos/3"


def node_or_fail() -> str:
    if NODE is None:
        pytest.fail("node is needed for the scripts' unit tests (Debian package nodejs).")
    return NODE


def test_scripts_build_the_same_urls_as_the_server():
    script = (
        "const urls = require(process.argv[1]);"
        "const cases = JSON.parse(process.argv[2]);"
        "console.log(JSON.stringify(cases.map(([name, args, params]) =>"
        " Object.keys(params).length ? urls[name](...args, params) : urls[name](...args))));"
    )
    cases = [[js, args, params] for js, _, args, params in CASES]
    out = subprocess.run([node_or_fail(), "-e", script, str(REPO_ROOT / "photoq/static/urls.js"), json.dumps(cases)],
                         capture_output=True, text=True, check=True).stdout
    from_js = json.loads(out)
    from_python = [getattr(urls, py)(*args, **params) for _, py, args, params in CASES]
    assert from_js == from_python


def test_script_unit_tests_pass_under_node():
    result = subprocess.run([node_or_fail(), "--test", str(REPO_ROOT / "tests" / "js")],
                            capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
