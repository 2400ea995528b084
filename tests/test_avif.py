"""AVIF as an output format: configuration, encoding with [processing] quality and avif_speed, and serving."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from photoq import imaging
from photoq.config import ConfigError, Output, load_settings

from .support import AUTH, heic, jpeg, multipart, photo_like, wait_for_photos

AVIF_OUTPUTS = (
    Output("thumb-120", "thumbnail", 120, 120, "avif"),
    Output("thumb-400", "thumbnail", 400, 400, "webp"),
    Output("display-800", "variant", 800, 800, "avif"),
    Output("display-1600", "variant", 1600, 1600, "avif"),
)


def write_config(tmp_path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- configuration


def test_config_accepts_avif_outputs_and_an_avif_speed(tmp_path):
    settings = load_settings(write_config(tmp_path, """
[processing]
avif_speed = 6

[[outputs]]
name = "thumb"
kind = "thumbnail"
width = 200
height = 200
format = "avif"

[[outputs]]
name = "display"
kind = "variant"
width = 1600
height = 1600
format = "avif"
"""), environ={})
    assert [o.format for o in settings.outputs] == ["avif", "avif"]
    assert settings.processing.avif_speed == 6


def test_avif_speed_defaults_to_8():
    assert load_settings(environ={}).processing.avif_speed == 8


@pytest.mark.parametrize("value", ["11", "-1", "\"fast\""])
def test_config_refuses_an_avif_speed_outside_0_to_10(tmp_path, value):
    with pytest.raises(ConfigError, match="processing.avif_speed"):
        load_settings(write_config(tmp_path, f"[processing]\navif_speed = {value}\n"), environ={})


def test_config_still_refuses_unknown_output_formats(tmp_path):
    with pytest.raises(ConfigError, match=r"outputs\[0\].format.*avif"):
        load_settings(write_config(tmp_path, """
[[outputs]]
name = "t"
kind = "thumbnail"
width = 100
height = 100
format = "heic"
"""), environ={})


# --------------------------------------------------------------------------- encoding


def render_avif(tmp_path, source_image: Image.Image, **spec_args) -> tuple[imaging.OutputResult, bytes]:
    source = tmp_path / "source.png"
    source_image.save(source)
    spec = imaging.OutputSpec("o", 200, 200, "avif", **spec_args)
    [result] = imaging.render(str(source), [spec], str(tmp_path / f"out-{len(list(tmp_path.iterdir()))}"))
    with open(result.path, "rb") as f:
        return result, f.read()


def test_render_writes_avif_with_the_right_size_and_name(tmp_path):
    result, data = render_avif(tmp_path, photo_like(400, 300))
    assert result.path.endswith("/o.avif") and (result.width, result.height) == (200, 150)
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "AVIF" and image.size == (200, 150)
    assert "exif" not in image.info and not image.getexif()


def test_render_avif_keeps_alpha(tmp_path):
    source = photo_like(200, 200).convert("RGBA")
    source.putalpha(Image.linear_gradient("L").resize((200, 200)))
    _, data = render_avif(tmp_path, source)
    image = Image.open(io.BytesIO(data)).convert("RGBA")
    assert image.getpixel((100, 2))[3] < 40 and image.getpixel((100, 197))[3] > 215


def test_render_avif_uses_the_quality_and_the_speed(tmp_path):
    source = photo_like(200, 200)
    source = Image.blend(source, Image.effect_noise((200, 200), 50).convert("RGB"), 0.3)
    _, low = render_avif(tmp_path, source, quality=30)
    _, high = render_avif(tmp_path, source, quality=90)
    assert len(low) < len(high)
    _, slow = render_avif(tmp_path, source, quality=60, speed=2)
    _, fast = render_avif(tmp_path, source, quality=60, speed=10)
    assert slow != fast


def test_avif_speed_is_validated_and_part_of_the_spec_fingerprint():
    with pytest.raises(ValueError, match="AVIF speed"):
        imaging.OutputSpec("o", 10, 10, "avif", speed=11)
    fast = imaging.spec_fingerprint(imaging.OutputSpec("o", 10, 10, "avif", speed=9))
    default = imaging.spec_fingerprint(imaging.OutputSpec("o", 10, 10, "avif"))
    assert fast != default and default == "avif 10x10 q80 s8"
    assert "s8" not in imaging.spec_fingerprint(imaging.OutputSpec("o", 10, 10, "webp"))


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize(("name", "data", "size"), [
    ("a.jpg", jpeg(1200, 900, seed=4), (800, 600)),
    ("b.heic", heic(width=900, height=1200, seed=5), (600, 800)),
])
async def test_avif_outputs_are_made_served_as_avif_and_give_a_thumbhash(start_client, name, data, size):
    client = await start_client(outputs=AVIF_OUTPUTS)
    async with client.post("/api/albums", json={"name": "AVIF"}, headers=AUTH) as response:
        album = (await response.json())["id"]
    async with client.post(f"/api/albums/{album}/photos", data=multipart((name, data)), headers=AUTH) as response:
        assert response.status == 202
        photo_id = (await response.json())["photos"][0]["id"]
    latest = await wait_for_photos(client, [photo_id])
    assert latest[photo_id]["thumbhash"]  # made from the smallest thumbnail, an AVIF here

    for variant, expected_size, content_type in [
        ("display-800", size, "image/avif"),
        ("thumb-120", (size[0] * 120 // max(size), size[1] * 120 // max(size)), "image/avif"),
        ("thumb-400", (size[0] * 400 // max(size), size[1] * 400 // max(size)), "image/webp"),
    ]:
        async with client.get(f"/api/photos/{photo_id}/file?variant={variant}", headers=AUTH) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == content_type
            assert "X-Photoq-Fallback" not in response.headers
            image = Image.open(io.BytesIO(await response.read()))
            image.load()
        assert image.format == content_type.split("/")[1].upper()
        assert image.size == expected_size, variant
