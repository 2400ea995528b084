"""libjpeg-turbo's scaled decode (simplejpeg) against Pillow's path, and the JPEGs that must not take it.

Every file is made here: Pillow writes the JPEGs, jpegtran (libjpeg-turbo's own tool) recodes one with arithmetic
coding, and the odd ones (12-bit, scan bombs, out-of-order restart markers) are patched byte by byte.
"""

from __future__ import annotations

import io
import logging
import mmap
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageChops, ImageCms, ImageOps, ImageStat

from photoq import imaging
from photoq.imaging import CorruptImage, HostileImage, OutputSpec, jpeg_layout, probe, render

from .support import AUTH, multipart, photo_like

# A 1000 x 750 source for a 600 px box: the smallest scale that covers it is 5/8 (625 x 469), which draft() (1/2,
# 1/4, 1/8) cannot give, so the fallback decodes every pixel.
SOURCE = (1000, 750)
SPECS = [OutputSpec("big", 600, 600, format="png"), OutputSpec("small", 150, 150, format="png")]
MEAN_TOLERANCE = 1.5  # mean absolute difference per channel, 0..255
ADOBE_RGB_COLORANTS = ((0.60974, 0.31111, 0.01947), (0.20528, 0.62567, 0.06087), (0.14919, 0.06322, 0.74457))
DISPLAY_P3_COLORANTS = ((0.51512, 0.24120, -0.00105), (0.29198, 0.69225, 0.04189), (0.15710, 0.06657, 0.78407))


def jpeg_bytes(img: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=params.pop("quality", 90), **params)
    return buffer.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.fixture
def fallback(monkeypatch):
    """Run the body with simplejpeg unavailable, as on a platform without its wheel (restored afterwards)."""

    def without_simplejpeg():
        monkeypatch.setitem(imaging._FAST_JPEG, "module", None)

    return without_simplejpeg


def load(path: str) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        return img


def render_both(tmp_path: Path, source: str, fallback, specs=SPECS) -> tuple[list[Image.Image], list[Image.Image]]:
    fast = [load(r.path) for r in render(source, specs, str(tmp_path / "fast"), fsync=False)]
    fallback()
    slow = [load(r.path) for r in render(source, specs, str(tmp_path / "slow"), fsync=False)]
    return fast, slow


def assert_close(fast: list[Image.Image], slow: list[Image.Image], tolerance: float = MEAN_TOLERANCE) -> None:
    for a, b in zip(fast, slow, strict=True):
        assert a.size == b.size and a.mode == b.mode
        difference = ImageStat.Stat(ImageChops.difference(a, b)).mean
        assert max(difference) <= tolerance, difference


def takes_fast_path(source: str, target: tuple[int, int]) -> bool:
    with open(source, "rb") as fp, mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ) as data:
        im = imaging._open_image(fp, "jpeg")
        return imaging._decode_jpeg_scaled(data, im, jpeg_layout(data), target) is not None


# --------------------------------------------------------------------------- choosing the scale


@pytest.mark.parametrize(("size", "target", "eighths"), [
    ((4000, 3000), (2160, 1620), 5),  # 12 MP to the 2160 px display size: 2500 x 1875, 1.16x
    ((4000, 3000), (600, 450), 2),  # ... to the 600 px thumbnail: 1000 x 750
    ((6000, 4000), (2160, 1440), 4),  # 24 MP: 3/8 leaves only 1.04x; 4/8 is also what draft() gives
    ((4600, 3450), (2160, 1620), 4),  # 16 MP: 4/8 leaves 1.06x, but draft() decodes at 1/2 too
    ((3500, 2625), (2160, 1620), 6),  # 9 MP: 5/8 leaves 1.01x
    ((4000, 3000), (4000, 3000), 8),
    ((4000, 3000), (3600, 2700), 8),  # 7/8 is 3500 px: too small
    ((4400, 3300), (2500, 1875), 5),  # 2750 x 2062.5, rounded up as libjpeg does: 1.1x
])
def test_the_smallest_eighth_that_covers_the_largest_output(size, target, eighths):
    assert imaging.jpeg_scale_eighths(size, target) == eighths


