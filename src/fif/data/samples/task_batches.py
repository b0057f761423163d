"""Batches of one task's own training samples, handed to methods through ``TaskInfo.sample_batches``.

A method never touches the data loader; EWC still needs the finished task's data for its Fisher
(the reference iterates the task's train loader at end_task). The loop gives it this callable
instead: deterministic (seed, task), only the task's samples (no buffer or pretraining replay),
the training transform, and step numbers after the task's training steps so the augmentation and
caption draws differ from the training batches'. The batches come through the training loader
(the same workers and prefetching), so the Fisher pass is not decoded in one process.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

from fif.data.samples.batches import Batch, BatchBuilder
from fif.data.samples.loader import LoaderSettings, step_batches
from fif.data.samples.mixture import BatchPlan


def task_batches(builder: BatchBuilder, task_indices: Sequence[int], seed: int, task: int,
                 first_step: int, loader: LoaderSettings | None = None) -> Callable[[int, int], Iterator[Batch]]:
    """``draw(n_samples, batch_size)``: floor(n / b) disjoint batches of b samples, n capped at the task's size."""
    loader = loader if loader is not None else LoaderSettings()

    def draw(n_samples: int, batch_size: int) -> Iterator[Batch]:
        order = [int(i) for i in task_indices]
        random.Random(f"{seed}/task_batches/{task}").shuffle(order)
        n = min(int(n_samples), len(order))
        size = min(int(batch_size), n)
        if size < 1:
            return
        candidates = {"update": task_indices}
        plans = ((first_step + k, BatchPlan(order[k * size:(k + 1) * size], [], 0, candidates))
                 for k in range(n // size))
        yield from step_batches(builder, plans, task, candidates, loader)

    return draw
