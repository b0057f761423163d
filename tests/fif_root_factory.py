"""Write a miniature FiF data root in the reference on-disk layout, for tests and benchmarks.

    ROOT/datasets.json                              registry (the reference's fields)
    ROOT/<FOLDER>/<key>                             real JPEG / PNG files, nested like the reference's keys
    ROOT/<FOLDER>/<FOLDER>_<split>_224/<key>        224-px variants (for datasets marked ``resized``)
    ROOT/<FOLDER>.tar                               the same files as members <FOLDER>/<key> (tar layout)
    ROOT/00_info/<FOLDER>_<split>[_224].json        info files in the exact reference format
    ROOT/00_info/<FOLDER>_classnames.json           class-name lists (the reference keeps them beside the info files)

Images carry their class as a colour with noise, so a model can learn them.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Iterable

import numpy as np
from PIL import Image

RESIZED = 224


@dataclass(frozen=True)
class FakeDataset:
    name: str
    folder: str
    kind: str  # classification | retrieval
    role: str  # adaptation | evaluation
    primer: str
    classes: tuple[str, ...]  # retrieval: one "class" per image, unnamed
    per_class: dict[str, int]  # split -> images per class
    ext: str  # jpg | png
    key: Callable[[str, int, int], str]  # (split, class index, item) -> info-file key
    resized: bool  # also write the <FOLDER>_<split>_224 variant


FLICKR_CAPTIONS = ("A man in an orange hat is {}.", "Someone wearing glasses is {}.", "A person {} outdoors.",
                   "A photo of somebody {}.", "A man with a beard is {}.")
FLICKR_ACTIONS = ("running", "eating fruit", "reading", "climbing", "singing", "painting", "cooking", "sleeping")

DATASETS = (
    FakeDataset("monkeys10", "MONKEYS10", "classification", "adaptation", "A photo of a {}, a type of monkey.",
                ("mantled howler", "patas monkey", "bald uakari"), {"train": 8, "test": 4}, "jpg",
                lambda split, c, i: (f"monkeys10/training/training/n{c}/n{c}{i:02d}.jpg" if split == "train"
                                     else f"monkeys10/validation/validation/n{c}/n{c}{50 + i:02d}.jpg"), True),
    FakeDataset("cub200", "CUB200", "classification", "adaptation", "A photo of the bird {}.",
                ("Black footed Albatross", "Laysan Albatross"), {"train": 8, "test": 4}, "png",
                lambda split, c, i: (f"cub200/CUB_200_2011/images/{c + 1:03d}.{['Black_footed', 'Laysan'][c]}_Albatross/"
                                     f"{['Black_Footed', 'Laysan'][c]}_Albatross_{split}_{i:04d}_{796000 + 17 * i}.png"),
                False),
    FakeDataset("gtsrb", "GTSRB", "classification", "evaluation", 'A centered photo of a "{}" traffic sign.',
                ("red and white circle 20 kph speed limit", "stop"), {"test": 5}, "png",
                lambda split, c, i: f"gtsrb/GTSRB/Final_Test/Images/{c:05d}_{i:05d}.png", False),
    FakeDataset("flickr30k", "FLICKR30K", "retrieval", "evaluation", "{}",
                tuple(FLICKR_ACTIONS), {"test": 1}, "jpg",
                lambda split, c, i: f"flickr30k-images/{1007129816 + 7919 * c}.jpg", True),
)
COLORS = ((200, 40, 40), (40, 180, 60), (50, 70, 210), (220, 200, 40), (160, 60, 200), (40, 200, 200),
          (240, 140, 30), (120, 120, 120))


@dataclass
class FifRoot:
    root: Path
    info_dir: Path
    registry: Path
    datasets: tuple[FakeDataset, ...]

    def info(self, folder: str, split: str, resized: bool = False) -> dict:
        suffix = f"_{RESIZED}" if resized else ""
        return json.loads((self.info_dir / f"{folder}_{split}{suffix}.json").read_text())

    def dataset(self, name: str) -> FakeDataset:
        return next(d for d in self.datasets if d.name == name)


def _image(rng: np.random.Generator, color: tuple[int, int, int], size: tuple[int, int]) -> Image.Image:
    noise = rng.integers(-30, 31, size=(size[1], size[0], 3))
    pixels = np.clip(np.array(color)[None, None, :] + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def _encode(image: Image.Image, ext: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if ext == "jpg" else "PNG", quality=90)
    return buffer.getvalue()


def _entry(dataset: FakeDataset, target: int, item: int) -> dict:
    """One info entry in the reference's exact field order."""
    if dataset.kind == "retrieval":
        action = FLICKR_ACTIONS[target]
        return {"classname": None, "default_caption": [c.format(action) for c in FLICKR_CAPTIONS],
                "primer_caption": None, "synthetic_caption": None, "synthetic_merged_caption": None, "target": target}
    name = dataset.classes[target]
    detail = ("sitting on a branch", "eating a leaf", "looking at the camera", "in tall grass")[item % 4]
    return {"classname": name, "default_caption": None, "primer_caption": dataset.primer.format(name),
            "synthetic_caption": [f"an animal {detail}"],
            "synthetic_merged_caption": [f"{dataset.primer.format(name)[:-1]}, {detail}."], "target": target}


