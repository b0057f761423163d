"""A_KA, A_ZS and their geometric mean, from per-dataset scores (percentages).

A_KA is the mean score over the adaptation datasets (knowledge accumulation), A_ZS the mean over
the evaluation-only datasets (zero-shot retention), GM = sqrt(A_KA * A_ZS). Which adaptation
datasets count in A_KA is the caller's choice (``knowledge``: by default a run passes the datasets
its stream brings, as the reference does; see fif.eval.scope). A_KA_task_masked is the mean of the
same datasets' task-masked accuracy, where it was scored.
"""

from __future__ import annotations

import math
from statistics import fmean
from collections.abc import Collection, Mapping, Sequence

from fif.data.format.fif_format import DatasetSpec
from fif.eval.suite import TASK_MASKED, DatasetScore


def geometric_mean(a_ka: float, a_zs: float) -> float:
    return math.sqrt(max(a_ka, 0.0) * max(a_zs, 0.0))


def summarize(scores: Mapping[str, DatasetScore], specs: Sequence[DatasetSpec],
              knowledge: Collection[str] | None = None) -> dict:
    """The results.json block for one evaluation point; ``knowledge``: the adaptation datasets A_KA
    averages over (None: every adaptation dataset of ``specs``)."""
    counted = [s.name for s in specs if not s.eval_only and s.name in scores
               and (knowledge is None or s.name in knowledge)]
    adaptation = [scores[name].score for name in counted]
    evaluation = [scores[s.name].score for s in specs if s.eval_only and s.name in scores]
    a_ka = fmean(adaptation) if adaptation else float("nan")
    a_zs = fmean(evaluation) if evaluation else float("nan")
    point = {
        "A_KA": a_ka,
        "A_ZS": a_zs,
        "geometric_mean": geometric_mean(a_ka, a_zs),
        "per_dataset": {name: s.score for name, s in scores.items()},
        "details": {name: s.details for name, s in scores.items()},
    }
    masked = [scores[name].details[TASK_MASKED] for name in counted if TASK_MASKED in scores[name].details]
    if masked:
        point["A_KA_task_masked"] = fmean(masked)
    return point
