"""Training batches mixed from the current task, the replay buffer and the pretraining pool.

The split rule is the reference's: each source gets int(batch_size * share); the remainder goes
+1 per source in the order pretraining, update, buffer. While the buffer is empty (task 0) its
share is split between update and pretraining (all to update when the pretraining share is 0).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from collections.abc import Sequence

from fif.errors import FifError

SOURCES = ("pretraining", "update", "buffer")


def batch_split(batch_size: int, shares: dict[str, float], buffer_empty: bool = False,
                pool_available: bool = True) -> dict[str, int]:
    """How many samples of a batch come from each source."""
    shares = {s: float(shares.get(s, 0.0)) for s in SOURCES}
    if any(v < 0 for v in shares.values()) or not math.isclose(sum(shares.values()), 1.0, abs_tol=1e-6):
        raise FifError(f"experiment.dataset.data_mixture={shares} must be non-negative and sum to 1")
    if buffer_empty and shares["buffer"] > 0:
        # halves to update and pretraining; all to update when the mixture has no pretraining share
        takers = ["pretraining", "update"] if shares["pretraining"] > 0 else ["update"]
        moved = shares["buffer"] / len(takers)
        shares = {s: shares[s] + moved if s in takers else shares[s] for s in SOURCES}
        shares["buffer"] = 0.0
    if not pool_available and shares["pretraining"] > 0:
        raise FifError("experiment.dataset.data_mixture.pretraining > 0 but no pretraining pool is configured "
                       "(set experiment.dataset.pretraining_pool)")
    counts = {s: int(batch_size * shares[s]) for s in SOURCES}
    remainder = batch_size - sum(counts.values())
    for source in SOURCES:
        if remainder == 0:
            break
        if shares[source] > 0:
            counts[source] += 1
            remainder -= 1
    counts["update"] += remainder  # only when every positive share was already topped up
    return counts


@dataclass
class BatchPlan:
    """The sample indices one training step draws (pool samples are taken from the stream).

    ``candidates`` holds each index source's full population, so a corrupt sample can be replaced
    by another sample of the same source.
    """

    update: list[int]
    buffer: list[int]
    pretraining: int
    candidates: dict[str, Sequence[int]] = field(default_factory=dict, repr=False)


class MixtureSampler:
    """Draws the update/buffer indices of every step as a pure function of (seed, task, step).

    The current task is walked in shuffled epochs (a fresh permutation per epoch); the buffer is
    drawn uniformly with replacement from the replay buffer's held indices (a list or a numpy
    array, fixed for the task). Because nothing depends on earlier draws, a resumed run
    draws exactly what the uninterrupted run drew.
    """

    def __init__(self, seed: int, task: int, task_indices: Sequence[int], buffer_indices: Sequence[int],
                 counts: dict[str, int]) -> None:
        if len(task_indices) == 0:
            raise FifError(f"task {task} has no training samples")
        self.seed, self.task = seed, task
        self.task_indices, self.buffer_indices, self.counts = task_indices, buffer_indices, counts
        self._epoch_cache: dict[int, list[int]] = {}

    def _epoch_order(self, epoch: int) -> list[int]:
        if epoch not in self._epoch_cache:
            order = list(self.task_indices)
            random.Random(f"{self.seed}/update/{self.task}/{epoch}").shuffle(order)
            self._epoch_cache = {epoch: order}
        return self._epoch_cache[epoch]

    def plan(self, step: int) -> BatchPlan:
        n = self.counts["update"]
        start = step * n
        update = []
        for position in range(start, start + n):
            epoch, offset = divmod(position, len(self.task_indices))
            update.append(int(self._epoch_order(epoch)[offset]))
        rng = random.Random(f"{self.seed}/buffer/{self.task}/{step}")
        size = len(self.buffer_indices)
        buffer = [int(self.buffer_indices[rng.randrange(size)]) for _ in range(self.counts["buffer"])] if size else []
        return BatchPlan(update, buffer, self.counts["pretraining"],
                         {"update": self.task_indices, "buffer": self.buffer_indices})
