"""Procedural drawing primitives for the embedded mini benchmark.

Everything is drawn at twice the output size and downsampled with a box filter, which gives
anti-aliased 32 px images cheaply. Every function takes an explicit ``random.Random`` so that a
sample is a pure function of (seed, dataset, index): the benchmark regenerates bit-identically.
No library draws these toy worlds, so this is hand-written PIL code.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

IMAGE_SIZE = 32
SUPERSAMPLE = 2
CANVAS = IMAGE_SIZE * SUPERSAMPLE

RGB = tuple[int, int, int]

# Colours the pretraining pool names ("basic" vocabulary the base model learns).
BASIC_COLOURS: dict[str, RGB] = {
    "red": (215, 35, 35),
    "green": (40, 165, 50),
    "blue": (35, 70, 220),
    "yellow": (240, 215, 35),
    "purple": (135, 45, 175),
    "orange": (245, 135, 25),
    "white": (240, 240, 240),
    "black": (20, 20, 20),
}
BACKGROUNDS: dict[str, RGB] = {"gray": (128, 128, 128), "white": (235, 235, 235), "black": (25, 25, 25)}

# Fine-grained colour names that only the stream brings (SWATCHES).
FINE_COLOURS: dict[str, RGB] = {
    "crimson": (220, 20, 60),
    "maroon": (120, 10, 20),
    "teal": (0, 128, 128),
    "navy": (10, 20, 110),
    "olive": (128, 128, 0),
    "coral": (255, 127, 80),
    "salmon": (250, 150, 130),
    "gold": (230, 190, 30),
    "beige": (225, 215, 180),
    "lavender": (190, 170, 240),
    "indigo": (75, 0, 130),
    "turquoise": (64, 224, 208),
    "magenta": (230, 0, 200),
    "khaki": (190, 180, 110),
}

POSITIONS: dict[str, tuple[float, float]] = {
    "on the left": (0.22, 0.5),
    "on the right": (0.78, 0.5),
    "at the top": (0.5, 0.22),
    "at the bottom": (0.5, 0.78),
    "in the center": (0.5, 0.5),
}
SIZES: dict[str, float] = {"small": 0.13, "large": 0.24}


def jitter(colour: RGB, rng: random.Random, amount: int = 18) -> RGB:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in colour)  # type: ignore[return-value]


def new_canvas(background: RGB) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (CANVAS, CANVAS), background)
    return image, ImageDraw.Draw(image)


def finish(image: Image.Image, rng: random.Random | None = None, noise: int = 0) -> Image.Image:
    """Downsample to the output size; optional per-pixel noise (held-out rendering styles)."""
    small = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BOX)
    if noise and rng is not None:
        pixels = np.asarray(small, dtype=np.int16)
        jitter = np.random.default_rng(rng.getrandbits(64)).integers(-noise, noise + 1, pixels.shape)
        small = Image.fromarray(np.clip(pixels + jitter, 0, 255).astype(np.uint8))
    return small


def _rotate(points: Sequence[tuple[float, float]], cx: float, cy: float, angle: float) -> list[tuple[float, float]]:
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in points]


def _regular(n: int, r: float, phase: float = -math.pi / 2) -> list[tuple[float, float]]:
    return [(r * math.cos(phase + 2 * math.pi * i / n), r * math.sin(phase + 2 * math.pi * i / n)) for i in range(n)]


def shape_outline(kind: str, r: float) -> list[tuple[float, float]]:
    """Polygon (centred at 0,0, radius ~r) for every polygonal shape the benchmark draws."""
    if kind == "square":
        return [(-r * 0.85, -r * 0.85), (r * 0.85, -r * 0.85), (r * 0.85, r * 0.85), (-r * 0.85, r * 0.85)]
    if kind == "triangle":
        return _regular(3, r * 1.1, -math.pi / 2)
    if kind == "diamond":
        return [(0, -r * 1.1), (r * 0.75, 0), (0, r * 1.1), (-r * 0.75, 0)]
    if kind == "cross":
        a, b = r * 0.35, r
        return [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a)]
    if kind == "hexagon":
        return _regular(6, r, 0)
    if kind == "pentagon":
        return _regular(5, r)
    if kind == "star":
        outer, inner = _regular(5, r * 1.15), _regular(5, r * 0.45, -math.pi / 2 + math.pi / 5)
        return [p for pair in zip(outer, inner) for p in pair]
    if kind == "heart":
        pts = []
        for i in range(40):
            t = 2 * math.pi * i / 40
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            pts.append((x * r / 16, y * r / 16))
        return pts
    if kind == "ellipse":
        return [(r * 1.15 * math.cos(2 * math.pi * i / 36), r * 0.55 * math.sin(2 * math.pi * i / 36)) for i in range(36)]
    if kind == "arrow":
        return [(-r, -r * 0.3), (r * 0.2, -r * 0.3), (r * 0.2, -r * 0.75), (r, 0), (r * 0.2, r * 0.75), (r * 0.2, r * 0.3), (-r, r * 0.3)]
    if kind == "trapezoid":
        return [(-r * 0.5, -r * 0.6), (r * 0.5, -r * 0.6), (r, r * 0.6), (-r, r * 0.6)]
    if kind == "crescent":
        outer = [(r * math.cos(a), r * math.sin(a)) for a in [math.pi / 2 + math.pi * i / 20 for i in range(21)]]
        inner = [(r * 0.35 * math.cos(a), r * math.sin(a)) for a in [3 * math.pi / 2 - math.pi * i / 20 for i in range(21)]]
        return outer + inner
    raise ValueError(f"unknown shape {kind!r}")


def draw_shape(
    draw: ImageDraw.ImageDraw,
    kind: str,
    cx: float,
    cy: float,
    r: float,
    colour: RGB,
    angle: float = 0.0,
    outline_only: bool = False,
) -> None:
    """Draw one shape in canvas coordinates (pixels of the supersampled canvas)."""
    line = max(2, int(r * 0.25))
    if kind == "circle":
        box = (cx - r, cy - r, cx + r, cy + r)
        if outline_only:
            draw.ellipse(box, outline=colour, width=line)
        else:
            draw.ellipse(box, fill=colour)
        return
    if kind == "ring":
        box = (cx - r, cy - r, cx + r, cy + r)
        draw.ellipse(box, outline=colour, width=max(3, int(r * 0.4)) if not outline_only else line)
        return
    points = _rotate(shape_outline(kind, r), cx, cy, angle)
    if outline_only:
        draw.line(points + [points[0]], fill=colour, width=line, joint="curve")
    else:
        draw.polygon(points, fill=colour)


_FONT_CACHE: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled scalable font (no system fonts needed)."""
    if size not in _FONT_CACHE:
        _FONT_CACHE[size] = ImageFont.load_default(size=size)
    return _FONT_CACHE[size]


def draw_glyph(text: str, colour: RGB, background: RGB, rng: random.Random) -> Image.Image:
    """A letter at a random size, offset and rotation."""
    size = rng.randint(34, 46)
    glyph = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 0))
    gdraw = ImageDraw.Draw(glyph)
    left, top, right, bottom = gdraw.textbbox((0, 0), text, font=font(size))
    x = (CANVAS - (right - left)) / 2 - left + rng.uniform(-6, 6)
    y = (CANVAS - (bottom - top)) / 2 - top + rng.uniform(-6, 6)
    gdraw.text((x, y), text, fill=colour + (255,), font=font(size))
    glyph = glyph.rotate(rng.uniform(-20, 20), resample=Image.BICUBIC)
    image = Image.new("RGB", (CANVAS, CANVAS), background)
    image.paste(glyph, (0, 0), glyph)
    return image


def vertical_gradient(top: RGB, bottom: RGB, y0: int = 0, y1: int = CANVAS) -> Image.Image:
    image = Image.new("RGB", (CANVAS, CANVAS), top)
    draw = ImageDraw.Draw(image)
    for y in range(y0, y1):
        t = (y - y0) / max(1, y1 - y0 - 1)
        draw.line([(0, y), (CANVAS, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    return image
