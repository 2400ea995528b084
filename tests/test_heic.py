"""HEIC (and AVIF) input: sniffing by ftyp brand, header-only probing, orientation, EXIF, colour, bad files; unit tests
on real files made by libheif's and libavif's encoders, and end to end through the upload endpoint and the workers."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from functools import cache

import pillow_heif
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image, ImageCms, TiffImagePlugin, UnidentifiedImageError

from photoq import imaging
from photoq.web.keys import STORAGE

from .support import AUTH, REPO_ROOT, heic, jpeg, multipart, wait_for_photos
from .test_imaging import (  # noqa: F401 (worker_globals is a fixture)
    BLUE,
    DISPLAY_P3_COLORANTS,
    GREEN,
    RED,
    YELLOW,
    orientation_exif,
    quadrant_colours,
    quadrants,
    rgb_profile,
    worker_globals,
    write,
)

UPRIGHT = [RED, GREEN, BLUE, YELLOW]  # top-left, top-right, bottom-left, bottom-right
MAX_PIXELS = 50_000_000


# --------------------------------------------------------------------------- helpers


def looks_like(actual, expected, tolerance: int = 40) -> bool:
    return all(abs(a - e) <= tolerance for colour, want in zip(actual, expected) for a, e in zip(colour, want))


def sideways_heic(width: int = 320, height: int = 480) -> bytes:
    """What an iPhone held upright writes: the pixels stored turned a quarter anticlockwise, an irot transform that
    turns them back, and an EXIF Orientation 6 saying the same again. Upright it shows UPRIGHT's quadrants."""
    stored = quadrants((width, height)).transpose(Image.Transpose.ROTATE_90)
    data = heic(stored, exif=orientation_exif(6), quality=90)
    assert b"\x00\x00\x00\x09irot\x03" in data  # a real irot box: 3 quarter turns anticlockwise
    primary = pillow_heif.open_heif(io.BytesIO(data))
    exif = Image.Exif()
    exif.load(primary.info["exif"])
    assert exif[ExifTags.Base.Orientation] == 6
    return data


def sideways_avif(width: int = 320, height: int = 480) -> bytes:
    """The same for AVIF: Pillow's encoder turns the EXIF orientation into an irot transform."""
    stored = quadrants((width, height)).transpose(Image.Transpose.ROTATE_90)
    buffer = io.BytesIO()
    stored.save(buffer, "AVIF", quality=90, exif=orientation_exif(6).tobytes())
    assert b"irot\x03" in buffer.getvalue()
    return buffer.getvalue()


def patch_ispe(data: bytes, width: int, height: int) -> bytes:
    """The same file with the primary image's declared size (its ispe property) replaced."""
    at = data.index(b"ispe") + 8  # after the type and the version/flags word
    return data[:at] + struct.pack(">II", width, height) + data[at + 8:]


def render_one(tmp_path, source: str, spec: imaging.OutputSpec) -> Image.Image:
    [result] = imaging.render(source, [spec], str(tmp_path / "out"))
    with Image.open(result.path) as image:
        image.load()
        return image


def camera_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Apple"
    exif[ExifTags.Base.Model] = "iPhone 15 Pro"
    details = exif.get_ifd(ExifTags.IFD.Exif)
    details[ExifTags.Base.DateTimeOriginal] = "2024:07:14 18:30:05"
    details[ExifTags.Base.OffsetTimeOriginal] = "+02:00"
    details[ExifTags.Base.ExposureTime] = TiffImagePlugin.IFDRational(1, 120)
    details[ExifTags.Base.FNumber] = TiffImagePlugin.IFDRational(178, 100)
    details[ExifTags.Base.ISOSpeedRatings] = 64
    details[ExifTags.Base.FocalLength] = TiffImagePlugin.IFDRational(6765, 1000)
    details[ExifTags.Base.LensModel] = "iPhone 15 Pro back triple camera 6.765mm f/1.78"
    return exif


def jpeg_with(exif: Image.Exif) -> bytes:
    buffer = io.BytesIO()
    quadrants((64, 48)).save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def with_zeroed_image_data(data: bytes) -> bytes:
    """The same file with everything after the mdat box's type zeroed: an intact header over data that does not
    decode."""
    start = data.index(b"mdat") + 4
    return data[:start] + bytes(len(data) - start)


# --------------------------------------------------------------------------- sniff


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\0\0\0\0" + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body


