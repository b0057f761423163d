"""Read datasets in the reference FoMo-in-Flux on-disk layout.

A data root holds ``ROOT/<FOLDER>/<key>`` images; per-split info files
(``<info_dir>/<FOLDER>_<split>.json``: image key -> classname, captions, target) live in an info
directory, ``ROOT/00_info`` by default. The registry (the reference's datasets.json fields:
folder, primer, type, role_in_default_benchmark) says which datasets exist and what they are for.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from fif.data.images import load_rgb
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

    @property
    def eval_only(self) -> bool:
        return self.role == EVALUATION


@dataclass
class Split:
    """One split of one dataset: image paths, class targets and captions, in info-file order."""

    spec: DatasetSpec
    name: str
    paths: list[Path]
    targets: list[int]
    classnames: list[str]  # index = target (classification); empty for retrieval
    captions: list[list[str]]  # training captions per image (choose one at random when training)
    class_of: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    def train_caption(self, index: int, rng: random.Random) -> str:
        return rng.choice(self.captions[index])

    def test_caption(self, index: int) -> str:
        return self.captions[index][0]

    def image(self, index: int) -> Image.Image:
        """The RGB image of sample ``index`` (a corrupt file raises CorruptSampleError naming it)."""
        return load_rgb(self.paths[index])


def load_registry(path: str | Path) -> dict[str, DatasetSpec]:
    """Registry file in the reference datasets.json format, keyed by dataset name."""
    path = Path(path)
    if not path.is_file():
        raise FifError(f"dataset registry {path} does not exist")
    try:
        raw = json.loads(path.read_text())
        return {
            name: DatasetSpec(name, entry["folder"], entry["type"], entry["role_in_default_benchmark"], entry["primer"])
            for name, entry in raw.items()
        }
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise FifError(f"dataset registry {path} is malformed ({type(error).__name__}: {error}); "
                       f"expected {{name: {{folder, primer, type, role_in_default_benchmark}}}}") from None


def _captions_of(entry: dict, where: str) -> list[str]:
    default = entry.get("default_caption")
    if default:
        return [default] if isinstance(default, str) else list(default)
    merged = entry.get("synthetic_merged_caption") or []
    if merged:
        return list(merged)
    if entry.get("primer_caption"):
        return [entry["primer_caption"]]
    raise FifError(f"{where}: no caption (default_caption, synthetic_merged_caption and primer_caption all empty)")


def read_split(root: str | Path, spec: DatasetSpec, split: str, info_dir: str | Path | None = None) -> Split:
    """Read one split's info file; class names come from the data (target -> classname)."""
    root = Path(root)
    info_dir = Path(info_dir) if info_dir else root / "00_info"
    info_path = info_dir / f"{spec.folder}_{split}.json"
    if not (root / spec.folder).is_dir():
        raise FifError(f"dataset folder {root / spec.folder} does not exist (dataset {spec.name!r})")
    if not info_path.is_file():
        raise FifError(f"info file {info_path} does not exist (dataset {spec.name!r}, split {split!r})")
    try:
        info = json.loads(info_path.read_text())
    except json.JSONDecodeError as error:
        raise FifError(f"info file {info_path} is not valid JSON: {error}") from None
    paths, targets, captions = [], [], []
    names: dict[int, str] = {}
    for key, entry in info.items():
        where = f"{info_path}: {key}"
        try:
            target = int(entry["target"])
        except (KeyError, TypeError, ValueError):
            raise FifError(f"{where}: missing or non-integer 'target'") from None
        paths.append(root / spec.folder / key)
        targets.append(target)
        captions.append(_captions_of(entry, where))
        if spec.kind == "classification":
            classname = entry.get("classname")
            if classname is None:
                raise FifError(f"{where}: classification sample without 'classname'")
            if names.setdefault(target, classname) != classname:
                raise FifError(f"{where}: target {target} is both {names[target]!r} and {classname!r}")
    classnames: list[str] = []
    if names:
        classnames = [names.get(t, f"<missing class {t}>") for t in range(max(names) + 1)]
    return Split(spec, split, paths, targets, classnames, captions, {c: i for i, c in enumerate(classnames)})