# --------------------------------------------------------------------------- same pictures, both paths


@pytest.mark.parametrize("kind", ["baseline 4:2:0", "baseline 4:4:4", "progressive", "grey", "grey progressive",
                                  "restart markers", "baseline 4:2:2"])
def test_fast_path_matches_the_fallback(tmp_path, fallback, kind):
    img = photo_like(*SOURCE, seed=11)
    params: dict = {
        "baseline 4:2:0": {"subsampling": 2},
        "baseline 4:4:4": {"subsampling": 0},
        "progressive": {"progressive": True},
        "grey": {},
        "grey progressive": {"progressive": True},
        "restart markers": {"restart_marker_blocks": 7},
        "baseline 4:2:2": {"subsampling": 1},
    }[kind]
    if kind.startswith("grey"):
        img = img.convert("L")
    source = write(tmp_path, "src.jpg", jpeg_bytes(img, **params))
    assert takes_fast_path(source, (600, 450))
    fast, slow = render_both(tmp_path, source, fallback)
    assert [f.size for f in fast] == [(600, 450), (150, 113)]
    assert fast[0].mode == ("L" if kind.startswith("grey") else "RGB")
    assert_close(fast, slow)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_the_same(tmp_path, fallback, orientation):
    stored = Image.new("RGB", SOURCE)
    for box, colour in zip([(0, 0, 500, 375), (500, 0, 1000, 375), (0, 375, 500, 750), (500, 375, 1000, 750)],
                           [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)], strict=True):
        stored.paste(colour, box)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    source = write(tmp_path, "o.jpg", jpeg_bytes(stored, exif=exif.tobytes()))
    target = (450, 600) if orientation >= 5 else (600, 450)
    fast, slow = render_both(tmp_path, source, fallback)
    assert fast[0].size == target
    assert_close(fast, slow)
    reference = ImageOps.exif_transpose(load(source)).resize(target)
    for x, y in ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)):
        point = (int(target[0] * x), int(target[1] * y))
        assert all(abs(a - b) <= 12 for a, b in zip(fast[0].getpixel(point), reference.getpixel(point), strict=True))


@pytest.mark.parametrize("colorants", [ADOBE_RGB_COLORANTS, DISPLAY_P3_COLORANTS], ids=["Adobe RGB", "Display P3"])
def test_wide_gamut_profiles_are_converted_the_same(tmp_path, fallback, colorants):
    from .test_imaging import rgb_profile

    profile = rgb_profile("Wide gamut (test)", colorants)
    img = photo_like(*SOURCE, seed=12)
    source = write(tmp_path, "wide.jpg", jpeg_bytes(img, icc_profile=profile))
    assert takes_fast_path(source, (600, 450))
    fast, slow = render_both(tmp_path, source, fallback)
    assert_close(fast, slow)
    assert "icc_profile" not in fast[0].info  # converted to sRGB, not tagged
    converted = ImageCms.profileToProfile(img.resize((600, 450), Image.Resampling.LANCZOS),
                                          ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                                          ImageCms.createProfile("sRGB"))
    assert max(ImageStat.Stat(ImageChops.difference(fast[0], converted)).mean) <= 4


def test_thumbnail_sizes_use_the_small_scales(tmp_path, fallback):
    """The thumbnail job needs 600 px at most: a 12 MP JPEG is decoded at 2/8 directly."""
    source = write(tmp_path, "big.jpg", jpeg_bytes(photo_like(4000, 3000, seed=13), quality=85))
    assert takes_fast_path(source, (600, 450))
    specs = [OutputSpec(f"t{n}", n, n, format="png") for n in (600, 300, 150)]
    fast, slow = render_both(tmp_path, source, fallback, specs)
    assert_close(fast, slow)


# --------------------------------------------------------------------------- where the fast path does not apply


