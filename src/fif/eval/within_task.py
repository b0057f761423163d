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
from typing import Any
from collections.abc import Sequence

from fif.errors import FifError


def check_every_n_samples(value: Any) -> int | None:
    """``evaluation.every_n_samples``: null (none) or a positive whole number of samples."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise FifError(f"evaluation.every_n_samples={value!r} is not valid: expected null (evaluate at task ends "
                       "only) or a positive number of samples")
    return int(value)


def check_gap_samples(value: Any) -> tuple[int, ...]:
    """``evaluation.gap_samples``: a list of positive sample counts inside each task (empty: none)."""
    values = list(value or [])
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v <= 0]
    if bad:
        raise FifError(f"evaluation.gap_samples={values!r} is not valid: expected a list of positive sample counts "
                       f"inside each task (not {bad[0]!r})")
    return tuple(sorted(set(int(v) for v in values)))


def within_task_steps(every_n_samples: int | None, gap_samples: Sequence[int], batch_size: int,
                      steps: int) -> frozenset[int]:
    """The step counts (1 .. steps - 1: steps done in the task) after which to evaluate."""
    chosen: set[int] = set()
    if every_n_samples:
        chosen |= {k for k in range(1, steps) if (k * batch_size) // every_n_samples
                   > ((k - 1) * batch_size) // every_n_samples}
    chosen |= {math.ceil(x / batch_size) for x in gap_samples}
    return frozenset(k for k in chosen if 1 <= k < steps)
