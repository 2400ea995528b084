"""File names for people: a long name is shortened in the middle, never inside its extension.

photoq/static/format.js mirrors shorten_middle for the scripts (tests/test_names.py checks that both agree)."""

from __future__ import annotations

import math

ELLIPSIS = "…"
MAX_EXTENSION = 10  # ".jpeg", ".heic", ".tiff": a longer "extension" is just part of the name


def shorten_middle(name: str, limit: int = 32) -> str:
    """`name` when it fits in `limit` characters; else its start, an ellipsis and its end, with the extension whole."""
    if len(name) <= limit:
        return name
    dot = name.rfind(".")
    extension = name[dot:] if dot > 0 and len(name) - dot <= MAX_EXTENSION else ""
    stem = name[:len(name) - len(extension)]
    room = max(2, limit - len(extension) - 1)
    head = math.ceil(room * 2 / 3)
    tail = room - head
    return stem[:head] + ELLIPSIS + (stem[-tail:] if tail else "") + extension
