"""Photographic-ish test images, made here (nothing is downloaded).

A "dead leaves" scene: thousands of overlapping discs with a power-law size distribution (the standard synthetic
model of natural-image statistics, used by camera texture charts), modulated by a 1/f luminance texture, softened
by a lens-like blur and given sensor grain. At JPEG q90 a 12 MP scene is ~3.3 MB, like a phone photo; unlike a flat
gradient it has detail at every scale, so resampling filters and encoders are exercised as by real photos.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ORIENTATION_TAG = 0x0112


def _pink_noise(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-variance noise with a 1/f amplitude spectrum, made at half size and upscaled."""
    w, h = max(2, width // 2), max(2, height // 2)
    fy = np.fft.fftfreq(h).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(w).astype(np.float32)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1
    shape = (h, w // 2 + 1)
    spectrum = (rng.standard_normal(shape, dtype=np.float32) + 1j * rng.standard_normal(shape, dtype=np.float32)) / f
    spectrum[0, 0] = 0
    noise = np.fft.irfft2(spectrum, s=(h, w)).astype(np.float32)
    noise = (noise - noise.mean()) / (noise.std() or 1)
    return np.asarray(Image.fromarray(noise, "F").resize((width, height), Image.Resampling.BILINEAR))


def scene(width: int, height: int, seed: int = 0, leaves: int = 4000, texture: float = 0.3,
          grain: float = 5.0) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(img)
    rmin, rmax = max(width, height) / 400, max(width, height) / 6
    for r in rmin * rmax / (rmax - rng.random(leaves) * (rmax - rmin)):  # p(r) ~ 1/r^2
        x, y = rng.random() * width, rng.random() * height
        colour = tuple(int(c) for c in rng.integers(50, 205, 3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    pixels = np.asarray(img, np.float32)
    pixels *= (1 + texture * _pink_noise(width, height, rng))[..., None]
    pixels += (grain * rng.standard_normal((height, width), dtype=np.float32))[..., None]  # luminance grain
    pixels += rng.standard_normal((height, width, 3), dtype=np.float32) * (grain / 2)  # chroma grain
    out = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return out.filter(ImageFilter.GaussianBlur(0.7))


def jpeg_bytes(img: Image.Image, quality: int = 90, orientation: int | None = None, progressive: bool = False) -> bytes:
    """Encode as JPEG (progressive: libjpeg's standard 10-scan progression, as phones' and web exports use). With
    `orientation` 6 the pixels are stored rotated, as a phone held upright stores them, so that the displayed image is
    `img` again."""
    buffer = io.BytesIO()
    if orientation is None:
        img.save(buffer, "JPEG", quality=quality, progressive=progressive)
    else:
        if orientation != 6:
            raise ValueError("only orientation 6 is made here")
        exif = Image.Exif()
        exif[ORIENTATION_TAG] = orientation
        img.transpose(Image.Transpose.ROTATE_90).save(buffer, "JPEG", quality=quality, exif=exif.tobytes(),
                                                      progressive=progressive)
    return buffer.getvalue()


def unique_copy(data: bytes, n: int) -> bytes:
    """The same JPEG with a comment segment naming `n`: identical pixels, a different SHA-256 (photoq dedups)."""
    assert data[:2] == b"\xff\xd8"
    text = f"photoq bench copy {n}".encode()
    return data[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + data[2:]
