"""The mini benchmark's datasets: what each one draws, its classes and its captions.

The design mirrors FoMo-in-Flux at toy scale:
- the *pretraining pool* shows basic shapes in basic colours at named positions and sizes, with
  compositional captions; the shipped base CLIP learnt exactly this;
- *evaluation-only* datasets test those pretraining concepts in held-out renderings (noise,
  outlines) and held-out colour x shape combinations, plus a compositional retrieval set; they
  measure zero-shot retention;
- *adaptation* datasets bring visually distinct domains with vocabulary the pool never uses
  (sprites, rendered objects, counts, textures, letters, real handwritten digits, fine colour
  names, scenes); they measure knowledge accumulation.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache
from collections.abc import Callable

from PIL import Image, ImageDraw

from fif.data.mini import render as R

BASIC_SHAPES = ("circle", "square", "triangle", "diamond", "ring", "cross")
SPRITE_SHAPES = ("heart", "star", "ellipse", "crescent", "hexagon", "arrow", "pentagon", "trapezoid")
COLOUR_NAMES = tuple(R.BASIC_COLOURS)
# Colour x shape pairs the pool never shows: COMBOS tests them (held-out concept combinations).
HELDOUT_COMBOS = (
    ("red", "triangle"), ("green", "circle"), ("blue", "diamond"), ("yellow", "square"),
    ("purple", "ring"), ("orange", "cross"), ("white", "triangle"), ("black", "circle"),
    ("red", "ring"), ("green", "diamond"), ("blue", "cross"), ("yellow", "ring"),
)
_HELDOUT = set(HELDOUT_COMBOS)

Drawn = tuple[Image.Image, list[str]]


@dataclass(frozen=True)
class MiniDataset:
    """One generated dataset; ``draw(rng, class_index, split, item)`` -> (image, captions)."""

    folder: str
    primer: str
    role: str  # "adaptation" (streamed) or "evaluation" (held out)
    kind: str  # "classification" or "retrieval"
    classnames: tuple[str, ...]
    train_per_class: int
    test_per_class: int
    draw: Callable[[random.Random, int, str, int], Drawn]

    @property
    def key(self) -> str:
        return self.folder.lower()


def _an(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _background(rng: random.Random, avoid: str | None = None) -> tuple[str, R.RGB]:
    names = [b for b in R.BACKGROUNDS if b != avoid]
    name = rng.choice(names)
    return name, R.jitter(R.BACKGROUNDS[name], rng, 10)


def _place(rng: random.Random, position: str, radius: float) -> tuple[float, float]:
    fx, fy = R.POSITIONS[position]
    return fx * R.CANVAS + rng.uniform(-4, 4), fy * R.CANVAS + rng.uniform(-4, 4)


def _single_object(rng: random.Random, shape: str, colour: str, outline: bool = False, noise: int = 0,
                   position: str | None = None) -> tuple[Image.Image, dict[str, str]]:
    size = rng.choice(list(R.SIZES))
    position = position or rng.choice(list(R.POSITIONS))
    bg_name, bg = _background(rng, avoid=colour)
    image, draw = R.new_canvas(bg)
    r = R.SIZES[size] * R.CANVAS * rng.uniform(0.85, 1.15)
    cx, cy = _place(rng, position, r)
    R.draw_shape(draw, shape, cx, cy, r, R.jitter(R.BASIC_COLOURS[colour], rng), rng.uniform(-0.3, 0.3), outline)
    words = {"size": size, "position": position, "background": bg_name, "colour": colour, "shape": shape}
    return R.finish(image, rng, noise), words


# ----------------------------------------------------------------------------- pretraining pool


def _pool_objects(rng: random.Random, count: int) -> list[tuple[str, str]]:
    objects = []
    while len(objects) < count:
        pair = (rng.choice(COLOUR_NAMES), rng.choice(BASIC_SHAPES))
        if pair not in _HELDOUT:
            objects.append(pair)
    return objects


def _relation_scene(rng: random.Random, objects: list[tuple[str, str]], noise: int = 0) -> tuple[Image.Image, list[str]]:
    """Two objects side by side or stacked, with captions naming their relation."""
    (c1, s1), (c2, s2) = objects
    horizontal = rng.random() < 0.5
    p1, p2 = ("on the left", "on the right") if horizontal else ("at the top", "at the bottom")
    sizes = [rng.choice(list(R.SIZES)), rng.choice(list(R.SIZES))]
    bg_name, bg = _background(rng, avoid=c1 if c1 == c2 else None)
    while bg_name in (c1, c2):
        bg_name, bg = _background(rng)
    image, draw = R.new_canvas(bg)
    for (colour, shape), position, size in zip(objects, (p1, p2), sizes):
        r = R.SIZES[size] * R.CANVAS * 0.9
        cx, cy = _place(rng, position, r)
        R.draw_shape(draw, shape, cx, cy, r, R.jitter(R.BASIC_COLOURS[colour], rng), rng.uniform(-0.3, 0.3))
    relation = "to the left of" if horizontal else "above"
    captions = [
        f"a {sizes[0]} {c1} {s1} {relation} a {sizes[1]} {c2} {s2}",
        f"a photo of a {c1} {s1} and a {c2} {s2} on a {bg_name} background",
        f"a {c2} {s2} {p2} and a {c1} {s1} {p1}",
    ]
    return R.finish(image, rng, noise), captions


def pool_sample(rng: random.Random) -> tuple[Image.Image, str]:
    """One generic image-caption pair of the pretraining pool."""
    if rng.random() < 0.35:
        image, captions = _relation_scene(rng, _pool_objects(rng, 2))
        return image, rng.choice(captions)
    (colour, shape), = _pool_objects(rng, 1)
    image, w = _single_object(rng, shape, colour)
    templates = [
        "a photo of a {size} {colour} {shape} {position} on a {background} background",
        "a {colour} {shape} {position}",
        "a photo of a {colour} {shape}",
        "a {size} {colour} shape {position}",
        "a photo of a {colour} shape",
        "a {size} {shape} in {colour} on a {background} background",
        "a photo of a shape {position}",
        "a {shape} {position} on a {background} background",
    ]
    return image, rng.choice(templates).format(**w)


# ----------------------------------------------------------------------------- evaluation-only


def _primshapes(rng: random.Random, cls: int, split: str, item: int) -> Drawn:
    shape = BASIC_SHAPES[cls]
    colour = rng.choice([c for c in COLOUR_NAMES if (c, shape) not in _HELDOUT])
    image, w = _single_object(rng, shape, colour, noise=30)
    return image, [f"a photo of {_an(shape)} {shape}, a {w['size']} {colour} {shape} {w['position']}"]


def _primcolours(rng: random.Random, cls: int, split: str, item: int) -> Drawn:
    colour = COLOUR_NAMES[cls]
    shape = rng.choice([s for s in BASIC_SHAPES if (colour, s) not in _HELDOUT])
    image, w = _single_object(rng, shape, colour, noise=30)
    return image, [f"a photo of a {colour} shape, a {w['size']} {colour} {shape} on a {w['background']} background"]


LOCATIONS = tuple(R.POSITIONS)


def _locations(rng: random.Random, cls: int, split: str, item: int) -> Drawn:
    colour, shape = _pool_objects(rng, 1)[0]
    image, w = _single_object(rng, shape, colour, noise=30, position=LOCATIONS[cls])
    return image, [f"a photo of a shape {LOCATIONS[cls]}: a {colour} {shape} {LOCATIONS[cls]}"]


def _combos(rng: random.Random, cls: int, split: str, item: int) -> Drawn:
    colour, shape = HELDOUT_COMBOS[cls]
    image, w = _single_object(rng, shape, colour)
    return image, [f"a photo of a {colour} {shape} {w['position']} on a {w['background']} background"]


def _outlines(rng: random.Random, cls: int, split: str, item: int) -> Drawn:
    shape = BASIC_SHAPES[cls]
    colour = rng.choice([c for c in COLOUR_NAMES if (c, shape) not in _HELDOUT])
    image, w = _single_object(rng, shape, colour, outline=True)
    return image, [f"a photo of {_an(shape)} {shape} drawn as a thin {colour} outline {w['position']}"]


def _captions(rng: random.Random, cls: int, split: str, item: int) -> Drawn:
    return _relation_scene(rng, _pool_objects(rng, 2), noise=12)


# ----------------------------------------------------------------------------- adaptation


def _sprites(rng: random.Random, cls: int, split: str, item: int) -> Drawn:
    shape = SPRITE_SHAPES[cls]
    size = rng.choice(list(R.SIZES))
    position = rng.choice(list(R.POSITIONS))
    image, draw = R.new_canvas((0, 0, 0))
    r = R.SIZES[size] * R.CANVAS * rng.uniform(0.9, 1.3)
    cx, cy = _place(rng, position, r)
    R.draw_shape(draw, shape, cx, cy, r, (255, 255, 255), rng.uniform(-math.pi, math.pi))
    return R.finish(image), [
        f"a sprite of {_an(shape)} {shape}, a {size} white {shape} {position} on a black background",
        f"a {size} white sprite shaped like {_an(shape)} {shape} {position}",
    ]


OBJECTS3D = ("cube", "cylinder", "sphere", "cone")
OBJECT_COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
OBJECTS3D_CLASSES = tuple(f"{c} {o}" for o in OBJECTS3D for c in OBJECT_COLOURS)


def _shade(colour: R.RGB, factor: float) -> R.RGB:
    return tuple(max(0, min(255, int(c * factor))) for c in colour)  # type: ignore[return-value]


def _objects3d(rng: random.Random, cls: int, split: str, item: int) -> Drawn:
    colour_name, obj = OBJECTS3D_CLASSES[cls].split()
    colour = R.jitter(R.BASIC_COLOURS[colour_name], rng, 12)
    wall_name, floor_name = rng.choice(["gray", "white", "black"]), rng.choice(["gray", "white", "black"])
    wall, floor = R.BACKGROUNDS[wall_name], _shade(R.BACKGROUNDS[floor_name], 0.8)
    horizon = int(R.CANVAS * rng.uniform(0.45, 0.6))
    image = R.vertical_gradient(_shade(wall, 1.0), _shade(wall, 0.8), 0, horizon)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, horizon, R.CANVAS, R.CANVAS), fill=floor)
    cx, base = R.CANVAS * rng.uniform(0.35, 0.65), R.CANVAS * rng.uniform(0.72, 0.85)
    s = R.CANVAS * rng.uniform(0.16, 0.24)
    if obj == "cube":
        d = s * 0.5
        front = [(cx - s, base - 2 * s), (cx + s * 0.6, base - 2 * s), (cx + s * 0.6, base), (cx - s, base)]
        top = [(cx - s, base - 2 * s), (cx - s + d, base - 2 * s - d), (cx + s * 0.6 + d, base - 2 * s - d), (cx + s * 0.6, base - 2 * s)]
        side = [(cx + s * 0.6, base - 2 * s), (cx + s * 0.6 + d, base - 2 * s - d), (cx + s * 0.6 + d, base - d), (cx + s * 0.6, base)]
        draw.polygon(front, fill=colour)
        draw.polygon(top, fill=_shade(colour, 1.3))
        draw.polygon(side, fill=_shade(colour, 0.6))
    elif obj == "cylinder":
        h = s * 0.35
        draw.rectangle((cx - s, base - 2 * s, cx + s, base), fill=_shade(colour, 0.8))
        draw.ellipse((cx - s, base - h, cx + s, base + h), fill=_shade(colour, 0.8))
        draw.rectangle((cx - s * 0.2, base - 2 * s, cx + s * 0.5, base), fill=colour)
        draw.ellipse((cx - s, base - 2 * s - h, cx + s, base - 2 * s + h), fill=_shade(colour, 1.3))
    elif obj == "sphere":
        for k in range(10, 0, -1):
            rr = s * 1.1 * k / 10
            off = (10 - k) * s * 0.04
            draw.ellipse((cx - rr - off, base - s * 1.1 - rr - off, cx + rr - off, base - s * 1.1 + rr - off),
                         fill=_shade(colour, 0.6 + 0.07 * (10 - k)))
    else:  # cone
        h = s * 0.3
        draw.ellipse((cx - s, base - h, cx + s, base + h), fill=_shade(colour, 0.7))
        draw.polygon([(cx, base - 2.3 * s), (cx - s, base), (cx + s, base)], fill=colour)
        draw.polygon([(cx, base - 2.3 * s), (cx + s * 0.3, base), (cx + s, base)], fill=_shade(colour, 0.7))
    return R.finish(image), [
        f"a rendering of a {colour_name} {obj} standing on a {floor_name} floor in front of a {wall_name} wall",
        f"a rendered {colour_name} {obj}, lit from the top left",
    ]


COUNT_WORDS = ("one", "two", "three", "four", "five", "six")


def _counting(rng: random.Random, cls: int, split: str, item: int) -> Drawn:
    count = cls + 1
    image, draw = R.new_canvas(R.jitter((110, 110, 115), rng, 8))
    cell = R.CANVAS / 3
    cells = rng.sample(range(9), count)
    names = []
    for c in cells:
        colour, shape = rng.choice(COLOUR_NAMES[:6]), rng.choice(("circle", "square", "triangle", "diamond"))
        r = cell * rng.uniform(0.22, 0.32)
        cx = (c % 3 + 0.5) * cell + rng.uniform(-2, 2)
        cy = (c // 3 + 0.5) * cell + rng.uniform(-2, 2)
        R.draw_shape(draw, shape, cx, cy, r, R.jitter(R.BASIC_COLOURS[colour], rng), rng.uniform(-0.4, 0.4))
        names.append(f"{colour} {shape}")
    noun = "object" if count == 1 else "objects"
    return R.finish(image), [
        f"a scene with {COUNT_WORDS[cls]} {noun} on a gray table, among them a {names[0]}",
        f"{COUNT_WORDS[cls]} {noun} scattered on a table",
    ]


TEXTURES = ("striped", "dotted", "checkered", "zigzagged", "gridded", "wavy", "speckled", "crosshatched", "banded", "swirly")


def _textures(rng: random.Random, cls: int, split: str, item: int) -> Drawn:
    kind = TEXTURES[cls]
    names = rng.sample(list(R.BASIC_COLOURS), 2)
    fg, bg = (R.jitter(R.BASIC_COLOURS[n], rng) for n in names)
    image, draw = R.new_canvas(bg)
    C = R.CANVAS
    period = rng.randint(9, 14)
    angle = rng.uniform(0, math.pi)
    if kind == "striped":
        for k in range(-C, 2 * C, period):
            p = [(k, -C), (k + period / 2, -C), (k + period / 2, 2 * C), (k, 2 * C)]
            draw.polygon(R._rotate([(x - C / 2, y - C / 2) for x, y in p], C / 2, C / 2, angle), fill=fg)
    elif kind == "dotted":
        for x in range(period // 2, C, period):
            for y in range(period // 2, C, period):
                draw.ellipse((x - 2.5, y - 2.5, x + 2.5, y + 2.5), fill=fg)
    elif kind == "checkered":
        for i, x in enumerate(range(0, C, period)):
            for j, y in enumerate(range(0, C, period)):
                if (i + j) % 2:
                    draw.rectangle((x, y, x + period - 1, y + period - 1), fill=fg)
    elif kind == "zigzagged":
        for y in range(0, C + period, period):
            pts = [(x, y + (period / 2 if (x // period) % 2 else 0)) for x in range(0, C + period, period)]
            draw.line(pts, fill=fg, width=3)
    elif kind == "gridded":
        for k in range(0, C, period):
            draw.line([(k, 0), (k, C)], fill=fg, width=2)
            draw.line([(0, k), (C, k)], fill=fg, width=2)
    elif kind == "wavy":
        for y0 in range(0, C + period, period):
            pts = [(x, y0 + 3 * math.sin(x / 5 + y0)) for x in range(0, C + 1, 2)]
            draw.line(pts, fill=fg, width=3)
    elif kind == "speckled":
        for _ in range(rng.randint(90, 140)):
            x, y = rng.uniform(0, C), rng.uniform(0, C)
            draw.ellipse((x - 1, y - 1, x + 1.2, y + 1.2), fill=fg)
    elif kind == "crosshatched":
        for k in range(-C, 2 * C, period):
            draw.line([(k, 0), (k + C, C)], fill=fg, width=2)
            draw.line([(k, C), (k + C, 0)], fill=fg, width=2)
    elif kind == "banded":
        bands = rng.randint(2, 3)
        for b in range(bands):
            y = (b + 0.5) * C / bands
            draw.rectangle((0, y - C / (4 * bands), C, y + C / (4 * bands)), fill=fg)
    else:  # swirly
        cx, cy = C / 2 + rng.uniform(-6, 6), C / 2 + rng.uniform(-6, 6)
        pts = [(cx + t * 0.9 * math.cos(t / 3), cy + t * 0.9 * math.sin(t / 3)) for t in range(0, 60)]
        draw.line(pts, fill=fg, width=3)
    return R.finish(image), [
        f"a {kind} texture in {names[0]} and {names[1]}, seen up close",
        f"a close up photo of a {kind} pattern",
    ]


GLYPHS = tuple("bcdefghjklmnpqrstuvw")


def _glyphs(rng: random.Random, cls: int, split: str, item: int) -> Drawn:
    letter = GLYPHS[cls]
    ink = rng.choice(["black", "blue", "red", "green"])
    paper = "white" if ink != "white" else "gray"
    text = letter.upper() if rng.random() < 0.5 else letter
    case = "capital" if text.isupper() else "lowercase"
    image = R.draw_glyph(text, R.jitter(R.BASIC_COLOURS[ink], rng), R.jitter(R.BACKGROUNDS[paper], rng, 10), rng)
    return R.finish(image), [
        f"a rendering of the letter {letter}, a {case} {letter} printed in {ink} on {paper} paper",
        f"the {case} letter {letter} in {ink} ink",
    ]


DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@lru_cache(maxsize=1)
def _digit_images() -> dict[int, list]:
    """scikit-learn's bundled real handwritten digits (8x8, 1,797 images), grouped by class."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    by_class: dict[int, list] = {d: [] for d in range(10)}
    for image, target in zip(digits.images, digits.target):
        by_class[int(target)].append(image)
    return by_class


