"""The replay buffer: which earlier training samples the buffer share of a batch may draw from.

The reference keeps every training sample of every earlier task ("storage is cheap, compute is
not"), so the default policy ``all`` does exactly that. Samples are held as global catalogue
indices in numpy arrays (8 bytes each: the 2.5M samples of full FoMo-in-Flux take 20 MB).

Bounded policies, for users whose storage is not cheap, keep at most ``size`` samples:

- ``reservoir``: a uniform random subset of all samples seen so far (every seen sample is held with
  probability size / seen). Implemented as reservoir sampling with random keys: each sample gets
  a seeded uniform key when it arrives and the buffer holds the ``size`` smallest keys.
- ``class_balanced``: equal slots per class seen so far; when full, slots are taken from the largest
  class (a class with fewer samples than its share keeps all of them). Within a class the held
  samples are again the smallest keys, i.e. a uniform subset of that class.

The buffer is a pure function of (seed, policy, size, tasks added): each ``add_task`` draws its
keys from a generator seeded by (seed, task number), never from global random state.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Sequence

import numpy as np
import torch

from fif.errors import FifError

POLICIES = ("all", "reservoir", "class_balanced")


def balanced_quotas(counts: np.ndarray, size: int) -> np.ndarray:
    """Slots per class: equal shares of ``size`` (within 1), a class with fewer samples keeps all.

    Water-filling: the level L is the largest with sum(min(count, L)) <= size; the slots left over
    go +1 to the earliest classes (in ``counts`` order) that still have samples beyond L.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() <= size:
        return counts.copy()
    low, high = 0, int(counts.max())
    while low < high:  # largest level whose total fits
        mid = (low + high + 1) // 2
        if np.minimum(counts, mid).sum() <= size:
            low = mid
        else:
            high = mid - 1
    quotas = np.minimum(counts, low)
    extra = size - int(quotas.sum())
    can_grow = np.flatnonzero(counts > low)[:extra]
    quotas[can_grow] += 1
    return quotas


class ReplayBuffer:
    """Global sample indices of earlier tasks, under one of POLICIES."""

    def __init__(self, policy: str = "all", size: int | None = None, seed: int = 0) -> None:
        if policy not in POLICIES:
            raise FifError(f"experiment.dataset.buffer.policy={policy!r} is not a buffer policy "
                           f"(expected one of {', '.join(POLICIES)})")
        if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1):
            raise FifError(f"experiment.dataset.buffer.size={size} must be a whole number >= 1 (or null)")
        if policy != "all" and size is None:
            raise FifError(f"experiment.dataset.buffer.policy={policy} needs experiment.dataset.buffer.size "
                           f"(the most samples the buffer may hold)")
        if policy == "all" and size is not None:
            raise FifError(f"experiment.dataset.buffer.size={size} bounds the buffer, but policy 'all' keeps "
                           f"every sample; choose policy reservoir or class_balanced, or set size to null")
        self.policy, self.size, self.seed = policy, None if size is None else int(size), int(seed)
        self.tasks_added = 0
        self.seen = 0
        self._parts: list[np.ndarray] = []  # policy 'all': one index array per task
        self._indices = np.empty(0, dtype=np.int64)
        self._labels = np.empty(0, dtype=np.int64)
        self._keys = np.empty(0, dtype=np.float64)

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts) if self.policy == "all" else len(self._indices)

    def indices(self) -> np.ndarray:
        """Held sample indices, in a deterministic order (task order for 'all', ascending otherwise)."""
        if self.policy == "all" and len(self._parts) != 1:
            self._parts = [np.concatenate(self._parts) if self._parts else np.empty(0, dtype=np.int64)]
        return self._parts[0] if self.policy == "all" else self._indices

    def labels(self) -> np.ndarray:
        """Class label of each held sample, aligned with ``indices()`` (bounded policies only)."""
        return self._labels

    def add_task(self, indices: Sequence[int] | np.ndarray, labels: Sequence[int] | np.ndarray | None = None) -> None:
        """Offer one finished task's training samples (and their class labels) to the buffer."""
        new = np.asarray(indices, dtype=np.int64).reshape(-1)
        task = self.tasks_added
        self.tasks_added += 1
        self.seen += len(new)
        if self.policy == "all":
            self._parts.append(new.copy())
            return
        if labels is None:
            raise ValueError(f"buffer policy {self.policy} needs class labels")
        new_labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(new_labels) != len(new):
            raise ValueError(f"{len(new)} indices but {len(new_labels)} labels")
        keys = np.random.default_rng([self.seed % 2**64, task, POLICIES.index(self.policy)]).random(len(new))
        indices = np.concatenate([self._indices, new])
        all_labels = np.concatenate([self._labels, new_labels])
        all_keys = np.concatenate([self._keys, keys])
        keep = self._select(all_labels, all_keys, indices)
        keep = keep[np.argsort(indices[keep], kind="stable")]
        self._indices, self._labels, self._keys = indices[keep], all_labels[keep], all_keys[keep]

    def _select(self, labels: np.ndarray, keys: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Positions of the candidates to keep (smallest keys, per class for class_balanced)."""
        assert self.size is not None
        if len(keys) <= self.size:
            return np.arange(len(keys))
        by_key = np.lexsort((indices, keys))  # ties (vanishingly rare) broken by index
        if self.policy == "reservoir":
            return by_key[:self.size]
        _, first_seen = np.unique(labels, return_index=True)
        classes = labels[np.sort(first_seen)]  # class order = order of first appearance
        order = np.lexsort((keys, labels))  # grouped by class, ascending key within a class
        sorted_labels = labels[order]
        starts = np.searchsorted(sorted_labels, classes, side="left")
        counts = np.searchsorted(sorted_labels, classes, side="right") - starts
        quotas = balanced_quotas(counts, self.size)
        return np.concatenate([order[s:s + q] for s, q in zip(starts, quotas)])

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (tensors, so torch.load(weights_only=True) reads it)."""
        return {"policy": self.policy, "size": self.size, "seed": self.seed, "tasks_added": self.tasks_added,
                "seen": self.seen, "indices": torch.from_numpy(self.indices().copy()),
                "labels": torch.from_numpy(self._labels.copy()), "keys": torch.from_numpy(self._keys.copy())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("policy", "size", "seed"):
            if state[key] != getattr(self, key):
                raise FifError(f"the saved replay buffer has {key}={state[key]!r} but this run has "
                               f"experiment.dataset.buffer {key}={getattr(self, key)!r}"
                               if key != "seed" else
                               f"the saved replay buffer has seed {state[key]} but experiment.seed={self.seed}")
        self.tasks_added, self.seen = int(state["tasks_added"]), int(state["seen"])
        indices = state["indices"].numpy().astype(np.int64)
        if self.policy == "all":
            self._parts = [indices]
        else:
            self._indices = indices
            self._labels = state["labels"].numpy().astype(np.int64)
            self._keys = state["keys"].numpy().astype(np.float64)