def test_cmyk_takes_pillows_path(tmp_path, fallback):
    img = Image.new("CMYK", SOURCE, (255, 0, 0, 0))
    source = write(tmp_path, "cmyk.jpg", jpeg_bytes(img))
    assert not takes_fast_path(source, (600, 450))
    fast, slow = render_both(tmp_path, source, fallback)
    assert_close(fast, slow, 0)
    assert all(abs(a - b) <= 8 for a, b in zip(fast[0].getpixel((300, 200)), (0, 255, 255), strict=True))


@pytest.mark.skipif(shutil.which("jpegtran") is None, reason="needs jpegtran (Debian: libjpeg-turbo-progs)")
def test_arithmetic_coding_takes_pillows_path(tmp_path, fallback):
    baseline = jpeg_bytes(photo_like(*SOURCE, seed=14))
    arithmetic = subprocess.run(["jpegtran", "-arithmetic"], input=baseline, capture_output=True, check=True).stdout
    layout = jpeg_layout(arithmetic)
    assert layout is not None and layout.sof == 0xC9 and not layout.huffman_dct
    source = write(tmp_path, "arith.jpg", arithmetic)
    assert not takes_fast_path(source, (600, 450))
    fast, slow = render_both(tmp_path, source, fallback)
    assert_close(fast, slow, 0)


def test_12_bit_jpeg_is_not_given_to_the_fast_decoder(tmp_path, fallback):
    data = bytearray(jpeg_bytes(photo_like(*SOURCE, seed=15)))
    sof = data.index(b"\xff\xc0")
    data[sof + 1] = 0xC1  # extended sequential, the frame type 12-bit files use
    data[sof + 4] = 12
    layout = jpeg_layout(bytes(data))
    assert layout is not None and layout.precision == 12 and not layout.huffman_dct
    source = write(tmp_path, "deep.jpg", bytes(data))
    outcomes = []
    for use_fallback in (False, True):
        if use_fallback:
            fallback()
        try:
            render(source, SPECS, str(tmp_path / f"out{use_fallback}"), fsync=False)
            outcomes.append("rendered")
        except CorruptImage as exc:  # Pillow's libjpeg decodes 8-bit samples only
            outcomes.append(type(exc).__name__)
    assert outcomes[0] == outcomes[1]


def test_damage_libjpeg_turbo_warns_about_is_left_to_pillow(tmp_path, fallback):
    """Restart markers out of order: libjpeg warns and resynchronises. simplejpeg (strict) refuses such a file, and
    Pillow, which reads it today, decides."""
    data = bytearray(jpeg_bytes(photo_like(*SOURCE, seed=16), restart_marker_blocks=4))
    second = data.index(b"\xff\xd1")
    data[second + 1] = 0xD5
    source = write(tmp_path, "rst.jpg", bytes(data))
    assert not takes_fast_path(source, (600, 450))
    fast, slow = render_both(tmp_path, source, fallback)
    assert_close(fast, slow, 0)


def test_a_truncated_jpeg_is_corrupt_on_both_paths(tmp_path, fallback):
    """photoq never renders half-grey pictures: a JPEG cut short (here: only its EOI marker missing) is corrupt
    whether libjpeg-turbo or Pillow sees it first."""
    source = write(tmp_path, "cut.jpg", jpeg_bytes(photo_like(*SOURCE, seed=17))[:-2])
    with pytest.raises(CorruptImage):
        render(source, SPECS, str(tmp_path / "fast"), fsync=False)
    fallback()
    with pytest.raises(CorruptImage):
        render(source, SPECS, str(tmp_path / "slow"), fsync=False)
    assert not (tmp_path / "fast").exists() and not (tmp_path / "slow").exists()