DIGITS_TRAIN_PER_CLASS = 120


def _digits(rng: random.Random, cls: int, split: str, item: int) -> Drawn:
    pool = _digit_images()[cls]
    index = item if split == "train" else DIGITS_TRAIN_PER_CLASS + item
    pixels = pool[index % len(pool)] / 16.0
    ink_name = rng.choice(["black", "blue", "red"])
    ink, paper = R.jitter(R.BASIC_COLOURS[ink_name], rng), R.jitter((235, 235, 225), rng, 10)
    gray = Image.frombytes("L", (8, 8), bytes(int(255 * v) for v in pixels.flatten()))
    mask = gray.resize((24, 24), Image.BICUBIC)
    image = Image.new("RGB", (R.IMAGE_SIZE, R.IMAGE_SIZE), paper)
    image.paste(Image.new("RGB", (24, 24), ink), (4 + rng.randint(-2, 2), 4 + rng.randint(-2, 2)), mask)
    word = DIGIT_WORDS[cls]
    return image, [
        f"a photo of the handwritten digit {word}, written in {ink_name} ink on white paper",
        f"a handwritten {word} scanned from a form",
    ]


SWATCHES = tuple(R.FINE_COLOURS)


def _swatches(rng: random.Random, cls: int, split: str, item: int) -> Drawn:
    name = SWATCHES[cls]
    base = R.jitter(R.FINE_COLOURS[name], rng, 10)
    image, draw = R.new_canvas(base)
    pattern = rng.choice(["plain", "striped", "woven"])
    if pattern != "plain":
        tone = _shade(base, 0.85)
        for k in range(0, R.CANVAS, 6):
            draw.line([(k, 0), (k, R.CANVAS)], fill=tone, width=2)
            if pattern == "woven":
                draw.line([(0, k), (R.CANVAS, k)], fill=tone, width=2)
    return R.finish(image, rng, 8), [
        f"a swatch of the colour {name}, a piece of {name} fabric with a {pattern} weave",
        f"a {name} colour sample",
    ]


