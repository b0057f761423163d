"""Learning-rate schedules within a task (the reference's formulas).

cosine_with_linear_warmup, with S steps and W = ceil(warmup * S) warmup steps:
    n < W:  lr0 * (n + 1) / W
    else:   min_lr + (1 + cos(pi * (n - W + 1) / (S - W))) / 2 * (lr0 - min_lr),  min_lr = lr0 * 1e-3
"""

from __future__ import annotations

import math

from fif.errors import FifError

SCHEDULES = ("cosine_with_linear_warmup", "constant")


def warmup_steps(total_steps: int, warmup: float | int) -> int:
    """Warmup given as a fraction of the task (< 1) or as a number of steps (>= 1)."""
    if warmup < 1:
        return math.ceil(warmup * total_steps)
    return min(int(warmup), total_steps)


def learning_rate(name: str, step: int, total_steps: int, peak_lr: float, warmup: float | int = 0.1,
                  min_lr_ratio: float = 1e-3) -> float:
    """The learning rate at ``step`` (0-based) of a task with ``total_steps`` steps."""
    w = warmup_steps(total_steps, warmup)
    if name == "constant":
        return peak_lr * (step + 1) / w if step < w else peak_lr
    if name == "cosine_with_linear_warmup":
        if step < w:
            return peak_lr * (step + 1) / w
        min_lr = peak_lr * min_lr_ratio
        progress = (step - w + 1) / max(1, total_steps - w)
        return min_lr + (1 + math.cos(math.pi * progress)) / 2 * (peak_lr - min_lr)
    raise FifError(f"experiment.scheduler.name={name!r} is not a known schedule (expected one of: {', '.join(SCHEDULES)})")
