"""Forgetting and backward transfer of a run, from its per-dataset scores after every task.

For a dataset d with score a_l after task l (a_0: the zero-shot model) in a stream of T tasks:

- a streamed dataset, brought first by task f_d and last by task l_d (tasks are 1-based):
    forgetting_d         = max over f_d <= l < T of a_l  -  a_T   (Chaudhry et al., 2018)
    backward_transfer_d  = a_T - a_{l_d}, when l_d < T              (Lopez-Paz & Ranzato, 2017)
  A dataset only the last task brings has neither: nothing came after it.
- a held-out dataset: forgetting_d = max over 0 <= l < T of a_l  -  a_T: how far the final model
  is below the best this dataset ever was, the zero-shot model included.

These are the reference's Forgetting and BackwardTransfer (utils/metrics.py), applied per
dataset (the reference computes them per task of a one-dataset stream). Averages are plain means
over the datasets that have a value; negative forgetting means the final model is the best.
With ``evaluation.validate_on_subset`` the points before the last task are subset scores and
a_T is a full-set score, so small differences are within the subsets' sampling noise.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any
from collections.abc import Mapping, Sequence


def _mean(values: list[float]) -> float | None:
    return fmean(values) if values else None


def brought_by(task_datasets: Sequence[Sequence[str]]) -> dict[str, tuple[int, int]]:
    """Per streamed dataset: the first and the last task (1-based) that bring it."""
    spans: dict[str, tuple[int, int]] = {}
    for t, names in enumerate(task_datasets, start=1):
        for name in names:
            spans[name] = (spans.get(name, (t, t))[0], t)
    return spans


def transfer_metrics(zero_shot: Mapping[str, float], tasks: Sequence[Mapping[str, float]],
                     task_datasets: Sequence[Sequence[str]], held_out: Sequence[str]) -> dict[str, Any]:
    """Per dataset and averaged forgetting / backward transfer; ``tasks[l - 1]``: per-dataset scores after task l."""
    last = len(tasks)
    series = [zero_shot, *tasks]
    per_dataset: dict[str, dict[str, Any]] = {}
    for name, (first, final_task) in brought_by(task_datasets).items():
        if last < 2 or not all(name in s for s in series[first:]):
            continue
        before = [series[l][name] for l in range(first, last)]
        per_dataset[name] = {"first_task": first, "last_task": final_task,
                             "forgetting": max(before) - series[last][name] if before else None,
                             "backward_transfer": (series[last][name] - series[final_task][name]
                                                   if final_task < last else None)}
    for name in held_out:
        if last >= 1 and all(name in s for s in series):
            per_dataset[name] = {"forgetting": max(s[name] for s in series[:last]) - series[last][name]}
    streamed = [v for k, v in per_dataset.items() if k not in held_out]
    return {"forgetting": _mean([v["forgetting"] for v in streamed if v["forgetting"] is not None]),
            "backward_transfer": _mean([v["backward_transfer"] for v in streamed
                                        if v["backward_transfer"] is not None]),
            "forgetting_zs": _mean([per_dataset[k]["forgetting"] for k in held_out if k in per_dataset]),
            "per_dataset": per_dataset}