SCENES = ("beach", "desert", "forest", "ocean", "snowfield", "night sky", "sunset", "meadow")


def _scenes(rng: random.Random, cls: int, split: str, item: int) -> Drawn:
    scene = SCENES[cls]
    C = R.CANVAS
    horizon = int(C * rng.uniform(0.45, 0.65))
    sky = {"night sky": ((5, 5, 30), (20, 20, 60)), "sunset": ((90, 40, 120), (250, 130, 40))}.get(
        scene, ((90, 150, 230), (170, 210, 245)))
    image = R.vertical_gradient(R.jitter(sky[0], rng, 10), R.jitter(sky[1], rng, 10), 0, horizon + 1)
    draw = ImageDraw.Draw(image)
    ground = {"beach": (225, 200, 140), "desert": (215, 160, 90), "forest": (30, 90, 30), "ocean": (20, 70, 150),
              "snowfield": (240, 245, 250), "night sky": (15, 20, 25), "sunset": (40, 30, 50), "meadow": (100, 180, 70)}[scene]
    draw.rectangle((0, horizon, C, C), fill=R.jitter(ground, rng, 10))
    details = "under a clear sky"
    if scene == "beach":
        draw.rectangle((0, horizon, C, horizon + 8), fill=(30, 90, 170))
        details = "with waves rolling onto the sand"
    elif scene == "desert":
        for _ in range(2):
            x = rng.uniform(0, C)
            draw.ellipse((x - 25, horizon - 8, x + 25, horizon + 12), fill=(200, 140, 70))
        details = "with dunes under a hot sun"
    elif scene == "forest":
        for _ in range(rng.randint(4, 7)):
            x = rng.uniform(0, C)
            draw.polygon([(x, horizon - rng.uniform(14, 26)), (x - 7, horizon + 4), (x + 7, horizon + 4)], fill=(20, 110, 30))
        details = "with tall pine trees"
    elif scene == "ocean":
        for y in range(horizon + 4, C, 7):
            draw.line([(0, y), (C, y)], fill=(70, 130, 210), width=1)
        details = "with open water to the horizon"
    elif scene == "snowfield":
        draw.polygon([(rng.uniform(0, C / 2), horizon - 18), (-10, horizon), (C / 2 + 10, horizon)], fill=(200, 210, 225))
        details = "covered in fresh snow"
    elif scene == "night sky":
        for _ in range(rng.randint(10, 18)):
            x, y = rng.uniform(0, C), rng.uniform(0, horizon - 2)
            draw.ellipse((x - 1, y - 1, x + 1, y + 1), fill=(255, 255, 230))
        details = "full of stars"
    elif scene == "sunset":
        x = rng.uniform(15, C - 15)
        draw.ellipse((x - 9, horizon - 9, x + 9, horizon + 9), fill=(255, 200, 60))
        draw.rectangle((0, horizon, C, C), fill=(40, 30, 50))
        details = "with the sun going down"
    else:  # meadow
        for _ in range(rng.randint(6, 12)):
            x, y = rng.uniform(0, C), rng.uniform(horizon + 2, C)
            draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=rng.choice([(250, 250, 80), (240, 90, 140)]))
        details = "with flowers in the grass"
    if scene in ("beach", "desert", "meadow", "ocean"):
        x = rng.uniform(8, C - 8)
        draw.ellipse((x - 5, 4, x + 5, 14), fill=(255, 240, 120))
    return R.finish(image), [f"a photo of a {scene} {details}", f"a landscape picture of a {scene}"]