def test_without_simplejpeg_jpegs_take_pillows_path_and_it_is_logged_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "simplejpeg", None)  # import simplejpeg raises ImportError
    monkeypatch.setattr(imaging, "_FAST_JPEG", {})
    source = write(tmp_path, "src.jpg", jpeg_bytes(photo_like(*SOURCE, seed=18)))
    with caplog.at_level(logging.WARNING, logger="photoq.imaging"):
        first = render(source, SPECS, str(tmp_path / "a"), fsync=False)
        render(source, SPECS, str(tmp_path / "b"), fsync=False)
    warnings = [r for r in caplog.records if "simplejpeg" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert imaging._FAST_JPEG == {"module": None}
    assert (first[0].width, first[0].height) == (600, 450)


# --------------------------------------------------------------------------- scan bombs


def scan_bomb(scans: int) -> bytes:
    """A progressive JPEG whose last (AC refinement) scan is repeated until the file has `scans` scans: tiny, valid
    to libjpeg (it warns and goes on), and each repeat costs a pass over every coefficient block."""
    data = jpeg_bytes(photo_like(64, 48, seed=19).convert("L"), progressive=True)
    last_scan = data.rindex(b"\xff\xda")
    end = data.rindex(b"\xff\xd9")
    normal = jpeg_layout(data)
    assert normal is not None and normal.scans == 6
    return data[:end] + data[last_scan:end] * (scans - normal.scans) + data[end:]


def test_scans_are_counted_from_the_markers():
    img = photo_like(320, 240, seed=20)
    assert jpeg_layout(jpeg_bytes(img)).scans == 1
    assert jpeg_layout(jpeg_bytes(img, progressive=True)).scans == 10
    assert jpeg_layout(jpeg_bytes(img, restart_marker_blocks=2)).scans == 1
    # What follows the first EOI (a phone's depth map or gain map picture) is not part of the image.
    assert jpeg_layout(jpeg_bytes(img) + jpeg_bytes(img, progressive=True)).scans == 1
    assert jpeg_layout(scan_bomb(imaging.MAX_JPEG_SCANS)).scans == imaging.MAX_JPEG_SCANS
    assert jpeg_layout(b"\xff\xd8\xff\xe0\x00\x10JFIF") is None


def test_a_scan_bomb_is_refused_at_upload_and_at_render(tmp_path):
    source = write(tmp_path, "bomb.jpg", scan_bomb(imaging.MAX_JPEG_SCANS + 1))
    with pytest.raises(HostileImage) as caught:
        probe(source, 50_000_000)
    assert "scans" in str(caught.value)
    assert isinstance(caught.value, CorruptImage) and caught.value.code == "corrupt_image"
    with pytest.raises(HostileImage):
        render(source, SPECS, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_the_most_scans_allowed_still_render(tmp_path):
    source = write(tmp_path, "many.jpg", scan_bomb(imaging.MAX_JPEG_SCANS))
    assert probe(source, 50_000_000).width == 64
    [result] = render(source, [OutputSpec("t", 32, 32, format="png")], str(tmp_path / "out"))
    assert (result.width, result.height) == (32, 24)


async def test_a_scan_bomb_upload_gets_400_with_its_reason(client, album):
    async with client.post(f"/api/albums/{album}/photos", data=multipart(("bomb.jpg", scan_bomb(500))),
                           headers=AUTH) as r:
        body = await r.json()
    assert r.status == 400, body
    [part] = body["photos"]
    assert part["status"] == "rejected" and part["error"] == "corrupt_image" and "scans" in part["message"]


# --------------------------------------------------------------------------- the decode time budget


def test_a_decode_over_its_cpu_budget_is_stopped_and_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(imaging, "DECODE_CPU_SECONDS", 1e-6)
    monkeypatch.setattr(imaging, "DECODE_CPU_SECONDS_PER_MEGAPIXEL", 0.0)
    handler = signal.getsignal(signal.SIGVTALRM)
    buffer = io.BytesIO()
    photo_like(2000, 1500, seed=21).save(buffer, "PNG")  # zlib: many calls into the decoder
    source = write(tmp_path, "slow.png", buffer.getvalue())
    with pytest.raises(HostileImage) as caught:
        render(source, SPECS, str(tmp_path / "out"))
    assert "seconds of processing" in str(caught.value)
    assert not (tmp_path / "out").exists()
    assert signal.getsignal(signal.SIGVTALRM) == handler and signal.getitimer(signal.ITIMER_VIRTUAL) == (0.0, 0.0)