@pytest.mark.parametrize(("head", "expected"), [
    (ftyp(b"heic", b"mif1", b"heic"), "heic"),  # an iPhone
    (ftyp(b"heix", b"mif1", b"heix"), "heic"),
    (ftyp(b"mif1", b"heic"), "heic"),
    (ftyp(b"mif1", b"miaf"), "heic"),  # structural brands only: HEIF
    (ftyp(b"msf1", b"hevc"), "heic"),
    (ftyp(b"avif", b"mif1", b"miaf"), "avif"),
    (ftyp(b"avis", b"msf1"), "avif"),
    (ftyp(b"mif1", b"avif", b"miaf"), "avif"),  # mif1 is AVIF's structural brand too
    (ftyp(b"isom", b"iso2", b"mp41"), None),  # an MP4 video
    (ftyp(b"qt  "), None),  # a QuickTime movie (e.g. a Live Photo's video)
    (ftyp(b"crx ", b"isom"), None),  # a Canon raw file
    (b"\x00\x00\x00\x18ftyp", None),  # cut off before the brand
])
def test_sniff_tells_heic_from_avif_by_brand(head, expected):
    assert imaging.sniff(head[:imaging.SNIFF_BYTES]) == expected


def test_real_files_sniff_and_have_their_own_extension_and_type():
    assert imaging.sniff(heic(width=16, height=16)[:imaging.SNIFF_BYTES]) == "heic"
    assert imaging.sniff(sideways_avif(16, 16)[:imaging.SNIFF_BYTES]) == "avif"
    assert (imaging.EXTENSIONS["heic"], imaging.FORMATS["heic"]) == (".heic", "image/heic")
    assert (imaging.EXTENSIONS["avif"], imaging.FORMATS["avif"]) == (".avif", "image/avif")


# --------------------------------------------------------------------------- probe


def test_probe_heic_without_rotation(tmp_path):
    result = imaging.probe(write(tmp_path, "a.heic", heic(width=200, height=120)), MAX_PIXELS)
    assert (result.format, result.content_type) == ("heic", "image/heic")
    assert (result.width, result.height) == (200, 120)  # the encoder pads to 208 x 128 and crops back with clap
    assert result.exif == {} and result.taken_at is None


def test_probe_rotated_heic_reports_the_displayed_size_and_keeps_the_exif_tag(tmp_path):
    result = imaging.probe(write(tmp_path, "r.heic", sideways_heic(320, 480)), MAX_PIXELS)
    assert (result.width, result.height) == (320, 480)  # stored 480 x 320, turned by irot
    assert result.orientation == 1  # nothing left for photoq to turn: libheif applies irot
    assert result.exif["orientation"] == 6  # the camera's fact, kept as for a JPEG


def test_probe_heic_exif_is_kept_exactly_as_for_a_jpeg(tmp_path):
    exif = camera_exif()
    from_heic = imaging.probe(write(tmp_path, "a.heic", heic(width=64, height=48, exif=exif)), MAX_PIXELS)
    from_jpeg = imaging.probe(write(tmp_path, "a.jpg", jpeg_with(exif)), MAX_PIXELS)
    assert from_heic.exif == from_jpeg.exif
    assert from_heic.exif["model"] == "iPhone 15 Pro" and from_heic.exif["iso"] == 64
    assert from_heic.taken_at == from_jpeg.taken_at == "2024-07-14T16:30:05Z"


def test_probe_multi_image_heic_describes_the_primary_image(tmp_path):
    other = pillow_heif.from_pillow(Image.new("RGB", (64, 48), RED))
    other.add_from_pillow(Image.new("RGB", (40, 80), BLUE))
    buffer = io.BytesIO()
    other.save(buffer, primary_index=1, quality=90)
    source = write(tmp_path, "two.heic", buffer.getvalue())
    result = imaging.probe(source, MAX_PIXELS)
    assert (result.width, result.height) == (40, 80)
    image = render_one(tmp_path, source, imaging.OutputSpec("o", 40, 80, "png"))
    assert image.size == (40, 80) and looks_like([image.getpixel((20, 40))], [BLUE])


def test_grid_heic_like_an_iphones_is_probed_and_rendered(tmp_path):
    data = heic(quadrants((1000, 700)), quality=90, tile_size=256)  # iPhones write 512 px tiles
    assert b"grid" in data
    source = write(tmp_path, "grid.heic", data)
    result = imaging.probe(source, MAX_PIXELS)
    assert (result.width, result.height) == (1000, 700)
    image = render_one(tmp_path, source, imaging.OutputSpec("o", 500, 500, "png"))
    assert image.size == (500, 350) and looks_like(quadrant_colours(image), UPRIGHT)


