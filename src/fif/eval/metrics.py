"""A_KA, A_ZS and their geometric mean, from per-dataset scores (percentages).

A_KA is the mean score over the adaptation datasets (knowledge accumulation), A_ZS the mean over
the evaluation-only datasets (zero-shot retention), GM = sqrt(A_KA * A_ZS).
"""

from __future__ import annotations

import math
from statistics import fmean
from typing import Mapping, Sequence

from fif.data.format.fif_format import DatasetSpec
from fif.eval.suite import DatasetScore


def geometric_mean(a_ka: float, a_zs: float) -> float:
    return math.sqrt(max(a_ka, 0.0) * max(a_zs, 0.0))


def summarize(scores: Mapping[str, DatasetScore], specs: Sequence[DatasetSpec]) -> dict:
    """The results.json block for one evaluation point."""
    adaptation = [scores[s.name].score for s in specs if not s.eval_only and s.name in scores]
    evaluation = [scores[s.name].score for s in specs if s.eval_only and s.name in scores]
    a_ka = fmean(adaptation) if adaptation else float("nan")
    a_zs = fmean(evaluation) if evaluation else float("nan")
    return {
        "A_KA": a_ka,
        "A_ZS": a_zs,
        "geometric_mean": geometric_mean(a_ka, a_zs),
        "per_dataset": {name: s.score for name, s in scores.items()},
        "details": {name: s.details for name, s in scores.items()},
    }
