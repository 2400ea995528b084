"""The photo page's choice of picture (photoq.web.photo_image.choose_photo_image): a pure function, tested alone."""

from __future__ import annotations

from dataclasses import replace

from photoq.config import DEFAULT_OUTPUTS
from photoq.models import OutputFile, Photo, Status
from photoq.web.photo_image import choose_photo_image

VARIANTS = [o for o in DEFAULT_OUTPUTS if o.kind == "variant"]
THUMBS = [o for o in DEFAULT_OUTPUTS if o.kind == "thumbnail"]
PENDING = Status.PENDING


def photo(content_type="image/jpeg", width=4000, height=3000, thumbnail=PENDING, **changes) -> Photo:
    base = Photo(id=7, album_id=1, filename="a.jpg", sha256="0" * 64, size_bytes=1, width=width, height=height,
                 format="jpeg", content_type=content_type, taken_at=None, exif_json="{}",
                 processing_status=PENDING, thumbnail_status=thumbnail, variant_status=PENDING, error=None,
                 created_at=1.0, completed_at=None)
    return replace(base, **changes)


def written(**widths: int) -> dict[str, OutputFile]:
    return {name: OutputFile(name, width, width, 1, format="webp", created_at=1700000000.5)
            for name, width in widths.items()}


def test_display_versions_once_written_each_width_once_smallest_wide_enough_first():
    outputs = written(**{"display-1080x1920": 1920, "display-2160x3840": 3840, "display-1038x1278": 1278})
    image = choose_photo_image(photo(), VARIANTS, THUMBS, outputs)
    assert image.showing == "display"
    assert image.src == "/api/photos/7/file?variant=display-1038x1278&v=000000000000-18bcfe569f4"
    assert image.srcset == ("/api/photos/7/file?variant=display-1038x1278&v=000000000000-18bcfe569f4 1278w, "
                            "/api/photos/7/file?variant=display-1080x1920&v=000000000000-18bcfe569f4 1920w, "
                            "/api/photos/7/file?variant=display-2160x3840&v=000000000000-18bcfe569f4 3840w")
    assert image.sizes == "min(100vw, 72rem, 107vh)"
    assert image.loading_width == "min(100vw, 72rem, 106.6667vh)"


def test_a_small_photo_whose_versions_share_a_width_lists_it_once_and_shows_the_widest():
    outputs = written(**{"display-1080x1920": 640, "display-2160x3840": 640, "display-1038x1278": 640})
    image = choose_photo_image(photo(width=640, height=480), VARIANTS, THUMBS, outputs)
    assert image.srcset.count("640w") == 1
    assert "display-1038x1278" in image.src  # the first written at that width (the smallest output)


def test_below_first_paint_width_the_widest_display_version_is_the_src():
    outputs = written(**{"display-1038x1278": 800, "display-1080x1920": 900})
    image = choose_photo_image(photo(width=900, height=900), VARIANTS, THUMBS, outputs)
    assert "display-1080x1920" in image.src


def test_the_original_meanwhile_when_browsers_can_show_it():
    image = choose_photo_image(photo(), VARIANTS, THUMBS, {})
    assert (image.showing, image.src, image.srcset) == ("original", "/api/photos/7/file?variant=original&v=0000000000000000", "")
    assert image.loading_width.startswith("min(4000px, ")


def test_a_tiff_or_heic_original_shows_the_largest_thumbnail_else_nothing():
    tiff = photo(content_type="image/tiff")
    assert choose_photo_image(tiff, VARIANTS, THUMBS, {}).showing == "none"
    assert choose_photo_image(tiff, VARIANTS, THUMBS, {}).src is None
    image = choose_photo_image(replace(tiff, thumbnail_status=Status.COMPLETE), VARIANTS, THUMBS,
                               written(**{"thumb-600": 600, "thumb-150": 150}))
    assert image.showing == "thumbnail"
    assert image.src == "/api/photos/7/file?variant=thumb-600&v=000000000000-18bcfe569f4"
    assert image.loading_width.startswith("min(600px, ")
    heic = photo(content_type="image/heic")
    assert choose_photo_image(heic, VARIANTS, THUMBS, written(**{"thumb-600": 600})).showing == "thumbnail"


def test_no_outputs_configured_and_zero_height_do_not_break_it():
    image = choose_photo_image(photo(content_type="image/tiff", height=0), [], [], {})
    assert image.showing == "none" and image.sizes == "min(100vw, 72rem, 80vh)"
