"""Long file names are shortened in the middle, never inside the extension: photoq.web.names and its mirror in
photoq/static/format.js agree."""

from __future__ import annotations

import json
import subprocess

from photoq.web.names import shorten_middle
from tests.support import REPO_ROOT
from tests.test_urls import node_or_fail

NAMES = ["beach.jpg", "IMG_20230701_140312_HDR_portrait_mode_final.jpeg", "a" * 80 + ".heic",
         "v1.0-of-a-very-long-document-name-without-extension", "😀" * 30 + ".png", ".hidden-file-with-long-name-x",
         "Ünïcödé façade photo from the summer holiday 2023.tiff"]
LIMITS = [10, 24, 32, 48]


def test_shortened_in_the_middle_keeping_the_extension():
    assert shorten_middle("beach.jpg", 24) == "beach.jpg"
    short = shorten_middle("IMG_20230701_140312_HDR_portrait_mode_final.jpeg", 24)
    assert len(short) == 24 and short.endswith(".jpeg") and short.startswith("IMG_20230") and "…" in short
    assert shorten_middle("a" * 80 + ".heic", 10) == "aaa…a.heic"
    for name in NAMES:
        for limit in LIMITS:
            short = shorten_middle(name, limit)
            assert len(short) <= limit and (short == name or "…" in short), (name, limit, short)


def test_the_scripts_shorten_names_as_the_server_does():
    script = ("const { shortName } = require(process.argv[1]); const cases = JSON.parse(process.argv[2]);"
              "console.log(JSON.stringify(cases.map(([n, l]) => shortName(n, l))));")
    cases = [[name, limit] for name in NAMES for limit in LIMITS]
    out = subprocess.run([node_or_fail(), "-e", script, str(REPO_ROOT / "photoq/static/format.js"), json.dumps(cases)],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [shorten_middle(name, limit) for name, limit in cases]
