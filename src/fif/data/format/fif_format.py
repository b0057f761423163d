"""Read datasets in the reference FoMo-in-Flux on-disk layout.

A data root holds ``ROOT/<FOLDER>/<key>`` images (or ``ROOT/<FOLDER>.tar``, see fif.data.format.storage);
per-split info files
(``<info_dir>/<FOLDER>_<split>.json``: image key -> classname, captions, target) live in an info
directory, ``ROOT/00_info`` by default. The registry (the reference's datasets.json fields:
folder, primer, type, role_in_default_benchmark) says which datasets exist and what they are for.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fif.data.format.fif_datasets import ADAPTATION_ROWS, EVALUATION_ROWS, EXTRA_ROWS
from fif.data.format.info_files import info_file, read_info
from fif.data.format.packed import PackedCaptions, PackedStrings
from fif.data.format.storage import ImageStore, open_store
from fif.errors import FifError

ADAPTATION, EVALUATION = "adaptation", "evaluation"


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is: its folder, kind, role and zero-shot primer."""

    name: str
    folder: str
    kind: str  # classification | retrieval
    role: str  # adaptation | evaluation | not_in_benchmark
    primer: str
    splits: tuple[str, ...] = ()  # info-file splits it has; () -> by role (evaluation-only: test)

    def __post_init__(self) -> None:
        if not self.splits:  # the reference loads train+test for streamed datasets, test for held-out ones
            object.__setattr__(self, "splits", ("test",) if self.role == EVALUATION else ("train", "test"))

    @property
    def eval_only(self) -> bool:
        return self.role == EVALUATION


@dataclass
class Split:
    """One split of one dataset, in info-file order: keys, class targets, captions and the image store.

    Keys and captions are packed (see fif.data.format.packed) and targets are an int64 array, so the
    ~2.5M entries of a full FiF root stay small in RAM and in DataLoader workers.
    """

    spec: DatasetSpec
    name: str
    keys: PackedStrings  # info-file keys: image paths relative to ROOT/<FOLDER>/ (or tar members <FOLDER>/<key>)
    targets: np.ndarray
    classnames: list[str]  # index = target (classification); empty for retrieval
    captions: PackedCaptions  # training captions per image (choose one at random when training)
    store: ImageStore
    info_path: Path | None = None
    class_of: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keys)

    def train_caption(self, index: int, rng: random.Random) -> str:
        return rng.choice(self.captions[index])

    def test_caption(self, index: int) -> str:
        return self.captions[index][0]

    def image(self, index: int) -> Image.Image:
        """The RGB image of sample ``index`` (a corrupt or missing one raises CorruptSampleError naming it)."""
        return self.store.load(self.keys[index])

    def where(self, index: int) -> str:
        """The file (or ``TAR: MEMBER``) of sample ``index``."""
        return self.store.where(self.keys[index])


def load_registry(path: str | Path) -> dict[str, DatasetSpec]:
    """Registry file in the reference datasets.json format, keyed by dataset name."""
    path = Path(path)
    if not path.is_file():
        raise FifError(f"dataset registry {path} does not exist")
    try:
        raw = json.loads(path.read_text())
        return {
            name: DatasetSpec(name, _folder_of(path, name, entry), entry["type"], entry["role_in_default_benchmark"],
                              entry["primer"], tuple(entry.get("splits") or ()))
            for name, entry in raw.items()
        }
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise FifError(f"dataset registry {path} is malformed ({type(error).__name__}: {error}); "
                       f"expected {{name: {{folder, primer, type, role_in_default_benchmark}}}}") from None


def _folder_of(path: Path, name: str, entry: dict) -> str:
    """The reference's datasets.json leaves imagenet's folder null (its module builds the path)."""
    if entry["folder"]:
        return entry["folder"]
    # the built-in registry's folder (fif.data.format.registry builds its specs from the same rows)
    folders = {key: folder for rows in (ADAPTATION_ROWS, EVALUATION_ROWS, EXTRA_ROWS) for key, folder, _, _ in rows}
    if name not in folders:
        raise FifError(f"dataset registry {path}: entry {name!r} has no 'folder' (expected its folder under the root)")
    return folders[name]


def read_split(root: str | Path, spec: DatasetSpec, split: str, info_dir: str | Path | None = None, *,
               tar: bool = False, resized: bool = False, store: ImageStore | None = None,
               problems: list[str] | None = None) -> Split:
    """Read one split: its info file (class names come from the data: target -> classname) and
    its image store, the folder ``ROOT/<FOLDER>`` or, with ``tar``, ``ROOT/<FOLDER>.tar``.

    ``resized`` reads the 224-px variant where it exists; ``problems`` collects bad entries
    instead of raising (see fif.data.format.info_files.read_info).
    """
    root = Path(root)
    info_dir = Path(info_dir) if info_dir else root / "00_info"
    if store is None:
        store = open_store(root, spec.folder, tar, spec.name)
    info_path = info_file(info_dir, root, spec.folder, split, tar, resized)
    if not info_path.is_file():
        raise FifError(f"info file {info_path} does not exist (dataset {spec.name!r}, split {split!r})")
    entries = read_info(info_path, spec.kind, problems)
    return Split(spec, split, entries.keys, entries.targets, entries.classnames, entries.captions, store,
                 info_path, {c: i for i, c in enumerate(entries.classnames)})
