"""`fif data show`: the contact sheet of a dataset, checked pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from fif.data.format.fif_format import read_split
from fif.data.format.registry import resolve_registry
from fif.tools.show import (BACKGROUND, CELL_H, HEADER, PAD, TILE, TILE_BACKGROUND, pick_samples, sheet_size,
                           show_dataset)
from fif.errors import FifError


@pytest.fixture(scope="module")
def registry(mini_root):
    return resolve_registry(None, mini_root)


def test_sheet_shows_train_and_test_samples_with_captions(mini_root, registry, tmp_path):
    spec = registry["objects3d"]
    path = show_dataset(mini_root, spec, "both", 16, tmp_path / "objects.png")
    sheet = Image.open(path)
    # two sections (train, test), each a header and a 4 x 4 grid of image + caption cells
    assert sheet.size == sheet_size([16, 16], 16) == (PAD + 4 * (TILE + PAD), PAD + 2 * (HEADER + 4 * (CELL_H + PAD)))
    pixels = np.asarray(sheet.convert("RGB")).astype(float)
    assert pixels.std() > 30 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500  # not blank
    # the first tile is exactly the first picked train image, fitted into the cell
    split = read_split(mini_root, spec, "train")
    first = pick_samples(split, 16)[0]
    expected = Image.new("RGB", (TILE, TILE), TILE_BACKGROUND)
    fitted = ImageOps.contain(split.image(first), (TILE, TILE))
    expected.paste(fitted, ((TILE - fitted.width) // 2, (TILE - fitted.height) // 2))
    y0 = PAD + HEADER
    assert np.array_equal(pixels[y0:y0 + TILE, PAD:PAD + TILE], np.asarray(expected).astype(float))
    caption_band = pixels[y0 + TILE + 2:y0 + TILE + 40, PAD:PAD + TILE]
    assert (np.abs(caption_band - np.array(BACKGROUND)).sum(-1) > 200).mean() > 0.03  # ink of the caption text


def test_samples_are_spread_over_the_classes(mini_root, registry):
    split = read_split(mini_root, registry["glyphs"], "test")
    picks = pick_samples(split, 25)
    assert len(picks) == 25 and len({split.targets[i] for i in picks}) == 20  # every class once, then again
    assert pick_samples(split, 25) == picks and pick_samples(split, 25, seed=1) != picks


def test_held_out_dataset_shows_its_test_split_only(mini_root, registry, tmp_path):
    spec = registry["captions"]  # evaluation-only retrieval set
    sheet = Image.open(show_dataset(mini_root, spec, "both", 6, tmp_path / "c.png"))
    assert sheet.size == sheet_size([6], 6)
    with pytest.raises(FifError, match="CAPTIONS is evaluation-only: it has no train split"):
        show_dataset(mini_root, spec, "adapt", 6, tmp_path / "d.png")
    assert not (tmp_path / "d.png").exists()


def test_cli_writes_the_png_and_names_bad_input(mini_root, tmp_path, in_process):
    out = tmp_path / "swatches.png"
    result = in_process("data", "show", "swatches", "--root", str(mini_root), "--split", "eval", "--n", "9",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == sheet_size([9], 9)
    bad = in_process("data", "show", "NO_SUCH_SET", "--root", str(mini_root), "--out", str(tmp_path / "x.png"))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith("error: dataset 'NO_SUCH_SET' is not in the dataset registry")
