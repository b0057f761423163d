"""Subset evaluation during the stream (``evaluation.validate_on_subset``), as the reference does.

Evaluating every dataset in full after every task costs more than training on small budgets. With
a fraction f, each dataset of N samples and C classes is scored on
    min(N, max(2 C, 300, floor(f N)))
samples, spread evenly over its classes and fixed by the seed, so every evaluation point sees the
same subset. Retrieval sets are always scored on their full gallery, as in the reference: a subset
gallery makes recall easier (R@5 by chance is 5/300 on 300 items, 5/1777 on FSCOCO's full test set,
whose 1,777 sketches share 112 targets, so the class formula alone would cut it to 300). The
zero-shot point before the stream and the point after the last task are full evaluations.
"""

from __future__ import annotations

import math
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np

from fif.data.format.validation import dataset_rng


def subset_size(samples: int, classes: int, fraction: float) -> int:
    """min(N, max(2 C, 300, floor(f N)))."""
    return min(samples, max(2 * classes, 300, math.floor(fraction * samples)))


def balanced_counts(class_sizes: Sequence[int], total: int, rng: np.random.Generator) -> list[int]:
    """How many samples to take per class: as equal as the class sizes allow (water-filling); the
    classes that get one more than the others are drawn by ``rng``."""
    taken = [0] * len(class_sizes)
    left = min(total, sum(class_sizes))
    open_classes = [c for c, size in enumerate(class_sizes) if size > 0]
    while left > 0 and open_classes:
        share, extra = divmod(left, len(open_classes))
        for position, c in enumerate(rng.permutation(open_classes)):
            give = min(class_sizes[c] - taken[c], share + (1 if position < extra else 0))
            taken[c] += give
            left -= give
        open_classes = [c for c in open_classes if taken[c] < class_sizes[c]]
    return taken


def balanced_subset(targets: Sequence[int] | np.ndarray, fraction: float, seed: int, name: str) -> np.ndarray:
    """Sorted sample indices of one dataset's evaluation subset (all of them when the formula says N)."""
    targets = np.asarray(targets)
    classes = np.unique(targets)
    size = subset_size(len(targets), len(classes), fraction)
    if size >= len(targets):
        return np.arange(len(targets))
    rng = dataset_rng(seed, f"subset/{name}")
    members = [np.flatnonzero(targets == c) for c in classes]
    counts = balanced_counts([len(m) for m in members], size, rng)
    chosen = [rng.choice(m, k, replace=False) for m, k in zip(members, counts) if k]
    return np.sort(np.concatenate(chosen))


def subset_fraction(value: float | None) -> float | None:
    """``evaluation.validate_on_subset`` (checked by its declaration, fif.config.blocks): null or 1 -> None
    (full sets), else the fraction."""
    return None if value is None or value == 1 else float(value)


class EvalSubsets:
    """The fixed per-dataset subsets, and which evaluation points use them."""

    def __init__(self, targets: Mapping[str, Sequence[int] | np.ndarray], fraction: float, seed: int,
                 full: Sequence[str] = ()) -> None:
        """``full``: sets scored whole at every point (the retrieval sets)."""
        self.fraction = fraction
        self.indices = {name: np.arange(len(t)) if name in full else balanced_subset(t, fraction, seed, name)
                        for name, t in targets.items()}
        self.full_sizes = {name: len(t) for name, t in targets.items()}

    def at(self, task: int, num_tasks: int) -> dict[str, np.ndarray] | None:
        """The subsets to score after task ``task`` (0-based); None (full sets) after the last one."""
        return None if task >= num_tasks - 1 else self.indices

    def record(self) -> dict[str, Any]:
        return {"fraction": self.fraction,
                "sizes": {name: {"subset": int(len(idx)), "full": int(self.full_sizes[name])}
                          for name, idx in self.indices.items()}}


def eval_subsets(fraction: Any, suite: Any, seed: int) -> EvalSubsets | None:
    """The subsets of an EvalSuite's sets for ``evaluation.validate_on_subset``; None for full sets."""
    fraction = subset_fraction(fraction)
    if fraction is None:
        return None
    retrieval = [s.spec.name for s in suite.sets if s.spec.kind == "retrieval"]
    return EvalSubsets({s.spec.name: s.split.targets for s in suite.sets}, fraction, seed, full=retrieval)