def test_probe_refuses_a_grid_whose_tiles_dwarf_the_image(tmp_path):
    data = heic(quadrants((1000, 700)), quality=50, tile_size=256)  # 12 tiles of 256 x 256: 786,432 pixels
    grid_size = struct.pack(">II", 1000, 700)
    assert data.count(grid_size) == 1
    small_grid = data.replace(grid_size, struct.pack(">II", 100, 100))  # the grid now claims 10,000 pixels
    with pytest.raises(imaging.TooManyPixels, match="tiles hold 786,432 pixels"):
        imaging.probe(write(tmp_path, "tiles.heic", small_grid), 100_000)
    assert imaging.probe(write(tmp_path, "fine.heic", data), 1_000_000).width == 1000


@pytest.mark.parametrize("fmt", ["heic", "avif"])
def test_probe_refuses_a_bomb_from_its_header(tmp_path, fmt):
    small = heic(width=64, height=64) if fmt == "heic" else sideways_avif(64, 64)
    source = write(tmp_path, f"bomb.{fmt}", patch_ispe(small, 30_000, 30_000))
    with pytest.raises(imaging.TooManyPixels, match="30,000 × 30,000"):
        imaging.probe(source, MAX_PIXELS)


def test_probe_never_loads_libheif_or_libavif_into_the_web_process(tmp_path):
    heic_path = write(tmp_path, "r.heic", sideways_heic(64, 96))
    avif_path = write(tmp_path, "r.avif", sideways_avif(64, 96))
    script = (
        "import json, sys\n"
        "from photoq import imaging\n"
        "sizes = [(p.width, p.height) for p in (imaging.probe(path, 10**6) for path in sys.argv[1:])]\n"
        "loaded = sorted(m for m in sys.modules if m in ('pillow_heif', '_pillow_heif', 'PIL._avif'))\n"
        "print(json.dumps([sizes, loaded]))\n"
    )
    run = subprocess.run([sys.executable, "-c", script, heic_path, avif_path], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True)
    sizes, loaded = json.loads(run.stdout)
    assert sizes == [[64, 96], [64, 96]]
    assert loaded == []


