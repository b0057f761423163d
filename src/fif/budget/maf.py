"""Memory-Adjusted FLOPs (MAF) and the steps a budget buys (arXiv 2408.14471, sec. 3).

MAF = GFLOPs x (peak memory of the method / peak memory of full finetuning): a method that needs
less memory can run larger batches or on smaller machines, so its FLOPs count for less. A task's
budget is a number of MAF-GFLOPs; the reference states it as the steps full finetuning gets
(1,420 steps of 512 at 20 tasks), so a method gets
    steps = floor(MAF_fullft_step x fullft_steps / MAF_method_step)
and, where the method also computes something once per task (EWC's Fisher pass), that pass's
MAF is taken from the task's budget first (``charge_end_of_task``).
"""

from __future__ import annotations

import math

from fif.errors import FifError

# floor() of a ratio that is an integer in exact arithmetic (full finetuning's own steps) must not
# drop by one through float rounding.
_ROUNDING = 1e-9


def memory_ratio(peak_bytes: int, fullft_peak_bytes: int) -> float:
    """Peak memory of the method relative to full finetuning's."""
    if fullft_peak_bytes <= 0:
        raise FifError("full finetuning's peak memory is zero: cannot form a memory ratio")
    return peak_bytes / fullft_peak_bytes


def maf(gflops: float, peak_bytes: int, fullft_peak_bytes: int) -> float:
    """Memory-Adjusted FLOPs: ``gflops`` scaled by the method's peak memory relative to full finetuning's."""
    return gflops * memory_ratio(peak_bytes, fullft_peak_bytes)


def fullft_budget(fullft_steps: float, fullft_step_gflops: float) -> float:
    """The MAF budget of ``fullft_steps`` steps of full finetuning (its memory ratio is 1)."""
    return fullft_steps * fullft_step_gflops


def steps_for_budget(budget: float, step_maf: float, end_of_task_maf: float = 0.0) -> int:
    """Whole steps of cost ``step_maf`` that fit in ``budget`` after the end-of-task pass (0 if none fit)."""
    if step_maf <= 0:
        raise FifError(f"a training step costs {step_maf} MAF-GFLOPs: nothing to budget (no trainable parameters?)")
    left = budget - end_of_task_maf
    return max(0, math.floor(left / step_maf * (1 + _ROUNDING))) if left > 0 else 0