def make_fif_root(path: str | Path, layout: str = "both", datasets: Iterable[FakeDataset] = DATASETS,
                  truncate: Iterable[tuple[str, str]] = (), tar_format: int = tarfile.PAX_FORMAT,
                  seed: int = 0) -> FifRoot:
    """Write the root. ``layout``: folder | tar | both. ``truncate``: (folder, key) images written cut in half."""
    if layout not in ("folder", "tar", "both"):
        raise ValueError(f"layout {layout!r}")
    root, datasets, truncate = Path(path), tuple(datasets), set(truncate)
    info_dir = root / "00_info"
    info_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    registry = {}
    for dataset in datasets:
        files: dict[str, bytes] = {}  # member path under ROOT/<FOLDER>/ -> bytes
        for split, per_class in dataset.per_class.items():
            info, resized_info = {}, {}
            variant = f"{dataset.folder}_{split}_{RESIZED}"
            for target in range(len(dataset.classes)):
                for item in range(per_class):
                    key = dataset.key(split, target, item)
                    size = (int(rng.integers(36, 64)), int(rng.integers(36, 64)))
                    image = _image(rng, COLORS[target % len(COLORS)], size)
                    data = _encode(image, dataset.ext)
                    files[key] = data[: len(data) // 2] if (dataset.folder, key) in truncate else data
                    info[key] = _entry(dataset, target if dataset.kind == "classification" else len(info), item)
                    if dataset.resized:
                        scale = RESIZED / min(size)
                        big = image.resize((round(size[0] * scale), round(size[1] * scale)), Image.BICUBIC)
                        files[f"{variant}/{key}"] = _encode(big, dataset.ext)
                        resized_info[f"{variant}/{key}"] = info[key]
            (info_dir / f"{dataset.folder}_{split}.json").write_text(json.dumps(info, indent=4))
            if dataset.resized:
                (info_dir / f"{variant}.json").write_text(json.dumps(resized_info, indent=4))
        if dataset.kind == "classification":
            (info_dir / f"{dataset.folder}_classnames.json").write_text(json.dumps(list(dataset.classes)))
        if layout in ("folder", "both"):
            for key, data in files.items():
                target_path = root / dataset.folder / key
                target_path.parent.mkdir(parents=True, exist_ok=True)
                target_path.write_bytes(data)
        if layout in ("tar", "both"):
            with tarfile.open(root / f"{dataset.folder}.tar", "w", format=tar_format) as archive:
                for key, data in files.items():
                    member = tarfile.TarInfo(f"{dataset.folder}/{key}")
                    member.size, member.mtime = len(data), 1_700_000_000
                    archive.addfile(member, io.BytesIO(data))
        registry[dataset.name] = {"folder": dataset.folder, "primer": dataset.primer,
                                  "classnames_file": f"{dataset.folder}_classnames.json"
                                  if dataset.kind == "classification" else None,
                                  "type": dataset.kind, "role_in_default_benchmark": dataset.role}
    (root / "datasets.json").write_text(json.dumps(registry, indent=4))
    return FifRoot(root, info_dir, root / "datasets.json", datasets)


def stream_entries(datasets: Iterable[FakeDataset] = DATASETS) -> list[str]:
    """Every class of every adaptation dataset, as stream-file entries ``FOLDER+++classname``."""
    return [f"{d.folder}+++{c}" for d in datasets if d.role == "adaptation" for c in d.classes]
