"""Which picture the photo page shows: a pure function of the photo, the configured outputs and those written."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..config import Output
from ..models import OutputFile, Photo, Status, original_version, output_version
from . import urls

# Formats every browser can show as they are; a TIFF or HEIC original is never put in an <img>.
BROWSER_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif", "image/avif"})
# Below this width the smallest display version is too small for a laptop's first paint; the widest is used instead.
MIN_FIRST_PAINT_WIDTH = 1000


@dataclass(frozen=True)
class PhotoImage:
    """What the photo page puts in its <img>: src (None: nothing can be shown), srcset and sizes, the width it has
    while loading, and `showing`: "display", "original", "thumbnail" or "none"."""

    src: str | None
    srcset: str
    sizes: str
    loading_width: str
    showing: str


def written_version(photo: Photo, output: OutputFile | None) -> str | None:
    """The version of a photo's output as read back from the database (None: not written)."""
    if output is None or output.created_at is None:
        return None
    return output_version(photo.sha256, output.created_at)


def choose_photo_image(photo: Photo, variants: Sequence[Output], thumbnails: Sequence[Output],
                       written: Mapping[str, OutputFile]) -> PhotoImage:
    """The display versions when any is written (each at its real width, widest last, one per width since small
    photos are never upscaled); else the original when browsers can show it; else the largest written thumbnail;
    else nothing."""
    by_width: dict[int, str] = {}
    for output in sorted(variants, key=lambda o: o.width):
        ready = written.get(output.name)
        if ready is not None and ready.width not in by_width:
            by_width[ready.width] = urls.photo_file(photo.id, output.name, written_version(photo, ready))
    display = sorted(by_width.items())
    natural_width = None  # of a picture shown without srcset, whose own pixels then set its width on the page
    srcset = ""
    largest_thumb = max(thumbnails, key=lambda o: o.width, default=None)
    thumb_file = written.get(largest_thumb.name) if largest_thumb else None
    if display:
        src = display[0][1] if display[0][0] >= MIN_FIRST_PAINT_WIDTH else display[-1][1]
        srcset = ", ".join(f"{url} {width}w" for width, url in display)
        showing = "display"
    elif photo.content_type in BROWSER_IMAGE_TYPES:
        src = urls.photo_file(photo.id, "original", original_version(photo.sha256))
        showing, natural_width = "original", photo.width
    elif largest_thumb is not None and (thumb_file is not None or photo.thumbnail_status == Status.COMPLETE):
        src = urls.photo_file(photo.id, largest_thumb.name, written_version(photo, thumb_file))
        showing, natural_width = "thumbnail", (thumb_file.width if thumb_file else None)
    else:
        src, showing = None, "none"
    # The picture fits inside the viewport: as wide as the page allows, but no taller than ~80% of the screen.
    aspect = photo.width / photo.height if photo.height else 1
    sizes = f"min(100vw, 72rem, {math.ceil(80 * aspect)}vh)"
    # The width it will have once loaded (its own width, or the one `sizes` gives it, then no taller than the
    # stylesheet's 80vh), so that photo.js can give it that box while it loads.
    loading_width = f"min({f'{natural_width}px, ' if natural_width else ''}100vw, 72rem, {80 * aspect:.4f}vh)"
    return PhotoImage(src, srcset, sizes, loading_width, showing)
