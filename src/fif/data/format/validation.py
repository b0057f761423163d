"""Validation mode: tune on a split carved from training data, never on test data.

With ``experiment.dataset.validation_mode=true`` every dataset with a train split is carved, per
class and seeded, into a training part (``train_val_split``, 0.8) and a validation part (the rest).
The stream draws only from training parts; validation parts replace the test splits in evaluation:
A_KA on the adaptation datasets' validation parts, A_ZS on the evaluation-only datasets'
validation parts, as the reference does. An evaluation-only dataset without a train split (most
of them: ImageNet-A/R/S/D/V2, ... and every mini one) has nothing to carve; ``validation_fallback``
decides: ``exclude`` (default) leaves it out of A_ZS with a warning, ``test`` keeps its test split
and says so in the log and in results.json.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import numpy as np

from fif.data.format.fif_format import DatasetSpec, Split, read_split
from fif.data.format.info_files import info_file
from fif.data.format.packed import PackedCaptions, PackedStrings



@dataclass(frozen=True)
class Carved:
    """Sample indices (sorted, disjoint) of one train split's training and validation parts."""

    train: np.ndarray
    validation: np.ndarray


def dataset_rng(seed: int, name: str) -> np.random.Generator:
    """A generator fixed by (seed, dataset name): the same draw in every run and process."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def carve(targets: np.ndarray, train_fraction: float, seed: int, name: str) -> Carved:
    """Per class, int(n * train_fraction) samples (at least one, so every class stays streamable)
    train and the rest validate. When every sample is its own class (retrieval items) the split
    is drawn over all samples instead."""
    targets = np.asarray(targets)
    rng = dataset_rng(seed, name)
    classes, counts = np.unique(targets, return_counts=True)
    if len(targets) and counts.max() == 1:  # no class structure: split the items themselves
        order = rng.permutation(len(targets))
        keep = min(max(int(len(targets) * train_fraction), 1), max(len(targets) - 1, 1))
        return Carved(np.sort(order[:keep]), np.sort(order[keep:]))
    train, validation = [], []
    for target in classes:
        members = rng.permutation(np.flatnonzero(targets == target))
        keep = max(int(len(members) * train_fraction), 1)
        train.append(members[:keep])
        validation.append(members[keep:])
    empty = np.zeros(0, dtype=np.int64)
    return Carved(np.sort(np.concatenate(train or [empty])), np.sort(np.concatenate(validation or [empty])))


def subset_split(split: Split, indices: Sequence[int] | np.ndarray, name: str) -> Split:
    """The samples ``indices`` of ``split`` as a split of their own (same classes, same image store)."""
    indices = [int(i) for i in indices]
    return Split(split.spec, name, PackedStrings(split.keys[i] for i in indices), split.targets[indices],
                 split.classnames, PackedCaptions(split.captions[i] for i in indices), split.store,
                 split.info_path, dict(split.class_of))


@dataclass
class ValidationPlan:
    """What validation mode evaluates instead of each test split, and the carve of each train split."""

    train_fraction: float
    seed: int
    fallback: str
    eval_splits: dict[str, Split] = field(default_factory=dict)  # dataset name -> its validation part
    carved: dict[str, Carved] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)  # evaluation datasets left out (nothing to carve)
    test_kept: list[str] = field(default_factory=list)  # evaluated on their test split (fallback test)

    def train_part(self, split: Split) -> Split:
        """The training part of a train split (the catalogue streams only from it)."""
        name = split.spec.name
        if name not in self.carved:
            self.carved[name] = carve(split.targets, self.train_fraction, self.seed, name)
        return subset_split(split, self.carved[name].train, f"{split.name}[train part]")

    def keep(self, specs: Sequence[DatasetSpec]) -> list[DatasetSpec]:
        """The datasets still evaluated (the excluded ones removed)."""
        return [s for s in specs if s.name not in self.excluded]

    def record(self) -> dict[str, Any]:
        """The results.json block: how the validation splits were made, per dataset."""
        return {"train_val_split": self.train_fraction, "seed": self.seed, "fallback": self.fallback,
                "excluded": list(self.excluded), "test_split_used": list(self.test_kept),
                "sizes": {name: {"train": int(len(c.train)), "validation": int(len(c.validation))}
                          for name, c in sorted(self.carved.items())}}

    def warnings(self) -> list[str]:
        lines = ["VALIDATION MODE: scores below are on validation splits carved from training data "
                 f"({1 - self.train_fraction:.0%} of each train split), not test scores"]
        if self.excluded:
            lines.append(f"validation mode: {len(self.excluded)} evaluation dataset(s) have no train split to carve "
                         f"and are left out of A_ZS: {', '.join(self.excluded)} "
                         "(experiment.dataset.validation_fallback=test keeps their test splits instead)")
        if self.test_kept:
            lines.append(f"WARNING validation mode: {len(self.test_kept)} dataset(s) are scored on their TEST split "
                         f"(no train split to carve; validation_fallback=test): {', '.join(self.test_kept)}")
        return lines


def build_validation(root: str | Path, specs: Sequence[DatasetSpec], train_fraction: float, seed: int,
                     fallback: str = "exclude", info_dir: str | Path | None = None, *, tar: bool = False,
                     resized: bool = False) -> ValidationPlan:
    """Carve every dataset's train split; datasets without one follow ``fallback`` (``train_fraction`` and
    ``fallback`` are checked by their declarations, fif.config.blocks)."""
    plan = ValidationPlan(float(train_fraction), int(seed), fallback)
    root = Path(root)
    infos = Path(info_dir) if info_dir else root / "00_info"
    for spec in specs:
        if info_file(infos, root, spec.folder, "train", tar, resized).is_file():
            train = read_split(root, spec, "train", info_dir, tar=tar, resized=resized)
            carved = carve(train.targets, plan.train_fraction, plan.seed, spec.name)
            if len(carved.validation):
                plan.carved[spec.name] = carved
                plan.eval_splits[spec.name] = subset_split(train, carved.validation, "train[validation part]")
                continue
        (plan.excluded if fallback == "exclude" else plan.test_kept).append(spec.name)
    return plan
