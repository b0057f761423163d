"""``fif data resize``: the reference's 224-px variants, read back through our reader."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torchvision.transforms
from PIL import Image

from fif_root_factory import DATASETS, make_fif_root

from fif.cli.main import main
from fif.data.format.fif_format import load_registry, read_split
from fif.data.format.storage import TarStore

PLAIN = tuple(dataclasses.replace(d, resized=False) for d in DATASETS)  # no variants written by the generator
# The reference's own transform (data_lib/__init__.py, _create_and_use_resized_data).
REFERENCE = torchvision.transforms.Resize(224, interpolation=torchvision.transforms.InterpolationMode.BICUBIC)


def _expected_size(width: int, height: int) -> tuple[int, int]:
    short, long = min(width, height), max(width, height)
    long = int(224 * long / short)
    return (224, long) if width <= height else (long, 224)


def _resize(root: Path, *extra: str) -> int:
    return main(["data", "resize", str(root), "--no-progress", *extra])


def test_resized_variants_match_the_reference_transform_and_read_back(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture):
    fif = make_fif_root(tmp_path / "fif", layout="folder", datasets=PLAIN)
    assert _resize(fif.root, "--datasets", "monkeys10,cub200", "--jobs", "2") == 0
    assert "resized 60 images to 224 px (0 already there) for 2 datasets: MONKEYS10, CUB200; 4 variant info files; " \
           "0 problems" in capsys.readouterr().out
    registry = load_registry(fif.registry)
    for name in ("monkeys10", "cub200"):
        spec = registry[name]
        for split_name in ("train", "test"):
            original, variant = fif.info(spec.folder, split_name), f"{spec.folder}_{split_name}_224"
            resized_info = fif.info(spec.folder, split_name, resized=True)
            assert list(resized_info) == [f"{variant}/{key}" for key in original]  # same entries, same order
            assert list(resized_info.values()) == list(original.values())
            split = read_split(fif.root, spec, split_name, resized=True)
            assert split.info_path.name == f"{variant}.json" and len(split) == len(original)
            for index, key in enumerate(original):
                source = Image.open(fif.root / spec.folder / key).convert("RGB")
                image = split.image(index)
                assert image.size == _expected_size(*source.size)
                reference = np.asarray(REFERENCE(source), dtype=np.int16)
                difference = np.abs(np.asarray(image, dtype=np.int16) - reference)
                if key.endswith(".png"):
                    assert difference.max() == 0  # lossless: exactly the reference's pixels
                else:
                    assert difference.mean() < 4  # JPEG at PIL's default quality, as the reference saves


def test_default_datasets_idempotence_and_no_half_written_variant(tmp_path: Path, capsys: pytest.CaptureFixture):
    fif = make_fif_root(tmp_path / "fif", layout="folder", datasets=PLAIN)
    assert _resize(fif.root, "--jobs", "0") == 0  # default: the datasets the reference resizes (of these: MONKEYS10)
    assert "for 1 datasets: MONKEYS10;" in capsys.readouterr().out
    assert not (fif.root / "CUB200" / "CUB200_train_224").exists()
    variant = fif.root / "MONKEYS10" / "MONKEYS10_train_224"
    images = sorted(p for p in variant.rglob("*.jpg"))
    stamp = {p: p.stat().st_mtime_ns for p in images}
    for path in images[:3]:  # as if a run had been killed before finishing the split
        path.unlink()
    (fif.info_dir / "MONKEYS10_train_224.json").unlink()
    spec = load_registry(fif.registry)["monkeys10"]
    assert read_split(fif.root, spec, "train", resized=True).info_path.name == "MONKEYS10_train.json"  # falls back
    assert _resize(fif.root, "--jobs", "2") == 0
    assert "resized 3 images to 224 px (33 already there)" in capsys.readouterr().out
    assert all(path.stat().st_mtime_ns == stamp[path] for path in images[3:])  # untouched
    assert read_split(fif.root, spec, "train", resized=True).info_path.name == "MONKEYS10_train_224.json"
    assert not [p for p in variant.rglob("*") if p.name.endswith(".tmp")]


def test_tar_mode_appends_the_variants_to_the_tar(tmp_path: Path, capsys: pytest.CaptureFixture):
    fif = make_fif_root(tmp_path / "fif", layout="tar", datasets=PLAIN)
    before = TarStore(fif.root / "CUB200.tar", "CUB200")
    originals = {key: before.read_bytes(key) for key in fif.info("CUB200", "test")}
    assert _resize(fif.root, "--tar", "--datasets", "cub200", "--jobs", "2") == 0
    assert "resized 24 images" in capsys.readouterr().out
    after = TarStore(fif.root / "CUB200.tar", "CUB200")
    assert len(after.index) == 2 * len(before.index)
    assert all(after.read_bytes(key) == data for key, data in originals.items())  # the originals are intact
    spec = load_registry(fif.registry)["cub200"]
    split = read_split(fif.root, spec, "test", tar=True, resized=True)
    assert split.info_path.name == "CUB200_test_224.json"
    assert all(min(split.image(i).size) == 224 for i in range(len(split)))
    assert _resize(fif.root, "--tar", "--datasets", "cub200") == 0  # nothing left to do: the tar is not rewritten
    assert "resized 0 images to 224 px (24 already there)" in capsys.readouterr().out
    assert main(["data", "verify", str(fif.root), "--tar", "--resized", "--no-progress", "--workers", "0"]) == 0


def test_an_unreadable_image_is_a_problem_and_its_split_gets_no_variant(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture):
    bad = "monkeys10/training/training/n1/n103.jpg"
    fif = make_fif_root(tmp_path / "fif", layout="folder", datasets=PLAIN, truncate=[("MONKEYS10", bad)])
    assert _resize(fif.root, "--datasets", "monkeys10", "--jobs", "0") == 1
    lines = capsys.readouterr().out.splitlines()
    problems = [line for line in lines if line.startswith("problem:")]
    assert len(problems) == 2
    assert problems[0].startswith(f"problem: {fif.root / 'MONKEYS10' / bad}: not resized (image ")
    assert problems[1] == (f"problem: {fif.info_dir / 'MONKEYS10_train_224.json'}: not written (1 images of "
                           f"MONKEYS10 train could not be resized)")
    assert not (fif.info_dir / "MONKEYS10_train_224.json").exists()
    assert (fif.info_dir / "MONKEYS10_test_224.json").is_file()


def test_resize_usage_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture):
    assert _resize(tmp_path / "nowhere") == 2
    assert capsys.readouterr().err.strip() == f"error: data root {tmp_path / 'nowhere'} does not exist"
    fif = make_fif_root(tmp_path / "fif", layout="folder", datasets=PLAIN[:1])
    assert _resize(fif.root, "--datasets", "gtsrb") == 2
    assert capsys.readouterr().err.strip().startswith("error: --datasets 'gtsrb' is not in the dataset registry")
    (fif.info_dir / "MONKEYS10_test.json").unlink()
    assert _resize(fif.root) == 2
    assert capsys.readouterr().err.strip() == (f"error: info file {fif.info_dir / 'MONKEYS10_test.json'} does not "
                                               f"exist (dataset 'monkeys10', split 'test')")
    shutil.rmtree(fif.root / "MONKEYS10")
    assert _resize(fif.root, "--datasets", "monkeys10") == 2
    assert capsys.readouterr().err.strip() == f"error: --datasets monkeys10: {fif.root / 'MONKEYS10'} does not exist"
    assert json.loads(fif.registry.read_text())["monkeys10"]["folder"] == "MONKEYS10"
