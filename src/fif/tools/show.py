"""A contact sheet of a dataset (``fif data show``): sample images with the text a model sees.

Before streaming a dataset it pays to look at it: whether images load, whether captions match
them, how the train (adaptation) and test (evaluation) splits differ. One PNG per call: a section
per split, a grid of samples spread over the classes, each with its class name and the caption
used at test time wrapped beneath it. Images come through ``Split.image`` so every storage mode
the reader supports (folders, tar) is shown the same way.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from fif.data.format.fif_format import EVALUATION, DatasetSpec, Split, read_split
from fif.errors import FifError
from fif.utils.io import atomic_write

TILE = 128  # image cell side in pixels
PAD = 8
LINE = 13  # caption line height
CAPTION_LINES = 4
HEADER = 26
CELL_H = TILE + 2 + CAPTION_LINES * LINE
BACKGROUND, TILE_BACKGROUND, INK, HEADER_INK = (255, 255, 255), (236, 236, 236), (20, 20, 20), (30, 60, 140)
SPLIT_CHOICES = {"adapt": ("train",), "eval": ("test",), "both": ("train", "test")}


def grid_columns(n: int) -> int:
    return max(1, math.ceil(math.sqrt(n)))


def sheet_size(counts: list[int], n: int) -> tuple[int, int]:
    """(width, height) of a sheet whose sections show ``counts`` samples in ``grid_columns(n)`` columns."""
    cols = grid_columns(n)
    height = PAD + sum(HEADER + math.ceil(c / cols) * (CELL_H + PAD) for c in counts)
    return PAD + cols * (TILE + PAD), height


def pick_samples(split: Split, n: int, seed: int = 0) -> list[int]:
    """Up to ``n`` sample indices spread over the classes (round robin, seeded order within a class)."""
    by_class: dict[int, list[int]] = {}
    for index, target in enumerate(split.targets):
        by_class.setdefault(int(target), []).append(index)
    rng = random.Random(f"{seed}/{split.spec.folder}/{split.name}")
    queues = [rng.sample(ix, len(ix)) for _, ix in sorted(by_class.items())]
    picked: list[int] = []
    for depth in range(max((len(q) for q in queues), default=0)):
        picked += [q[depth] for q in queues if depth < len(q)]
        if len(picked) >= n:
            break
    return picked[:n]


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int, lines: int) -> list[str]:
    out: list[str] = []
    words = text.split()
    while words and len(out) < lines:
        line = words.pop(0)
        while draw.textlength(line, font=font) > width:  # a single over-long word: cut it
            cut = max(1, len(line) - 1)
            while cut > 1 and draw.textlength(line[:cut], font=font) > width:
                cut -= 1
            out.append(line[:cut])
            line = line[cut:]
            if len(out) == lines:
                return out
        while words and draw.textlength(f"{line} {words[0]}", font=font) <= width:
            line += " " + words.pop(0)
        out.append(line)
    if words and out:  # more text than room: mark the cut
        last = out[-1]
        while last and draw.textlength(last + "...", font=font) > width:
            last = last[:-1]
        out[-1] = last + "..."
    return out


def _label(split: Split, index: int) -> str:
    caption = split.test_caption(index)
    if split.classnames:
        name = split.classnames[split.targets[index]]
        return f"[{name}] {caption}"
    return caption


def draw_sheet(sections: list[tuple[Split, list[int]]], n: int) -> Image.Image:
    """Render the sections (a split and its picked samples) as one image."""
    width, height = sheet_size([len(picks) for _, picks in sections], n)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=11)
    header_font = ImageFont.load_default(size=14)
    cols, y = grid_columns(n), PAD
    for split, picks in sections:
        what = f"{len(set(split.targets))} classes" if split.classnames else "image-caption pairs"
        draw.text((PAD, y + 4), f"{split.spec.folder} - {split.name} split: {len(split)} samples, {what} "
                                f"(showing {len(picks)})", fill=HEADER_INK, font=header_font)
        y += HEADER
        for k, index in enumerate(picks):
            x0, y0 = PAD + (k % cols) * (TILE + PAD), y + (k // cols) * (CELL_H + PAD)
            tile = Image.new("RGB", (TILE, TILE), TILE_BACKGROUND)
            image = ImageOps.contain(split.image(index), (TILE, TILE))
            tile.paste(image, ((TILE - image.width) // 2, (TILE - image.height) // 2))
            sheet.paste(tile, (x0, y0))
            for line_no, line in enumerate(_wrap(draw, _label(split, index), font, TILE, CAPTION_LINES)):
                draw.text((x0, y0 + TILE + 2 + line_no * LINE), line, fill=INK, font=font)
        y += math.ceil(len(picks) / cols) * (CELL_H + PAD)
    return sheet


def show_dataset(root: str | Path, spec: DatasetSpec, which: str = "both", n: int = 16,
                 out: str | Path | None = None, info_dir: str | Path | None = None, seed: int = 0,
                 tar: bool = False) -> Path:
    """Write the contact sheet of ``spec``'s splits (``adapt`` = train, ``eval`` = test, ``both``)."""
    if which not in SPLIT_CHOICES:
        raise FifError(f"--split={which!r}: expected one of {', '.join(SPLIT_CHOICES)}")
    if n < 1:
        raise FifError(f"--n={n} must be at least 1")
    wanted = [s for s in SPLIT_CHOICES[which] if s in spec.splits]
    if not wanted:
        role = "evaluation-only" if spec.role == EVALUATION else spec.role
        raise FifError(f"dataset {spec.folder} is {role}: it has no {SPLIT_CHOICES[which][0]} split "
                       f"(its splits: {', '.join(spec.splits)})")
    sections = []
    for name in wanted:
        split = read_split(root, spec, name, info_dir, tar=tar)
        if len(split) == 0:
            raise FifError(f"dataset {spec.folder}: its {name} split is empty")
        sections.append((split, pick_samples(split, n, seed)))
    path = Path(out) if out else Path(f"{spec.folder}_samples.png")
    sheet = draw_sheet(sections, n)
    atomic_write(path, lambda f: sheet.save(f, format="PNG"), binary=True)
    return path
