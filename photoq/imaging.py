"""Image probing and rendering.

Pure and synchronous: the standard library, Pillow, pillow-heif and simplejpeg. ``probe`` runs in a
thread of the web process and reads headers only; ``render`` runs in a
``ProcessPoolExecutor`` child (set up by ``init_worker``) and does the pixel work.

JPEGs that shrink by a factor libjpeg's draft cannot express are decoded by libjpeg-turbo's scaled decode (through
simplejpeg, imported in image processes only) at the smallest M/8 scale that still covers the largest output; Pillow
still parses the header (EXIF, ICC profile, orientation), does the exact LANCZOS resize and everything after it.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import logging
import math
import mmap
import os
import re
import secrets
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from types import ModuleType
from typing import BinaryIO

from PIL import (
    GifImagePlugin,
    Image,
    ImageCms,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)
from PIL.ExifTags import IFD as ExifIFD
from PIL.ExifTags import Base as ExifTag

from . import durable, isobmff

log = logging.getLogger(__name__)

FORMATS: dict[str, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "tiff": "image/tiff",
    "heic": "image/heic",
    "avif": "image/avif",
}
EXTENSIONS: dict[str, str] = {
    "jpeg": ".jpg",
    "png": ".png",
    "webp": ".webp",
    "gif": ".gif",
    "tiff": ".tif",
    "heic": ".heic",
    "avif": ".avif",
}
# What sniff() is given, at upload as in probe and render: enough for the long brand lists of HEIF/AVIF files.
SNIFF_BYTES: int = 128

OUTPUT_FORMATS = ("webp", "jpeg", "png", "avif")
# AVIF encoder speed, 0 (slowest, smallest) to 10: speed 8 encodes about 10x faster than libavif's default 6 for
# about the same size at quality 80 on a 1080 x 1920 photo.
AVIF_SPEED = 8

# We open files with the plugin for the sniffed format instead of Image.open():
# Image.open() tries every plugin its registry accepts (a polyglot could be read as
# something else) and applies Pillow's process-global MAX_IMAGE_PIXELS, warning or
# raising on its own terms. The pixel limit is ours to enforce.
_PLUGINS: dict[str, type[ImageFile.ImageFile]] = {
    "jpeg": JpegImagePlugin.JpegImageFile,
    "png": PngImagePlugin.PngImageFile,
    "gif": GifImagePlugin.GifImageFile,
    "tiff": TiffImagePlugin.TiffImageFile,
    "webp": WebPImagePlugin.WebPImageFile,
}
# HEIC and AVIF files (ISO base media files) are probed by photoq.isobmff and decoded by the plugins that
# _heif_plugins() imports on first use: libheif and libavif are loaded into image processes only, never into the
# web process. Neither plugin is registered with Image.open(), so no other code accepts these formats by accident.
_ISOBMFF_FORMATS = ("heic", "avif")
_DECODABLE_ITEMS = {
    "heic": (b"hvc1", b"grid", b"iden", b"iovl"),  # HEVC, and derived images made of HEVC tiles
    "avif": (b"av01", b"grid"),
}

_MAX_EXIF_TEXT = 128
# A JPEG can carry at most 64 KiB of EXIF; anything far beyond that in a WebP
# container is not camera metadata and is not worth reading.
_MAX_WEBP_METADATA_BYTES = 4 * 1024 * 1024

_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")

# Resampling, as measured by `make bench` (bench/RESULTS.md). The source is decoded once (drafted by libjpeg when it
# is at least twice the largest output) and resized once to the largest output; every smaller output is resized
# from an image already made (see _cascade_source). LANCZOS, not BICUBIC, for the one big resize: on detailed
# 12 MP photos BICUBIC is ~50 ms (8%) cheaper but its outputs score ~0.003 SSIM lower, and WebP method 0 already
# spends ~0.0035 of the 0.005 SSIM we allow against a naive LANCZOS + method 4 pipeline. In the cascade LANCZOS
# costs a few ms and raises the thumbnails' SSIM by ~0.002-0.004; making the 1038 px display output from the 2160 px
# one instead of the 1080 px one costs ~35 ms and is worth ~0.015 SSIM on that output.
MAIN_RESAMPLE = Image.Resampling.LANCZOS
REDUCING_GAP = 2.0
CASCADE_RESAMPLE = Image.Resampling.LANCZOS
CASCADE_MIN_RATIO = 1.5


# --------------------------------------------------------------------------- errors


class ImageError(Exception):
    """Base class; ``code`` is a short machine-readable error code."""

    code = "image_error"


class UnsupportedImage(ImageError):
    code = "unsupported_media_type"


class CorruptImage(ImageError):
    code = "corrupt_image"


class TooManyPixels(ImageError):
    code = "too_many_pixels"


class HostileImage(CorruptImage):
    """A file shaped to exhaust the decoder rather than to show a picture: a progressive JPEG with more scans than any
    encoder writes, or a decode that overran its CPU-time budget. Like every CorruptImage it cannot succeed on a
    retry, so it should fail for good at once; the message says why."""


_UNSUPPORTED_MESSAGE = (
    "This file is not a supported image; please upload a JPEG, PNG, WebP, GIF, TIFF, HEIC or AVIF file."
)
_CORRUPT_MESSAGE = "The image data is damaged or cut off, so it cannot be decoded."


def _unsupported() -> UnsupportedImage:
    return UnsupportedImage(_UNSUPPORTED_MESSAGE)


def _corrupt(cause: BaseException | None = None) -> CorruptImage:
    text = " ".join(str(cause).split()) if cause is not None else ""  # libheif's messages span lines
    detail = f" ({text[:200]})" if text else ""
    return CorruptImage(_CORRUPT_MESSAGE + detail)


def _too_many_pixels(size: tuple[int, int] | None, limit: int | None) -> TooManyPixels:
    if size is None or limit is None:
        return TooManyPixels("The image has too many pixels to be processed safely.")
    width, height = size
    return TooManyPixels(
        f"The image is too large to process: it is {width:,} × {height:,} pixels, "
        f"more than the {limit:,} pixels allowed."
    )


def _is_environment_error(exc: BaseException) -> bool:
    """True for problems of the machine rather than of the image data.

    Pillow reports bad data with errno-less OSErrors; the filesystem sets errno.
    """
    return isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno is not None)


# --------------------------------------------------------------------------- sniffing


def sniff(head: bytes) -> str | None:
    """Return the FORMATS key for these leading bytes, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return _sniff_ftyp(head)


# The brands of an ftyp box that say "HEIF with HEVC" (heic, heix, ...) or only "HEIF" (mif1, msf1: the generic
# structural brands, which AVIF files list too, so the AVIF brands are looked for first).
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}


def _sniff_ftyp(head: bytes) -> str | None:
    if head[4:8] != b"ftyp" or len(head) < 12:
        return None
    box_size = int.from_bytes(head[:4], "big")
    major = head[8:12]
    # After the major brand and the minor version come the compatible brands (those that are in `head`).
    brands = {major} | {head[i:i + 4] for i in range(16, min(box_size, len(head)) - 3, 4)}
    if major in _AVIF_BRANDS:
        return "avif"
    if major in _HEIC_BRANDS - {b"mif1", b"msf1"}:
        return "heic"
    if brands & _AVIF_BRANDS:
        return "avif"
    return "heic" if brands & _HEIC_BRANDS else None


