"""Draw the app icons (the favicon's camera) as PNGs with Pillow: `python tools/make_icons.py`.

The PNGs are committed under photoq/static/icons/, so running photoq needs nothing of this; run it again after
changing the drawing. "any" icons have rounded corners; the maskable one fills the square and keeps the camera
inside the central safe zone (80%) that launchers may crop to a circle.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

TEAL = (15, 118, 110, 255)
WHITE = (255, 255, 255, 255)
OUT = Path(__file__).resolve().parent.parent / "photoq" / "static" / "icons"
SUPERSAMPLE = 4


def camera(size: int, maskable: bool) -> Image.Image:
    s = size * SUPERSAMPLE
    image = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    if maskable:
        draw.rectangle((0, 0, s, s), fill=TEAL)
    else:
        draw.rounded_rectangle((0, 0, s - 1, s - 1), radius=s * 7 // 32, fill=TEAL)
    # The favicon's drawing on its 32-unit grid, shrunk to the safe zone for a maskable icon.
    scale = s / 32 * (0.72 if maskable else 1.0)
    offset = (s - 32 * scale) / 2

    def p(x: float, y: float) -> tuple[float, float]:
        return offset + x * scale, offset + y * scale

    width = round(2 * scale)
    draw.line([p(11.5, 9), p(13.1, 6.6), p(18.9, 6.6), p(20.5, 9)], fill=WHITE, width=width, joint="curve")
    draw.rounded_rectangle((*p(5, 9), *p(27, 25.5)), radius=4 * scale, outline=WHITE, width=width)
    cx, cy = p(16, 17.2)
    r = 4.6 * scale
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=WHITE, width=round(2.2 * scale))
    return image.resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for size in (192, 512):
        camera(size, maskable=False).save(OUT / f"icon-{size}.png", optimize=True)
        camera(size, maskable=True).save(OUT / f"maskable-{size}.png", optimize=True)
    camera(180, maskable=True).convert("RGB").save(OUT / "apple-touch-icon.png", optimize=True)


if __name__ == "__main__":
    main()
