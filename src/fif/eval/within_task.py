"""Evaluations inside a task, the "stability gap" probes: after which optimizer steps they happen.

A continually trained model often dips on old knowledge early in a task and recovers later (De
Lange et al., 2023); task-end evaluations cannot see it. Two keys place evaluations inside tasks:

- ``evaluation.every_n_samples=N`` (the reference's ``experiment.task.eval_every_n_samples``): after
  each step whose samples of the task reach a multiple of N (with batch B, after step k when
  floor(k B / N) > floor((k - 1) B / N));
- ``evaluation.gap_samples=[x, ...]`` (the reference's ``experiment.task.gap_samples``): after step
  ceil(x / B) of every task.

The task's last step is never one of them: the task-end evaluation follows it anyway. Points
inside a task are scored on the fixed subsets of ``evaluation.validate_on_subset`` (the full sets
when it is unset), as the reference's stability-gap evaluations are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence



def gap_points(values: Sequence[int] | None) -> tuple[int, ...]:
    """``evaluation.gap_samples`` (checked by its declaration, fif.config.blocks) as sorted distinct counts."""
    return tuple(sorted(set(int(v) for v in values or ())))


def within_task_steps(every_n_samples: int | None, gap_samples: Sequence[int], batch_size: int,
                      steps: int) -> frozenset[int]:
    """The step counts (1 .. steps - 1: steps done in the task) after which to evaluate."""
    chosen: set[int] = set()
    if every_n_samples:
        chosen |= {k for k in range(1, steps) if (k * batch_size) // every_n_samples
                   > ((k - 1) * batch_size) // every_n_samples}
    chosen |= {math.ceil(x / batch_size) for x in gap_samples}
    return frozenset(k for k in chosen if 1 <= k < steps)