def _sniff_file(fp: BinaryIO) -> str:
    fmt = sniff(fp.read(SNIFF_BYTES))
    if fmt is None:
        raise _unsupported()
    fp.seek(0)
    return fmt


def _heif_plugins() -> dict[str, type[ImageFile.ImageFile]]:
    from PIL import AvifImagePlugin
    from pillow_heif.as_plugin import HeifImageFile

    return {"heic": HeifImageFile, "avif": AvifImagePlugin.AvifImageFile}


def _open_image(fp: BinaryIO, fmt: str) -> ImageFile.ImageFile:
    """Parse the header (lazily, no pixel data) with the plugin for ``fmt``."""
    try:
        plugin = _PLUGINS[fmt] if fmt in _PLUGINS else _heif_plugins()[fmt]
        return plugin(fp)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Only reachable for WebP/GIF canvases beyond twice Pillow's global limit.
        raise _too_many_pixels(None, None) from exc
    except Exception as exc:
        if _is_environment_error(exc):
            raise
        raise _corrupt(exc) from exc


def _check_dimensions(size: tuple[int, int], max_pixels: int | None) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise CorruptImage(f"{_CORRUPT_MESSAGE} (it declares a size of {width} × {height} pixels)")
    if max_pixels is not None and width * height > max_pixels:
        raise _too_many_pixels(size, max_pixels)


# --------------------------------------------------------------------------- EXIF


def _read_exif(im: Image.Image) -> Image.Exif:
    """EXIF of an opened image without decoding pixels; empty when unreadable."""
    try:
        if isinstance(im, PngImagePlugin.PngImageFile):
            # PngImageFile.getexif() decodes the whole image to look for an eXIf
            # chunk after the pixel data; the base implementation only reads what
            # the header parse found.
            return Image.Image.getexif(im)
        return im.getexif()
    except Exception as exc:
        if _is_environment_error(exc):
            raise
        return Image.Exif()


def _exif_get(mapping: Image.Exif | dict, tag: int) -> object:
    # Pillow unpacks tag values lazily, so a malformed value fails on access.
    try:
        return mapping.get(tag)
    except Exception as exc:
        if _is_environment_error(exc):
            raise
        return None


def _exif_ifd(exif: Image.Exif) -> dict:
    try:
        return exif.get_ifd(ExifIFD.Exif)
    except Exception as exc:
        if _is_environment_error(exc):
            raise
        return {}


def _as_orientation(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 8:
        return value
    return None


def _orientation(exif: Image.Exif) -> int:
    return _as_orientation(_exif_get(exif, ExifTag.Orientation)) or 1


def _as_text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    # Drops NULs, control characters and lone surrogates (not storable as UTF-8).
    text = "".join(ch for ch in value if ch.isprintable()).strip()
    return text[:_MAX_EXIF_TEXT] or None


def _as_positive_float(value: object) -> float | None:
    if isinstance(value, tuple) and len(value) == 1:
        value = value[0]
    if isinstance(value, TiffImagePlugin.IFDRational):
        if value.denominator == 0:
            return None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _as_positive_int(value: object) -> int | None:
    if isinstance(value, tuple) and value:
        value = value[0]
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


_EXIF_DATETIME = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_EXIF_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})")


def _taken_at(original: str | None, offset: str | None) -> str | None:
    match = _EXIF_DATETIME.match(original or "")
    if not match:
        return None
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        local = datetime(year, month, day, hour, minute, second)
    except ValueError:  # e.g. the "0000:00:00 00:00:00" some cameras write
        return None
    zone = _parse_utc_offset(offset)
    if zone is None:
        return local.isoformat()
    try:
        utc = local.replace(tzinfo=zone).astimezone(UTC)
    except OverflowError:
        return local.isoformat()
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_utc_offset(offset: str | None) -> timezone | None:
    match = _EXIF_OFFSET.fullmatch(offset or "")
    if not match:
        return None
    sign, hours, minutes = match[1], int(match[2]), int(match[3])
    if hours > 14 or minutes > 59:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if sign == "-" else delta)


def _summarize_exif(exif: Image.Exif) -> tuple[dict, str | None]:
    """The JSON-serialisable subset of EXIF we store, and the capture time."""
    details = _exif_ifd(exif)
    original = _as_text(_exif_get(details, ExifTag.DateTimeOriginal))
    candidates = {
        "make": _as_text(_exif_get(exif, ExifTag.Make)),
        "model": _as_text(_exif_get(exif, ExifTag.Model)),
        "lens_model": _as_text(_exif_get(details, ExifTag.LensModel)),
        "orientation": _as_orientation(_exif_get(exif, ExifTag.Orientation)),
        "exposure_time": _as_positive_float(_exif_get(details, ExifTag.ExposureTime)),
        "f_number": _as_positive_float(_exif_get(details, ExifTag.FNumber)),
        "iso": _as_positive_int(_exif_get(details, ExifTag.ISOSpeedRatings)),
        "focal_length": _as_positive_float(_exif_get(details, ExifTag.FocalLength)),
        "datetime_original": original,
    }
    summary = {key: value for key, value in candidates.items() if value is not None}
    offset = _as_text(_exif_get(details, ExifTag.OffsetTimeOriginal))
    return summary, _taken_at(original, offset)


# --------------------------------------------------------------------------- JPEG structure

# libjpeg's standard progression writes 10 scans (6 for greyscale), mozjpeg's and Photoshop's stay well below 30, and
# libjpeg-turbo itself calls more than 500 "unreasonably large" (its scan limit for fuzzing). Every scan of a
# progressive JPEG is a pass over all of the image's coefficient blocks, however few bytes it has: ~200-byte scans
# repeated 2 000 times kept a worker busy for 20 s at 144 MP. A file with more scans than this is refused.
MAX_JPEG_SCANS = 100
# CPU seconds a decode may take: DECODE_CPU_SECONDS plus DECODE_CPU_SECONDS_PER_MEGAPIXEL for every megapixel. A
# 12 MP progressive JPEG decodes in ~0.13 s on a desktop core and ~1 s on a Raspberry Pi 4; what runs for longer
# than ~40 times that is not a photo.
DECODE_CPU_SECONDS = 10.0
DECODE_CPU_SECONDS_PER_MEGAPIXEL = 0.5

# The scaled decode is not free of aliasing: LANCZOS must still shrink it by this much. Measured with bench/quality.py
# (SSIM of the 2160 px output against a LANCZOS resize of the full-resolution source): a 24 MP JPEG decoded at 3/8
# (1.04x the target) scored 0.0010 below Pillow's 1/2 draft and at 4/8 the same; a 9 MP one at 5/8 (1.01x) 0.0002
# below the full decode and at 6/8 0.0005 above it; a 12 MP one at 5/8 (1.16x) 0.0014 above the full decode.
MIN_SCALED_RATIO = 1.1