DATASETS: tuple[MiniDataset, ...] = (
    # adaptation (streamed)
    MiniDataset("SPRITES2D", "a sprite of {}.", "adaptation", "classification", SPRITE_SHAPES, 90, 25, _sprites),
    MiniDataset("OBJECTS3D", "a rendering of a {}.", "adaptation", "classification", OBJECTS3D_CLASSES, 60, 20, _objects3d),
    MiniDataset("COUNTING", "a scene with {} objects.", "adaptation", "classification", COUNT_WORDS, 110, 30, _counting),
    MiniDataset("TEXTURES", "a close up photo of a {} pattern.", "adaptation", "classification", TEXTURES, 90, 25, _textures),
    MiniDataset("GLYPHS", "a rendering of the letter {}.", "adaptation", "classification", GLYPHS, 60, 20, _glyphs),
    MiniDataset("DIGITS", "a photo of the handwritten digit {}.", "adaptation", "classification", DIGIT_WORDS,
                DIGITS_TRAIN_PER_CLASS, 50, _digits),
    MiniDataset("SWATCHES", "a swatch of the colour {}.", "adaptation", "classification", SWATCHES, 70, 20, _swatches),
    MiniDataset("SCENES", "a photo of a {}.", "adaptation", "classification", SCENES, 90, 25, _scenes),
    # evaluation-only (never streamed)
    MiniDataset("PRIMSHAPES", "a photo of a {}.", "evaluation", "classification", BASIC_SHAPES, 0, 80, _primshapes),
    MiniDataset("PRIMCOLOURS", "a photo of a {} shape.", "evaluation", "classification", COLOUR_NAMES, 0, 60, _primcolours),
    MiniDataset("LOCATIONS", "a photo of a shape {}.", "evaluation", "classification", LOCATIONS, 0, 100, _locations),
    MiniDataset("COMBOS", "a photo of a {}.", "evaluation", "classification",
                tuple(f"{c} {s}" for c, s in HELDOUT_COMBOS), 0, 40, _combos),
    MiniDataset("OUTLINES", "a photo of a {}.", "evaluation", "classification", BASIC_SHAPES, 0, 80, _outlines),
    MiniDataset("CAPTIONS", "{}", "evaluation", "retrieval", ("scene",), 0, 500, _captions),
)
