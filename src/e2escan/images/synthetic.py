"""Seeded synthetic images that look enough like photographs to exercise perceptual hashes.

Each image is a random composition of the ingredients that drive real
perceptual-hash behaviour: smooth illumination (gradients), mid-frequency
texture (fractal value noise, stripes), edges (filled shapes, lines), small
high-contrast detail (text) and sensor-like noise. Image ``i`` of seed ``s``
depends only on ``(s, i)`` (via ``SeedSequence(s, spawn_key=(i,))``), so
corpora of different sizes share their prefixes and a worker process can
regenerate any image from its index alone.

These are test images, not a substitute for a photo corpus: their hash
statistics differ from those of real photographs (see the hamming-distributions
paper reproduction for how much).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

_WORDS = (
    "harbour", "sunset", "market", "garden", "river", "station", "library", "meadow",
    "bridge", "summit", "festival", "kitchen", "window", "forest", "concert", "beach",
)  # fmt: skip


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator used for image ``index`` of a corpus seeded with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float32)


def _value_noise(rng: np.random.Generator, width: int, height: int, octaves: int) -> np.ndarray:
    """Fractal value noise in [0, 1]: random grids upsampled bicubically and summed (1/f weights)."""
    total = np.zeros((height, width), dtype=np.float32)
    weight_sum = 0.0
    base = int(rng.integers(2, 5))
    for octave in range(octaves):
        cells = base * 2**octave
        grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
        layer = np.asarray(Image.fromarray(grid, mode="F").resize((width, height), Image.Resampling.BICUBIC))
        weight = 0.5**octave
        total += weight * layer
        weight_sum += weight
    total /= weight_sum
    lo, hi = float(total.min()), float(total.max())
    return (total - lo) / (hi - lo + 1e-9)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = rng.integers(0, 3)
    if kind == 0:  # linear gradient at a random angle
        angle = rng.uniform(0, 2 * np.pi)
        t = x * np.cos(angle) + y * np.sin(angle)
    elif kind == 1:  # radial gradient around a random centre
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        t = np.hypot(x - cx, y - cy)
    else:  # landscape-like: smooth noise field
        t = _value_noise(rng, width, height, octaves=3)
    t = (t - t.min()) / (t.max() - t.min() + 1e-9)
    c0, c1 = _random_colour(rng), _random_colour(rng)
    return c0 + t[..., None] * (c1 - c0)


def _texture(rng: np.random.Generator, pixels: np.ndarray) -> np.ndarray:
    height, width = pixels.shape[:2]
    if rng.random() < 0.6:
        field = _value_noise(rng, width, height, octaves=int(rng.integers(3, 6))) - 0.5
    else:
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(6, max(8.0, width / 4))
        field = 0.5 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period)
    strength = rng.uniform(20, 90)
    tint = rng.uniform(0.6, 1.0, size=3).astype(np.float32)
    return pixels + strength * field[..., None] * tint


def _draw_shapes(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    width, height = image.size
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for _ in range(int(rng.integers(2, 9))):
        colour = (*(int(c) for c in rng.integers(0, 256, size=3)), int(rng.integers(120, 256)))
        x0, x1 = sorted(rng.uniform(-0.1, 1.1, size=2) * width)
        y0, y1 = sorted(rng.uniform(-0.1, 1.1, size=2) * height)
        box = (x0, y0, x1 + 2, y1 + 2)
        kind = rng.integers(0, 4)
        if kind == 0:
            draw.ellipse(box, fill=colour)
        elif kind == 1:
            draw.rectangle(box, fill=colour)
        elif kind == 2:
            points = [(float(px), float(py)) for px, py in rng.uniform(0, 1, size=(int(rng.integers(3, 7)), 2)) * (width, height)]
            draw.polygon(points, fill=colour)
        else:
            line_width = max(1, int(rng.integers(1, max(2, width // 25))))
            draw.line(box, fill=colour, width=line_width)
    return Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")


def render_text(text: str, height_px: int, colour: tuple[int, int, int, int]) -> Image.Image:
    """Text on a transparent RGBA tile, ``height_px`` tall.

    Uses PIL's built-in bitmap font scaled with nearest-neighbour resampling,
    so the pixels do not depend on the FreeType version installed.
    """
    font = ImageFont.load_default_imagefont()
    left, top, right, bottom = font.getbbox(text)
    mask = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=font)
    scale = max(1, height_px) / mask.height
    size = (max(1, round(mask.width * scale)), max(1, round(mask.height * scale)))
    mask = mask.resize(size, Image.Resampling.NEAREST)
    alpha = np.asarray(mask, dtype=np.float32) * (colour[3] / 255.0)
    tile = np.zeros((size[1], size[0], 4), dtype=np.uint8)
    tile[..., :3] = colour[:3]
    tile[..., 3] = alpha.astype(np.uint8)
    return Image.fromarray(tile, mode="RGBA")


def _draw_text(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    width, height = image.size
    words = " ".join(str(w) for w in rng.choice(_WORDS, size=int(rng.integers(1, 3))))
    red, green, blue = (int(c) for c in rng.integers(0, 256, size=3))
    tile = render_text(words, int(height * rng.uniform(0.05, 0.12)), (red, green, blue, 255))
    x = int(rng.integers(0, max(1, width - tile.width)))
    y = int(rng.integers(0, max(1, height - tile.height)))
    canvas = image.convert("RGBA")
    canvas.alpha_composite(tile, (x, y))
    return canvas.convert("RGB")


def synthetic_image(rng: np.random.Generator, size: tuple[int, int] = (256, 256)) -> Image.Image:
    """One RGB image of ``size`` (width, height) composed from ``rng``'s draws."""
    width, height = size
    pixels = _texture(rng, _background(rng, width, height))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")
    image = _draw_shapes(rng, image)
    if rng.random() < 0.5:
        image = _draw_text(rng, image)
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.5))))
    sigma = rng.uniform(0, 6)
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, sigma, size=(height, width, 3)).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), mode="RGB")