def test_probe_truncated_heic_is_corrupt(tmp_path):
    data = heic(width=256, height=192)
    with pytest.raises(imaging.CorruptImage, match="cut off"):
        imaging.probe(write(tmp_path, "cut.heic", data[: len(data) * 2 // 3]), MAX_PIXELS)


@pytest.mark.parametrize("cut", [12, 40, 200])
def test_probe_heic_cut_inside_its_header_is_corrupt(tmp_path, cut):
    with pytest.raises(imaging.CorruptImage):
        imaging.probe(write(tmp_path, "cut.heic", heic(width=64, height=64)[:cut]), MAX_PIXELS)


def test_probe_heic_without_a_still_image_is_unsupported(tmp_path):
    sequence_only = ftyp(b"msf1", b"hevc") + struct.pack(">I", 16) + b"mdat" + bytes(8)
    with pytest.raises(imaging.UnsupportedImage, match="no still image"):
        imaging.probe(write(tmp_path, "seq.heic", sequence_only), MAX_PIXELS)


def test_probe_heic_whose_image_photoq_cannot_decode_is_unsupported(tmp_path):
    data = heic(width=64, height=64)
    at = data.index(b"infe") + 8 + 4  # the item type, after version/flags, item id and protection index
    assert data[at:at + 4] == b"hvc1"
    with pytest.raises(imaging.UnsupportedImage, match="'av01'"):
        imaging.probe(write(tmp_path, "av1.heic", data[:at] + b"av01" + data[at + 4:]), MAX_PIXELS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_heic_headers_only_raise_image_errors(tmp_path, data):
    original = _fuzz_seed()
    header_end = original.index(b"mdat")
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 6), label="mutations")):
        mutated[data.draw(st.integers(0, header_end), label="position")] = data.draw(st.integers(0, 255), label="byte")
    path = write(tmp_path, "fuzz.heic", bytes(mutated[:data.draw(st.integers(0, len(mutated)), label="length")]))
    try:
        imaging.probe(path, MAX_PIXELS)
    except imaging.ImageError:
        pass


@cache
def _fuzz_seed() -> bytes:
    return heic(quadrants((600, 400)), quality=30, tile_size=256, exif=camera_exif())


# --------------------------------------------------------------------------- render


def test_render_rotated_heic_turns_it_once(tmp_path):
    source = write(tmp_path, "r.heic", sideways_heic(320, 480))
    image = render_one(tmp_path, source, imaging.OutputSpec("o", 160, 240, "png"))
    assert image.size == (160, 240)
    assert looks_like(quadrant_colours(image), UPRIGHT)


def test_render_heic_without_rotation_keeps_it(tmp_path):
    source = write(tmp_path, "a.heic", heic(quadrants((300, 200)), quality=90))
    image = render_one(tmp_path, source, imaging.OutputSpec("o", 150, 150, "png"))
    assert image.size == (150, 100)
    assert looks_like(quadrant_colours(image), UPRIGHT)


def test_render_rotated_avif_turns_it_once(tmp_path):
    source = write(tmp_path, "r.avif", sideways_avif(320, 480))
    result = imaging.probe(source, MAX_PIXELS)
    assert (result.width, result.height) == (320, 480)
    image = render_one(tmp_path, source, imaging.OutputSpec("o", 160, 240, "png"))
    assert image.size == (160, 240)
    assert looks_like(quadrant_colours(image), UPRIGHT)


def test_render_heic_converts_display_p3_to_srgb(tmp_path):
    p3 = rgb_profile("Display P3 (test)", DISPLAY_P3_COLORANTS)
    colour = (40, 200, 60)
    source = write(tmp_path, "p3.heic", heic(Image.new("RGB", (64, 64), colour), icc_profile=p3, quality=95))
    image = render_one(tmp_path, source, imaging.OutputSpec("o", 32, 32, "png"))
    assert "icc_profile" not in image.info
    expected = ImageCms.profileToProfile(
        Image.new("RGB", (1, 1), colour), ImageCms.ImageCmsProfile(io.BytesIO(p3)), ImageCms.createProfile("sRGB"),
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
    ).getpixel((0, 0))
    assert looks_like([image.getpixel((16, 16))], [expected], tolerance=4)
    assert not looks_like([image.getpixel((16, 16))], [colour], tolerance=10)


def test_render_heic_outputs_carry_no_metadata(tmp_path):
    source = write(tmp_path, "a.heic", heic(width=64, height=48, exif=camera_exif()))
    [result] = imaging.render(source, [imaging.OutputSpec("o", 64, 64, "jpeg")], str(tmp_path / "out"))
    with Image.open(result.path) as image:
        assert "exif" not in image.info and not image.getexif()


def test_render_heic_with_damaged_image_data_is_corrupt(tmp_path):
    source = write(tmp_path, "zero.heic", with_zeroed_image_data(heic(width=256, height=192)))
    imaging.probe(source, MAX_PIXELS)  # the header is intact
    with pytest.raises(imaging.CorruptImage, match="damaged"):
        imaging.render(source, [imaging.OutputSpec("o", 64, 64)], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_render_refuses_a_heic_bomb_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # the image process's limit, as init_worker sets it
    source = write(tmp_path, "big.heic", heic(width=200, height=200))
    with pytest.raises(imaging.TooManyPixels):
        imaging.render(source, [imaging.OutputSpec("o", 64, 64)], str(tmp_path / "out"))


@pytest.mark.usefixtures("worker_globals")
def test_image_processes_decode_heic_on_one_thread_and_only_the_primary_image():
    imaging.init_worker(MAX_PIXELS)
    options = pillow_heif.options
    assert options.DECODE_THREADS == 1
    assert not (options.THUMBNAILS or options.DEPTH_IMAGES or options.AUX_IMAGES)


def test_decoding_heic_registers_nothing_with_image_open(tmp_path):
    heic_path = write(tmp_path, "a.heic", heic(width=32, height=32))
    render_one(tmp_path, heic_path, imaging.OutputSpec("o", 16, 16, "png"))
    with pytest.raises(UnidentifiedImageError):
        Image.open(heic_path)


# --------------------------------------------------------------------------- end to end


async def upload(client, album: int, *files: tuple[str, bytes]):
    async with client.post(f"/api/albums/{album}/photos", data=multipart(*files), headers=AUTH) as response:
        return response.status, await response.json()


async def new_album(client) -> int:
    async with client.post("/api/albums", json={"name": "Phone"}, headers=AUTH) as response:
        return (await response.json())["id"]


def originals(client) -> list[str]:
    return sorted(p.name for p in client.app[STORAGE].originals.rglob("*") if p.is_file())


@pytest.mark.parametrize(("name", "make", "content_type"), [
    ("IMG_0001.HEIC", sideways_heic, "image/heic"),
    ("IMG_0002.avif", sideways_avif, "image/avif"),
])
async def test_rotated_photo_uploads_and_every_output_is_upright(client, album, name, make, content_type):
    data = make(320, 480)
    status, body = await upload(client, album, (name, data))
    assert status == 202 and body["accepted"] == 1
    photo_id = body["photos"][0]["id"]
    await wait_for_photos(client, [photo_id])

    async with client.get(f"/api/photos/{photo_id}", headers=AUTH) as response:
        photo = await response.json()
    assert photo["processing_status"] == "complete"
    assert (photo["width"], photo["height"]) == (320, 480)  # as displayed
    assert photo["content_type"] == content_type
    assert photo["thumbhash"]
    for output in ("thumb-150", "thumb-600", "display-1080x1920", "display-1038x1278"):
        async with client.get(photo["urls"][output], headers=AUTH) as response:
            assert response.status == 200 and response.headers["Content-Type"] == "image/webp"
            image = Image.open(io.BytesIO(await response.read()))
            image.load()
        assert image.height * 2 == image.width * 3, output  # portrait 2:3, as displayed
        assert looks_like(quadrant_colours(image), UPRIGHT), output

    async with client.get(photo["urls"]["original"], headers=AUTH) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == content_type
        assert await response.read() == data
    original = client.app[STORAGE].original_path(photo["sha256"], "heic" if content_type == "image/heic" else "avif")
    assert original.is_file() and original.suffix == (".heic" if content_type == "image/heic" else ".avif")


async def test_heic_exif_reaches_the_photo_like_a_jpegs(client, album):
    status, body = await upload(client, album, ("a.heic", heic(width=64, height=48, exif=camera_exif())),
                                ("a.jpg", jpeg_with(camera_exif())))
    assert status == 202
    photos = []
    for entry in body["photos"]:
        async with client.get(f"/api/photos/{entry['id']}", headers=AUTH) as response:
            photos.append(await response.json())
    from_heic, from_jpeg = photos
    assert from_heic["taken_at"] == from_jpeg["taken_at"] == "2024-07-14T16:30:05Z"
    assert from_heic["exif"] == from_jpeg["exif"]
    assert from_heic["exif"]["make"] == "Apple"


async def test_truncated_heic_is_refused_at_upload_and_nothing_is_kept(client, album):
    data = heic(width=256, height=192)
    status, body = await upload(client, album, ("cut.heic", data[: len(data) // 2]), ("ok.jpg", jpeg(seed=3)))
    assert status == 202 and body["accepted"] == 1 and body["rejected"] == 1
    [rejected] = [p for p in body["photos"] if p["filename"] == "cut.heic"]
    assert rejected["status"] == "rejected" and rejected["error"] == "corrupt_image"
    assert "cut off" in rejected["message"]
    assert list(client.app[STORAGE].tmp.iterdir()) == []
    assert [name.rsplit(".", 1)[1] for name in originals(client)] == ["jpg"]


async def test_heic_bomb_is_refused_with_413_from_its_header(client, album):
    bomb = patch_ispe(heic(width=64, height=64), 20_000, 20_000)  # 400 MP, over the default 150 MP
    status, body = await upload(client, album, ("bomb.heic", bomb))
    assert status == 413
    entry = body["photos"][0]
    assert entry["error"] == "too_many_pixels" and "20,000 × 20,000" in entry["message"]
    assert list(client.app[STORAGE].tmp.iterdir()) == []
    assert originals(client) == []


async def test_heic_with_damaged_image_data_fails_with_a_readable_message(start_client):
    client = await start_client(queue={"max_attempts": 1})
    album = await new_album(client)
    status, body = await upload(client, album, ("zero.heic", with_zeroed_image_data(heic(width=256, height=192))))
    assert status == 202
    photo_id = body["photos"][0]["id"]
    latest = await wait_for_photos(client, [photo_id], statuses=("failed",))
    assert "damaged" in latest[photo_id]["error"]
    variants = client.app[STORAGE].variant_dir(photo_id)
    assert not variants.exists() or list(variants.iterdir()) == []


async def test_multi_image_heic_uses_the_primary_image(client, album):
    two = pillow_heif.from_pillow(Image.new("RGB", (64, 48), RED))
    two.add_from_pillow(quadrants((40, 80)))
    buffer = io.BytesIO()
    two.save(buffer, primary_index=1, quality=90)
    status, body = await upload(client, album, ("burst.heic", buffer.getvalue()))
    assert status == 202
    photo_id = body["photos"][0]["id"]
    await wait_for_photos(client, [photo_id])
    async with client.get(f"/api/photos/{photo_id}", headers=AUTH) as response:
        photo = await response.json()
    assert (photo["width"], photo["height"]) == (40, 80)
    async with client.get(photo["urls"]["display-1080x1920"], headers=AUTH) as response:
        image = Image.open(io.BytesIO(await response.read()))
        image.load()
    assert image.size == (40, 80) and looks_like(quadrant_colours(image), UPRIGHT)