_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # 0xC4 DHT, 0xC8 JPG, 0xCC DAC
_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_HUFFMAN_DCT_SOF = frozenset({0xC0, 0xC1, 0xC2})  # baseline, extended sequential, progressive; the rest is lossless,
# hierarchical or arithmetic-coded
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xDA)})  # TEM, RSTn, SOI, EOI: no length field
# In entropy-coded data a 0xFF byte is followed by 0x00 (stuffing) or is a marker; RSTn markers stay inside a scan.
# (A literal first byte lets the regex engine skip ahead at memchr speed: 1 ms for a 3 MB file, not 23 ms.)
_MARKER_AFTER_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


@dataclass(frozen=True)
class JpegLayout:
    """What a JPEG's markers say about how it decodes: its frame header and how many scans it has."""

    sof: int  # the start-of-frame marker (0xC0 baseline, 0xC2 progressive, ...)
    precision: int  # bits per sample
    width: int
    height: int
    sampling: tuple[tuple[int, int], ...]  # (horizontal, vertical) sampling factor of each component
    scans: int  # start-of-scan markers up to the first EOI (counting stops once past MAX_JPEG_SCANS)

    @property
    def progressive(self) -> bool:
        return self.sof in _PROGRESSIVE_SOF

    @property
    def huffman_dct(self) -> bool:
        """8-bit Huffman-coded DCT (baseline, extended or progressive): what libjpeg-turbo's fast paths decode."""
        return self.sof in _HUFFMAN_DCT_SOF and self.precision == 8

    def coefficient_bytes(self) -> int:
        """Memory libjpeg keeps for a progressive decode: every component's DCT coefficients, 64 two-byte values per
        8x8 block, padded to whole MCUs, alive from the first scan to the last (even when decoding scaled down)."""
        if not self.progressive or not self.sampling:
            return 0
        h_max = max(h for h, _ in self.sampling)
        v_max = max(v for _, v in self.sampling)
        mcus_across = -(-self.width // (8 * h_max))
        mcus_down = -(-self.height // (8 * v_max))
        blocks = sum(mcus_across * h * mcus_down * v for h, v in self.sampling)
        return blocks * 64 * 2


def jpeg_layout(data: bytes | mmap.mmap, count_scans: bool = True) -> JpegLayout | None:
    """Walk a JPEG's markers (never its pixel data): the frame header and, with ``count_scans``, the number of scans.

    None when there is no frame header before the first scan; a file this walk cannot follow to the end is left to
    the decoder to judge (only its scans so far are counted).
    """
    size, pos = len(data), 2
    frame: tuple[int, int, int, int, tuple[tuple[int, int], ...]] | None = None
    scans = 0
    while pos + 4 <= size:  # marker segments up to the first scan
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE_MARKERS:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker in _SOF_MARKERS and frame is None and pos + 10 <= size:
            precision = data[pos + 4]
            height = int.from_bytes(data[pos + 5:pos + 7], "big")
            width = int.from_bytes(data[pos + 7:pos + 9], "big")
            components = data[pos + 9]
            sampling = tuple((data[i] >> 4, data[i] & 0x0F) for i in range(pos + 11, min(pos + 10 + 3 * components,
                                                                                            size), 3))
            frame = (marker, precision, width, height, sampling)
        pos += 2 + length
        if marker == 0xDA:
            scans = 1
            break
    if frame is None:
        return None
    while count_scans and scans and scans <= MAX_JPEG_SCANS:  # the entropy-coded data, marker to marker
        found = _MARKER_AFTER_SCAN.search(data, pos)
        if found is None:
            break
        start = found.start()
        marker = data[start + 1]
        if marker == 0xD9:  # EOI (whatever follows, e.g. a phone's second picture, is not this image)
            break
        if marker in _STANDALONE_MARKERS or start + 4 > size:
            pos = found.end()
            continue
        scans += marker == 0xDA
        pos = start + 2 + int.from_bytes(data[start + 2:start + 4], "big")
    return JpegLayout(*frame, scans=scans)


def _check_jpeg_scans(layout: JpegLayout | None) -> None:
    if layout is not None and layout.scans > MAX_JPEG_SCANS:
        raise HostileImage(
            f"This JPEG has more than {MAX_JPEG_SCANS} scans, far more than any camera or editor writes; decoding "
            "it would take minutes of processing for no picture, so it is refused."
        )


def _map_file(fp: BinaryIO) -> mmap.mmap:
    """The whole file, read-only, paged in from the page cache as it is read (never copied onto the heap)."""
    return mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ)


@contextlib.contextmanager
def _decode_time_limit(pixels: int) -> Iterator[None]:
    """Raise HostileImage when the decode inside uses more CPU time than its budget (see DECODE_CPU_SECONDS).

    A CPU-time timer (ITIMER_VIRTUAL), so a busy machine does not count against the image; Python runs the handler
    between two calls into the decoder (Pillow feeds it 64 KiB at a time). Only the main thread receives signals:
    elsewhere (a test's thread) the decode runs without the timer.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return
    budget = DECODE_CPU_SECONDS + DECODE_CPU_SECONDS_PER_MEGAPIXEL * pixels / 1e6

    def overrun(signum, frame):
        raise HostileImage(f"Decoding this image took more than {budget:.0f} seconds of processing, far longer "
                           "than any photo of its size needs, so it was stopped and refused.")

    previous = signal.signal(signal.SIGVTALRM, overrun)
    signal.setitimer(signal.ITIMER_VIRTUAL, budget)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


_FAST_JPEG: dict[str, ModuleType | None] = {}  # per process: simplejpeg once imported, None once found missing


def _fast_jpeg_decoder() -> ModuleType | None:
    """simplejpeg (libjpeg-turbo's scaled decode), or None where it cannot be imported: then every JPEG takes Pillow's
    path, which is slower for shrink factors below 2, and this is logged once per process."""
    if "module" not in _FAST_JPEG:
        try:
            import simplejpeg
        except ImportError as exc:  # no wheel for this platform, or a broken install
            log.warning("simplejpeg is not available (%s): JPEGs are decoded by Pillow alone, which is slower", exc)
            _FAST_JPEG["module"] = None
        else:
            _FAST_JPEG["module"] = simplejpeg
    return _FAST_JPEG["module"]


def _scaled_size(size: tuple[int, int], eighths: int) -> tuple[int, int]:
    return -(-size[0] * eighths // 8), -(-size[1] * eighths // 8)


def jpeg_scale_eighths(size: tuple[int, int], target: tuple[int, int]) -> int:
    """The M (1..8) of libjpeg's M/8 scaled decode for a ``size`` JPEG whose largest output is ``target``.

    The smallest scale that leaves at least MIN_SCALED_RATIO for the LANCZOS step, and never a smaller one than
    draft() would decode at (1/2, 1/4, 1/8): quality is at least what Pillow's path gives (see MIN_SCALED_RATIO).
    """
    roomy = next((m for m in range(1, 8)
                  if all(s >= MIN_SCALED_RATIO * t for s, t in zip(_scaled_size(size, m), target, strict=True))), 8)
    drafted = next(p for p in (8, 4, 2, 1) if size[0] // p >= target[0] and size[1] // p >= target[1])
    return min(roomy, 8 // drafted)


def _decode_jpeg_scaled(
    data: mmap.mmap, im: ImageFile.ImageFile, layout: JpegLayout | None, target: tuple[int, int]
) -> tuple[Image.Image, tuple[float, float, float, float]] | None:
    """Decode with libjpeg-turbo at the smallest M/8 scale that covers ``target`` (stored orientation).

    Returns the image and the region of it that matches the original frame (for resize's ``box``), or None where the
    fast path does not apply: no scale below 8/8 fits, CMYK/YCCK, arithmetic coding, 12-bit, simplejpeg missing, or a
    file libjpeg-turbo reports damaged (Pillow, which tolerates libjpeg's warnings, decides about those).
    """
    if layout is None or not layout.huffman_dct or im.mode not in ("RGB", "L"):
        return None
    if (layout.width, layout.height) != im.size or len(layout.sampling) != len(im.mode):
        return None
    eighths = jpeg_scale_eighths(im.size, target)
    if eighths == 8:
        return None  # no gain over Pillow's own full decode
    decoder = _fast_jpeg_decoder()
    if decoder is None:
        return None
    grey = im.mode == "L"
    scaled = _scaled_size(im.size, eighths)
    try:
        # simplejpeg picks the smallest scale that gives at least min_width x min_height: exactly `eighths` here.
        # strict: libjpeg's warnings (extraneous bytes, premature end) raise instead of leaving grey pixels.
        pixels = decoder.decode_jpeg(data, "GRAY" if grey else "RGBX", min_width=scaled[0], min_height=scaled[1],
                                     strict=True)
    except (ValueError, RuntimeError) as exc:
        log.debug("libjpeg-turbo refused this JPEG (%s); Pillow decodes it", exc)
        return None
    height, width = pixels.shape[:2]
    if (width, height) != scaled:
        return None
    # RGBX and L images can share the decoder's buffer: no copy of the decoded pixels.
    mode = "L" if grey else "RGBX"
    decoded = Image.frombuffer(mode, (width, height), pixels, "raw", mode, 0, 1)
    return decoded, (0.0, 0.0, im.width * eighths / 8, im.height * eighths / 8)


# --------------------------------------------------------------------------- probe


@dataclass(frozen=True)
class Probe:
    format: str
    content_type: str
    width: int  # as displayed, i.e. after EXIF orientation
    height: int
    orientation: int
    exif: dict
    taken_at: str | None


def probe(path: str, max_pixels: int) -> Probe:
    """Identify an upload from its header alone, without decoding any pixels."""
    with open(path, "rb") as fp:
        fmt = _sniff_file(fp)
        if fmt == "webp":
            stored_size, exif = _read_webp_header(fp)
            _check_dimensions(stored_size, max_pixels)
            orientation = _orientation(exif)
        elif fmt in _ISOBMFF_FORMATS:
            stored_size, orientation, exif = _read_isobmff_header(fp, fmt, max_pixels)
        else:
            im = _open_image(fp, fmt)
            stored_size = _stored_size(im)
            _check_dimensions(stored_size, max_pixels)
            if fmt == "jpeg":  # a scan bomb is refused at upload, before any decode
                with _map_file(fp) as data:
                    _check_jpeg_scans(jpeg_layout(data))
            exif = _read_exif(im)
            orientation = _orientation(exif)
        summary, taken_at = _summarize_exif(exif)  # TIFF EXIF is read from fp lazily
    width, height = _displayed_size(stored_size, orientation)
    return Probe(
        format=fmt,
        content_type=FORMATS[fmt],
        width=width,
        height=height,
        orientation=orientation,
        exif=summary,
        taken_at=taken_at,
    )


# The EXIF orientation Pillow's AVIF plugin reports for an (irot angle, imir axis) pair: rotation first, then the
# mirror (axis 0 flips top and bottom, axis 1 left and right).
_AVIF_ORIENTATION = {
    (0, None): 1, (0, 1): 2, (2, None): 3, (0, 0): 4, (1, 0): 5, (3, None): 6, (3, 0): 7, (1, None): 8,
    (1, 1): 7, (3, 1): 5, (2, 0): 2, (2, 1): 4,
}


def _read_isobmff_header(fp: BinaryIO, fmt: str, max_pixels: int) -> tuple[tuple[int, int], int, Image.Exif]:
    """Stored size, the orientation left to photoq, and EXIF of a HEIC or AVIF, from its meta box and Exif item.

    HEIF keeps rotation and mirroring as irot/imir transforms, and iPhones write an EXIF Orientation saying the same
    again. libheif applies the transforms (and the clap crop) as it decodes, so a HEIC's stored size is the transformed
    one and its EXIF orientation must not be applied a second time. Pillow's AVIF plugin applies no transform and
    reports irot/imir as the EXIF orientation instead, which render applies as it does a JPEG's.
    """
    try:
        item = isobmff.read_primary_item(fp)
    except isobmff.NoStillImage as exc:
        raise UnsupportedImage(f"This {fmt.upper()} file holds no still image ({exc}).") from exc
    except isobmff.HeaderError as exc:
        raise _corrupt(exc) from exc
    _check_dimensions(item.size, max_pixels)  # what the codec decodes, before any crop
    # A grid's tiles only pad the image to whole tiles; tiles far larger than the image they make are a bomb.
    if item.input_pixels > 2 * max_pixels:
        raise TooManyPixels(f"The image is too large to process: its tiles hold {item.input_pixels:,} pixels, more "
                            f"than the {max_pixels:,} pixels allowed.")
    if item.item_type not in _DECODABLE_ITEMS[fmt]:
        coding = item.item_type.decode("ascii", "replace")
        raise UnsupportedImage(f"This {fmt.upper()} file's image is coded as {coding!r}, which photoq cannot decode.")
    exif = _exif_from_metadata({"exif": item.exif} if item.exif else {})
    if fmt == "heic":
        return item.transformed_size(), 1, exif
    return item.size, _AVIF_ORIENTATION[item.rotation_and_mirror()], exif


def _read_webp_header(fp: BinaryIO) -> tuple[tuple[int, int], Image.Exif]:
    """Canvas size and EXIF of a WebP, walking RIFF chunk headers only.

    Pillow's WebP plugin reads the whole file into memory to open it.
    """
    fp.seek(12)
    fourcc, length = _read_riff_chunk_header(fp)
    if fourcc is None:
        raise _corrupt()
    size = _webp_canvas_size(fourcc, fp.read(min(length, 10)))
    metadata: dict[str, bytes] = {}
    if fourcc == b"VP8X":  # only the extended format can carry metadata chunks
        fp.seek(20 + length + (length & 1))
        metadata = _read_webp_metadata(fp)
    return size, _exif_from_metadata(metadata)


def _read_riff_chunk_header(fp: BinaryIO) -> tuple[bytes | None, int]:
    header = fp.read(8)
    if len(header) < 8:
        return None, 0
    return header[:4], int.from_bytes(header[4:], "little")


def _webp_canvas_size(fourcc: bytes, data: bytes) -> tuple[int, int]:
    if fourcc == b"VP8X" and len(data) >= 10:
        return int.from_bytes(data[4:7], "little") + 1, int.from_bytes(data[7:10], "little") + 1
    if fourcc == b"VP8 " and len(data) >= 10 and data[3:6] == b"\x9d\x01\x2a":
        return (
            int.from_bytes(data[6:8], "little") & 0x3FFF,
            int.from_bytes(data[8:10], "little") & 0x3FFF,
        )
    if fourcc == b"VP8L" and len(data) >= 5 and data[0] == 0x2F:
        bits = int.from_bytes(data[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    raise _corrupt()


def _read_webp_metadata(fp: BinaryIO) -> dict[str, bytes]:
    wanted = {b"EXIF": "exif", b"XMP ": "xmp"}
    found: dict[str, bytes] = {}
    while len(found) < len(wanted):
        fourcc, length = _read_riff_chunk_header(fp)
        if fourcc is None:
            break
        if fourcc in wanted and length <= _MAX_WEBP_METADATA_BYTES:
            found[wanted[fourcc]] = fp.read(length)
            fp.seek(length & 1, os.SEEK_CUR)  # chunks are padded to an even size
        else:
            fp.seek(length + (length & 1), os.SEEK_CUR)
    return found


def _exif_from_metadata(metadata: dict[str, bytes]) -> Image.Exif:
    # Run Pillow's own getexif() (EXIF plus the XMP orientation fallback) on a bare
    # image carrying just this metadata, so probe and render read the same values.
    carrier = Image.Image()
    carrier.info.update(metadata)
    return _read_exif(carrier)


def _stored_size(im: ImageFile.ImageFile) -> tuple[int, int]:
    if isinstance(im, TiffImagePlugin.TiffImageFile):
        # Pillow >= 11 reports a TIFF's upright size before decoding; the IFD has the stored one.
        return im.tag_v2[TiffImagePlugin.IMAGEWIDTH], im.tag_v2[TiffImagePlugin.IMAGELENGTH]
    return im.size


def _orientation_left_to_us(im: ImageFile.ImageFile, orientation: int) -> int:
    # Pillow's TIFF decoder applies the orientation itself.
    return 1 if isinstance(im, TiffImagePlugin.TiffImageFile) else orientation


def _displayed_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    width, height = size
    return (height, width) if orientation >= 5 else (width, height)


# --------------------------------------------------------------------------- render


@dataclass(frozen=True)
class OutputSpec:
    name: str
    width: int
    height: int
    format: str = "webp"
    quality: int = 80
    method: int = 0  # WebP encoder effort 0..6; 0 is ~3.5x faster than 4 for ~10% more bytes
    speed: int = AVIF_SPEED  # AVIF encoder speed 0..10

    def __post_init__(self) -> None:
        if not self.name or self.name in (".", "..") or any(c in self.name for c in "/\\\0"):
            raise ValueError(f"output name {self.name!r} is not a plain file name")
        if self.format not in OUTPUT_FORMATS:
            raise ValueError(f"output format {self.format!r} is not one of {OUTPUT_FORMATS}")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"output box {self.width}x{self.height} must be at least 1x1")
        if not 0 <= self.quality <= 100:
            raise ValueError(f"quality {self.quality} is outside 0..100")
        if not 0 <= self.method <= 6:
            raise ValueError(f"WebP method {self.method} is outside 0..6")
        if not 0 <= self.speed <= 10:
            raise ValueError(f"AVIF speed {self.speed} is outside 0..10")


@dataclass(frozen=True)
class OutputResult:
    name: str
    path: str
    width: int
    height: int
    size_bytes: int
    placeholder: str | None = None  # base64 ThumbHash, on the smallest output when render(placeholder=True)


def output_filename(spec: OutputSpec) -> str:
    return f"{spec.name}{EXTENSIONS[spec.format]}"


def spec_fingerprint(spec: OutputSpec) -> str:
    """What an output was rendered with, e.g. "webp 1080x1920 q80 m0": stored with each output, and an output whose
    fingerprint differs from its spec's today is stale. Only settings the format uses are in it (PNG ignores quality,
    only WebP has a method, only AVIF a speed), so changing one does not make every other format's outputs stale;
    a setting added to OutputSpec that changes a format's bytes belongs here too."""
    parts = [spec.format, f"{spec.width}x{spec.height}"]
    if spec.format != "png":
        parts.append(f"q{spec.quality}")
    if spec.format == "webp":
        parts.append(f"m{spec.method}")
    if spec.format == "avif":
        parts.append(f"s{spec.speed}")
    return " ".join(parts)


def output_size(source: tuple[int, int], spec: OutputSpec) -> tuple[int, int]:
    """The size render() gives `spec` for a source of this displayed size."""
    return _fit_within(source, (spec.width, spec.height))


@dataclass(frozen=True)
class _Planned:
    index: int  # position in the caller's specs
    spec: OutputSpec
    size: tuple[int, int]  # as displayed


def render(
    source: str, specs: Sequence[OutputSpec], dest_dir: str, fsync: bool = True, placeholder: bool = False
) -> list[OutputResult]:
    """Decode ``source`` once and write every spec into ``dest_dir`` atomically.

    Returns results in the order of ``specs``; with ``placeholder``, the smallest result carries the ThumbHash of
    its image (base64) in ``placeholder``. Raises UnsupportedImage,
    CorruptImage or TooManyPixels for bad input and re-raises real OS errors.
    """
    if not specs:
        return []
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"output names must be unique: {names}")

    temp_paths: set[str] = set()
    try:
        with open(source, "rb") as fp:
            largest, plan, icc_profile = _decode_largest(fp, specs)
        durable.makedirs(dest_dir, fsync)
        results: dict[int, OutputResult] = {}  # by position in specs
        made = [largest]  # every size made so far, largest first
        for planned in plan:
            source_image = _cascade_source(made, planned.size)
            if source_image.size == planned.size:
                image = source_image
            else:
                image = source_image.resize(planned.size, CASCADE_RESAMPLE)
                made.append(image)
            results[planned.index] = _write_output(
                image, planned.spec, dest_dir, icc_profile, fsync, temp_paths
            )
        if placeholder:  # `plan` is largest first, so `image` is the smallest output
            smallest = plan[-1].index
            results[smallest] = dataclasses.replace(results[smallest], placeholder=thumbhash_base64(image))
        if fsync:
            # The outputs' names, and the folder's own name: the photo's other job, in another process, may have
            # created the folder a moment ago and not yet made its name durable.
            durable.fsync_directory(dest_dir)
            durable.fsync_directory(os.path.dirname(os.path.abspath(dest_dir)))
        return [results[index] for index in range(len(specs))]  # `plan` has every spec
    finally:
        for path in temp_paths:
            _remove_quietly(path)


def _cascade_source(made: Sequence[Image.Image], size: tuple[int, int]) -> Image.Image:
    """The image to make ``size`` from: the same size if made already, else the smallest one at least
    CASCADE_MIN_RATIO times larger in both directions, else the largest (the one made from the source).

    Resampling twice at a nearly 1:1 ratio (1038 px wide from 1080 px) blurs a photo visibly, and from
    2160 px it does not; small thumbnails still come from small images, where resizing costs almost nothing.
    """
    best = made[0]
    for image in made:
        if image.size == size:
            return image
        if (
            image.width >= CASCADE_MIN_RATIO * size[0]
            and image.height >= CASCADE_MIN_RATIO * size[1]
            and image.width * image.height < best.width * best.height
        ):
            best = image
    return best


def _decode_largest(
    fp: BinaryIO, specs: Sequence[OutputSpec]
) -> tuple[Image.Image, list[_Planned], bytes | None]:
    """Decode the source and shrink it to the largest output, upright and in sRGB.

    Returns that image, the outputs largest first, and the ICC profile to embed
    (None when the pixels are sRGB). The full-size decode is freed on return.
    """
    fmt = _sniff_file(fp)
    with contextlib.ExitStack() as stack:
        data = stack.enter_context(_map_file(fp)) if fmt == "jpeg" else None
        try:
            im = _open_image(fp, fmt)
            stored_size = _stored_size(im)
            _check_dimensions(stored_size, Image.MAX_IMAGE_PIXELS)
            layout = jpeg_layout(data) if data is not None else None
            _check_jpeg_scans(layout)
            # libheif has applied a HEIC's irot/imir already, and its EXIF orientation describes the same turn.
            orientation = 1 if fmt == "heic" else _orientation(_read_exif(im))
            icc_profile = im.info.get("icc_profile")
            plan = _plan_outputs(_displayed_size(stored_size, orientation), specs)
            orientation = _orientation_left_to_us(im, orientation)
            # The largest output as the decoder lays out pixels (the swap is its own inverse).
            largest_decoded = _displayed_size(plan[0].size, orientation)
            with _decode_time_limit(stored_size[0] * stored_size[1]):
                scaled = _decode_jpeg_scaled(data, im, layout, largest_decoded) if data is not None else None
                if scaled is not None:
                    decoded, box = scaled  # RGBX or L, ready to resize
                else:
                    box = _draft_jpeg(im, largest_decoded)
                    im.load()
                    decoded = _to_8bit_working_mode(im, icc_profile)
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _too_many_pixels(None, None) from exc
        except Exception as exc:
            if _is_environment_error(exc):
                raise
            raise _corrupt(exc) from exc

        largest = decoded.resize(largest_decoded, MAIN_RESAMPLE, box=box, reducing_gap=REDUCING_GAP)
        del im, decoded
    if largest.mode == "RGBX":
        largest = largest.convert("RGB")
    if orientation in _ORIENTATION_TRANSPOSE:
        largest = largest.transpose(_ORIENTATION_TRANSPOSE[orientation])
    largest, embed_profile = _to_srgb(largest, icc_profile)
    # Pillow carries `info` (EXIF, XMP, ICC, transparency, ...) through resize and
    # convert, and some encoders write it back out; outputs carry no metadata.
    largest.info = {}
    return largest, plan, embed_profile


def _plan_outputs(source: tuple[int, int], specs: Sequence[OutputSpec]) -> list[_Planned]:
    planned = [_Planned(index, spec, output_size(source, spec)) for index, spec in enumerate(specs)]
    return sorted(planned, key=lambda p: p.size[0] * p.size[1], reverse=True)


def _fit_within(source: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """Fit inside ``box`` keeping the aspect ratio; never upscale; at least 1 px."""
    scale = min(box[0] / source[0], box[1] / source[1])
    if scale >= 1:
        return source
    width, height = (max(1, math.floor(side * scale + 0.5)) for side in source)
    return width, height


def _draft_jpeg(im: ImageFile.ImageFile, target: tuple[int, int]):
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still covers ``target``.

    Returns the region of the drafted image matching the original frame (for
    resize's ``box``), or None when no draft was applied.
    """
    if not isinstance(im, JpegImagePlugin.JpegImageFile):
        return None
    if im.width < 2 * target[0] or im.height < 2 * target[1]:
        return None
    # draft() picks the largest scale whose result is still >= the requested size.
    drafted = im.draft("RGB", target)
    return drafted[1] if drafted else None


_PEAK_BYTES_PER_PIXEL = 4  # Pillow keeps RGB as RGBX; counting grey images the same errs on the safe side
_CODEC_BUFFER_BYTES = 8 * 1024 * 1024  # libjpeg/libwebp/zlib working memory and allocator slack, measured generously
# Copies of the decoded picture alive at the peak, by source format (measured with `make bench-memory` and
# tests/test_memory_budget.py): libjpeg decodes straight into Pillow's image (or, scaled by simplejpeg, into a buffer
# Pillow shares); other decoders may be followed by a mode conversion while the decoded copy still exists (16-bit
# greyscale: 2 + 2 + 1 bytes per pixel); libwebp decodes into a buffer of its own, which Pillow copies, and both
# live through that conversion (about 16 bytes per pixel).
_DECODED_COPIES = {"jpeg": 1, "webp": 4}


@dataclass(frozen=True)
class DecodeFacts:
    """What a source's header says about its decoder's memory beyond the decoded picture (see decode_facts)."""

    decoder_bytes: int = 0  # held by the decoder itself while it runs


def decode_facts(path: str, fmt: str) -> DecodeFacts:
    """Read the header facts estimated_peak_bytes needs beyond size and format; empty when there are none or the
    header cannot be read (render reports bad files; the estimate is not the place).

    - a progressive JPEG: libjpeg keeps every DCT coefficient of the image from the first scan to the last, two
      bytes per coefficient, however small the decode is scaled (a 12000 x 12000 4:4:4 one: 824 MiB);
    - a compressed TIFF: libtiff decodes a whole strip or tile into a buffer of its own, and writers may put the whole
      image (16-bit: 6 bytes per pixel) into one strip.
    """
    try:
        with open(path, "rb") as fp:
            if fmt == "jpeg":
                with _map_file(fp) as data:
                    layout = jpeg_layout(data, count_scans=False)
                return DecodeFacts(layout.coefficient_bytes() if layout is not None else 0)
            if fmt == "tiff":
                return DecodeFacts(_tiff_strip_bytes(TiffImagePlugin.TiffImageFile(fp)))
    except Exception as exc:
        if _is_environment_error(exc) and not isinstance(exc, FileNotFoundError):
            raise
    return DecodeFacts()


def _tiff_strip_bytes(im: TiffImagePlugin.TiffImageFile) -> int:
    tags = im.tag_v2
    width, height = _stored_size(im)
    bits = tags.get(TiffImagePlugin.BITSPERSAMPLE, (8,))
    bits_per_pixel = sum(bits) if isinstance(bits, tuple) else int(bits) * int(tags.get(
        TiffImagePlugin.SAMPLESPERPIXEL, 1))
    if TiffImagePlugin.TILEWIDTH in tags:
        return -(-int(tags[TiffImagePlugin.TILEWIDTH]) * bits_per_pixel // 8) * int(tags[TiffImagePlugin.TILELENGTH])
    rows = min(int(tags.get(TiffImagePlugin.ROWSPERSTRIP, height)), height)
    return -(-width * bits_per_pixel // 8) * rows


def estimated_peak_bytes(
    width: int, height: int, fmt: str, specs: Sequence[OutputSpec], facts: DecodeFacts | None = None
) -> int:
    """Pixel memory ``render`` holds at its peak for a source of this displayed size and format.

    Mirrors what render does: the decode (drafted by libjpeg to 1/2..1/8 when at least twice the largest output;
    scaled by libjpeg-turbo to M/8 otherwise, which is never larger, so the full size is counted; other formats count
    more than once, see _DECODED_COPIES), what the decoder itself holds (``facts``, from decode_facts: a
    progressive JPEG's coefficients, a TIFF's strip buffer), resize's integer pre-reduction and one-axis
    intermediate, the largest output with its upright and sRGB copies, and every smaller output. Conservative: real
    use is at most this, usually well below.
    """
    if not specs or width <= 0 or height <= 0:
        return 0
    sizes = [planned.size for planned in _plan_outputs((width, height), specs)]  # largest first
    target_w, target_h = sizes[0]
    decoded_w, decoded_h = width, height
    if fmt == "jpeg" and width >= 2 * target_w and height >= 2 * target_h:
        scale = next(s for s in (8, 4, 2, 1) if s <= min(width // target_w, height // target_h))
        decoded_w, decoded_h = -(-width // scale), -(-height // scale)
    decoded = decoded_w * decoded_h * _DECODED_COPIES.get(fmt, 2)
    factor_w = max(1, int(decoded_w / target_w / REDUCING_GAP))
    factor_h = max(1, int(decoded_h / target_h / REDUCING_GAP))
    reduced_h = -(-decoded_h // factor_h)
    reduced = (-(-decoded_w // factor_w)) * reduced_h if factor_w > 1 or factor_h > 1 else 0
    intermediate = target_w * reduced_h
    outputs = 2 * target_w * target_h + sum(w * h for w, h in sizes[1:])
    decoder = facts.decoder_bytes if facts is not None else 0
    return _PEAK_BYTES_PER_PIXEL * (decoded + reduced + intermediate + outputs) + decoder + _CODEC_BUFFER_BYTES


def _to_8bit_working_mode(im: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """Convert to L, RGB or RGBA so that resizing is correct for every source mode."""
    if im.mode in _SIXTEEN_BIT_MODES or im.mode in ("I", "F"):
        return _scale_to_8bit(im)
    if im.mode == "1":
        return im.convert("L")
    if im.mode == "CMYK":
        return _cmyk_to_rgb(im, icc_profile)
    has_alpha = im.has_transparency_data
    if im.mode == "RGBA" or (im.mode in ("RGB", "L") and not has_alpha):
        return im
    # P, PA, LA, RGBX, YCbCr, LAB, ... and L/RGB with a transparent colour key.
    return im.convert("RGBA" if has_alpha else "RGB")


def _scale_to_8bit(im: Image.Image) -> Image.Image:
    """Map high-bit-depth greyscale onto 0..255 instead of clipping at 255."""
    low: float
    high: float
    if im.mode in _SIXTEEN_BIT_MODES:
        # Scaled within 16 bits, then narrowed: 2 + 2 + 1 bytes per pixel at the peak. Through 32-bit "I" it was
        # 2 + 4 + 4 + 1, and a 16-bit 12000 x 12000 PNG peaked at 1.5 GiB.
        if im.mode != "I;16":
            im = im.convert("I;16")
        return im.point(lambda value: value * 255 / 65535 + 0.5).convert("L")
    low, high = _band_extrema(im)
    if im.mode == "F" and low >= 0 and high <= 1:
        low, high = 0, 1
    elif low >= 0 and high <= 255:
        low, high = 0, 255  # already 8-bit data in a wider container
    elif im.mode == "I" and low >= 0 and high <= 65535:
        low, high = 0, 65535  # how older Pillow versions open 16-bit PNGs
    if high <= low:
        return im.convert("L")
    scale = 255 / (high - low)
    return im.point(lambda value: value * scale - low * scale + 0.5).convert("L")


def _band_extrema(im: Image.Image) -> tuple[float, float]:
    """(lowest, highest) value of a single-band image."""
    low, high = im.getextrema()
    if isinstance(low, tuple) or isinstance(high, tuple):
        raise ValueError(f"expected a single-band image, got mode {im.mode}")
    return low, high


def _cmyk_to_rgb(im: Image.Image, icc_profile: bytes | None) -> Image.Image:
    profile = _load_profile(icc_profile)
    if profile is not None and profile.profile.xcolor_space.strip() == "CMYK":
        try:
            converted = ImageCms.profileToProfile(
                im, profile, ImageCms.createProfile("sRGB"), outputMode="RGB"
            )
        except ImageCms.PyCMSError:
            converted = None
        if converted is not None:  # None only when converting in place, which we do not ask for
            return converted
    return im.convert("RGB")


def _load_profile(icc_profile: bytes | None) -> ImageCms.ImageCmsProfile | None:
    if not icc_profile:
        return None
    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
    except (ImageCms.PyCMSError, OSError, TypeError, ValueError):
        return None


def _to_srgb(im: Image.Image, icc_profile: bytes | None) -> tuple[Image.Image, bytes | None]:
    """Convert RGB(A) pixels tagged with a non-sRGB profile to sRGB.

    Returns the image and the profile outputs must embed: None when the pixels
    are (now) sRGB, the original profile when the conversion failed. Profiles we
    cannot read or that do not match the pixels (grey, CMYK leftovers) are dropped.
    """
    if im.mode not in ("RGB", "RGBA"):
        return im, None
    profile = _load_profile(icc_profile)
    if profile is None or profile.profile.xcolor_space.strip() != "RGB" or _is_srgb(profile):
        return im, None
    try:
        transform = ImageCms.buildTransform(
            profile,
            ImageCms.createProfile("sRGB"),
            im.mode,
            im.mode,
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
        )
        converted = ImageCms.applyTransform(im, transform)
    except ImageCms.PyCMSError:
        return im, icc_profile
    if converted is None:  # only when converting in place, which we do not ask for
        return im, icc_profile
    return converted, None


def _is_srgb(profile: ImageCms.ImageCmsProfile) -> bool:
    # Every common sRGB profile says so in its description ("sRGB IEC61966-2.1",
    # "sRGB built-in", ...). Misclassifying an odd sRGB profile only costs a
    # no-op transform.
    return "srgb" in (ImageCms.getProfileDescription(profile) or "").lower()


def _write_output(
    im: Image.Image,
    spec: OutputSpec,
    dest_dir: str,
    icc_profile: bytes | None,
    fsync: bool,
    temp_paths: set[str],
) -> OutputResult:
    final_path = os.path.join(dest_dir, output_filename(spec))
    temp_path = os.path.join(dest_dir, f".{spec.name}.{secrets.token_hex(8)}.tmp")
    temp_paths.add(temp_path)
    # "x" (O_EXCL) with the usual umask-derived mode, unlike mkstemp's 0600, so
    # outputs stay readable by whatever serves them.
    with open(temp_path, "xb") as out:
        _encode(im, spec, out, icc_profile)
        out.flush()
        if fsync:
            os.fsync(out.fileno())
        size_bytes = os.fstat(out.fileno()).st_size
    os.replace(temp_path, final_path)
    temp_paths.discard(temp_path)
    return OutputResult(spec.name, final_path, im.width, im.height, size_bytes)


def _encode(im: Image.Image, spec: OutputSpec, out: BinaryIO, icc_profile: bytes | None) -> None:
    extra = {"icc_profile": icc_profile} if icc_profile else {}
    if spec.format == "jpeg":
        _flatten_onto_white(im).save(out, "JPEG", quality=spec.quality, **extra)
    elif spec.format == "webp":
        im.save(out, "WEBP", quality=spec.quality, method=spec.method, **extra)
    elif spec.format == "avif":
        im.save(out, "AVIF", quality=spec.quality, speed=spec.speed, **extra)
    else:  # PNG is lossless: quality does not apply
        im.save(out, "PNG", **extra)


def _flatten_onto_white(im: Image.Image) -> Image.Image:
    if im.mode != "RGBA":
        return im
    flat = Image.new("RGB", im.size, (255, 255, 255))
    flat.paste(im, mask=im.getchannel("A"))
    return flat


def _remove_quietly(path: str) -> None:
    # Best effort: this runs while another error may be propagating.
    with contextlib.suppress(OSError):
        os.unlink(path)


# --------------------------------------------------------------------------- ThumbHash


THUMBHASH_MAX_SIDE = 100


def thumbhash_base64(im: Image.Image) -> str:
    """The ThumbHash of ``im`` (shrunk to fit THUMBHASH_MAX_SIDE first), base64-encoded."""
    im = im.convert("RGBA")
    if im.width > THUMBHASH_MAX_SIDE or im.height > THUMBHASH_MAX_SIDE:
        im = im.resize(_fit_within(im.size, (THUMBHASH_MAX_SIDE, THUMBHASH_MAX_SIDE)), Image.Resampling.BOX)
    return base64.b64encode(rgba_to_thumbhash(im.width, im.height, im.tobytes())).decode("ascii")


def _round(x: float) -> int:
    return math.floor(x + 0.5)  # JavaScript's Math.round, which the reference implementation uses


def rgba_to_thumbhash(w: int, h: int, rgba: bytes) -> bytes:
    """Encode ``w`` x ``h`` RGBA pixels (at most 100 x 100) as a ThumbHash.

    A port of rgbaToThumbHash from Evan Wallace's public-domain reference (https://github.com/evanw/thumbhash).
    """
    if not (0 < w <= 100 and 0 < h <= 100) or len(rgba) != w * h * 4:
        raise ValueError(f"{w}x{h} does not fit in 100x100 or does not match {len(rgba)} bytes")
    n = w * h
    avg_r = avg_g = avg_b = avg_a = 0.0
    for j in range(0, n * 4, 4):
        alpha = rgba[j + 3] / 255
        avg_r += alpha / 255 * rgba[j]
        avg_g += alpha / 255 * rgba[j + 1]
        avg_b += alpha / 255 * rgba[j + 2]
        avg_a += alpha
    if avg_a:
        avg_r /= avg_a
        avg_g /= avg_a
        avg_b /= avg_a

    has_alpha = avg_a < n
    l_limit = 5 if has_alpha else 7  # fewer luminance bits when there is alpha
    lx = max(1, _round(l_limit * w / max(w, h)))
    ly = max(1, _round(l_limit * h / max(w, h)))
    lum, p, q, a = [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n
    # RGBA -> LPQA, composited atop the average colour.
    for i in range(n):
        j = i * 4
        alpha = rgba[j + 3] / 255
        r = avg_r * (1 - alpha) + alpha / 255 * rgba[j]
        g = avg_g * (1 - alpha) + alpha / 255 * rgba[j + 1]
        b = avg_b * (1 - alpha) + alpha / 255 * rgba[j + 2]
        lum[i] = (r + g + b) / 3
        p[i] = (r + g) / 2 - b
        q[i] = r - g
        a[i] = alpha

    def encode_channel(channel: list[float], nx: int, ny: int) -> tuple[float, list[float], float]:
        # The DCT is separable: per row, the dot product with each horizontal cosine, then down the columns.
        fxs = [[math.cos(math.pi / w * cx * (x + 0.5)) for x in range(w)] for cx in range(nx)]
        rows = [channel[y * w:(y + 1) * w] for y in range(h)]
        row_dots = [[sum(v * f for v, f in zip(row, fx, strict=True)) for row in rows] for fx in fxs]
        dc, ac, scale = 0.0, [], 0.0
        for cy in range(ny):
            fy = [math.cos(math.pi / h * cy * (y + 0.5)) for y in range(h)]
            cx = 0
            while cx * ny < nx * (ny - cy):
                f = sum(d * c for d, c in zip(row_dots[cx], fy, strict=True)) / n
                if cx or cy:
                    ac.append(f)
                    scale = max(scale, abs(f))
                else:
                    dc = f
                cx += 1
        if scale:
            ac = [0.5 + 0.5 / scale * f for f in ac]
        return dc, ac, scale

    l_dc, l_ac, l_scale = encode_channel(lum, max(3, lx), max(3, ly))
    p_dc, p_ac, p_scale = encode_channel(p, 3, 3)
    q_dc, q_ac, q_scale = encode_channel(q, 3, 3)
    is_landscape = w > h
    header24 = (
        _round(63 * l_dc) | (_round(31.5 + 31.5 * p_dc) << 6) | (_round(31.5 + 31.5 * q_dc) << 12)
        | (_round(31 * l_scale) << 18) | (int(has_alpha) << 23)
    )
    header16 = (ly if is_landscape else lx) | (_round(63 * p_scale) << 3) | (_round(63 * q_scale) << 9) | (
        int(is_landscape) << 15)
    out = [header24 & 255, (header24 >> 8) & 255, header24 >> 16, header16 & 255, header16 >> 8]
    channels = [l_ac, p_ac, q_ac]
    if has_alpha:
        a_dc, a_ac, a_scale = encode_channel(a, 5, 5)
        out.append(_round(15 * a_dc) | (_round(15 * a_scale) << 4))
        channels.append(a_ac)
    ac_start = len(out)
    factors = [f for ac in channels for f in ac]
    out.extend([0] * ((len(factors) + 1) // 2))
    for index, f in enumerate(factors):
        out[ac_start + (index >> 1)] |= _round(15 * f) << ((index & 1) << 2)
    return bytes(out)


# --------------------------------------------------------------------------- workers


def init_worker(max_pixels: int, niceness: int = 0) -> None:
    """ProcessPoolExecutor initializer: per-child Pillow settings.

    ``niceness`` is added to the child's nice value: image work is background work, and a lower priority keeps the
    web process answering uploads and live progress promptly while every core renders. It costs no throughput, since
    the children still get every cycle the web process does not use.
    """
    if niceness:
        os.nice(niceness)
    Image.MAX_IMAGE_PIXELS = max_pixels
    _fast_jpeg_decoder()  # imported (or found missing, and logged) once, before the first job
    # A truncated upload must fail as CorruptImage, never render half grey.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    # libjpeg-turbo, libwebp (as Pillow drives it), zlib and lcms2 are already
    # single-threaded; the AVIF codecs and libheif are the ones that spawn a thread per core.
    from pillow_heif import options as heif_options

    heif_options.DECODE_THREADS = 1
    # Only the primary image is used: no embedded thumbnails, depth maps or auxiliary images (Portrait-mode
    # mattes) are read into memory.
    heif_options.THUMBNAILS = False
    heif_options.DEPTH_IMAGES = False
    heif_options.AUX_IMAGES = False
    try:
        from PIL import AvifImagePlugin
    except ImportError:
        return
    AvifImagePlugin.DEFAULT_MAX_THREADS = 1
