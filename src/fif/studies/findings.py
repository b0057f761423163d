"""The paper's conclusions as checks on a study's runs: each finding is a comparison of arms on one metric.

A finding holds when the mean difference it claims exceeds the seeds' spread: for arms a and b,
``effect = mean(a) - mean(b)`` (signed so that the claim says effect > 0) and ``spread = sd(a) +
sd(b)`` (sample standard deviations over seeds; 0 with one seed, which the verdict says). The
comparison kinds, one per finding:

- ``greater: [a, b]`` / ``less: [a, b]``: a's metric above / below b's;
- ``best: a`` / ``worst: a`` (optionally ``among: [...]``, default every arm): a above / below each
  of the others (the effect is the smallest margin, against the closest arm);
- ``below: x`` / ``above: x`` with ``arm: a``: a's metric below / above the number x.

Metrics are read from results.json: ``final.K``, ``averaged.K``, ``zero_shot.K`` and ``delta.K``
(final minus zero-shot), K one of A_KA, A_ZS, geometric_mean.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping, Sequence

from fif.errors import FifError

POINTS = ("final", "averaged", "zero_shot", "delta")
KEYS = ("A_KA", "A_ZS", "geometric_mean")
KINDS = ("greater", "less", "best", "worst", "below", "above")


def metric_value(results: Mapping[str, Any], metric: str) -> float:
    """``metric`` (e.g. ``final.A_KA``, ``delta.A_ZS``) of one run's results.json."""
    point, key = metric.split(".", 1)
    if point == "delta":
        return float(results["final"][key]) - float(results["zero_shot"][key])
    return float(results[point][key])


def check_metric(metric: Any, where: str) -> str:
    parts = metric.split(".", 1) if isinstance(metric, str) else []
    if len(parts) != 2 or parts[0] not in POINTS or parts[1] not in KEYS:
        raise FifError(f"{where}.metric={metric!r} is not valid: expected POINT.KEY with POINT one of "
                       f"{', '.join(POINTS)} and KEY one of {', '.join(KEYS)} (e.g. final.A_KA)")
    return metric


@dataclass(frozen=True)
class Finding:
    """One conclusion of the paper, as a comparison (see the module docstring)."""

    id: str
    claim: str
    metric: str
    kind: str
    arms: tuple[str, ...]  # greater/less: (a, b); best/worst: (a, *among); below/above: (a,)
    threshold: float | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str, arms: Sequence[str]) -> Finding:
        """A grid file's finding entry; unknown arms and kinds are one-line errors naming the field."""
        if not isinstance(data, dict) or not data.get("id") or not data.get("claim"):
            raise FifError(f"{where}: a finding needs id, claim, metric and one of {', '.join(KINDS)}")
        kinds = [k for k in KINDS if k in data]
        if len(kinds) != 1:
            raise FifError(f"{where}: a finding compares in exactly one way (one of {', '.join(KINDS)}), "
                           f"not {kinds or 'none'}")
        kind, value = kinds[0], data[kinds[0]]
        threshold = None
        if kind in ("greater", "less"):
            named = value if isinstance(value, list) and len(value) == 2 else None
        elif kind in ("best", "worst"):
            among = data.get("among") or list(arms)
            named = [value, *[a for a in among if a != value]] if isinstance(value, str) else None
        else:
            named = [data.get("arm")]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise FifError(f"{where}.{kind}={value!r} is not valid: expected a number")
            threshold = float(value)
        if not named or not all(isinstance(a, str) and a in arms for a in named):
            raise FifError(f"{where}.{kind}: expected arm names of this grid ({', '.join(arms)}), "
                           f"not {value if kind not in ('below', 'above') else data.get('arm')!r}")
        return cls(str(data["id"]), str(data["claim"]), check_metric(data.get("metric"), where), kind,
                   tuple(named), threshold)


@dataclass(frozen=True)
class Verdict:
    """What the runs say about one finding."""

    finding: Finding
    effect: float  # > 0: the claimed direction
    spread: float
    seeds: int
    detail: str

    @property
    def holds(self) -> bool:
        return self.effect > self.spread

    def row(self) -> dict[str, Any]:
        return {"id": self.finding.id, "claim": self.finding.claim, "metric": self.finding.metric,
                "effect": self.effect, "spread": self.spread, "seeds": self.seeds, "holds": self.holds,
                "detail": self.detail}


def _stats(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def judge(finding: Finding, values: Mapping[str, Sequence[float]]) -> Verdict | None:
    """The verdict from each arm's metric over its seeds; None while an arm has no finished run."""
    if any(not values.get(arm) for arm in finding.arms):
        return None
    stats = {arm: _stats(values[arm]) for arm in finding.arms}
    seeds = min(len(values[arm]) for arm in finding.arms)
    text = ", ".join(f"{arm} {m:.2f}±{s:.2f}" for arm, (m, s) in stats.items())
    mean, sd = stats[finding.arms[0]]
    if finding.kind in ("below", "above"):
        sign = 1.0 if finding.kind == "above" else -1.0
        return Verdict(finding, sign * (mean - finding.threshold), sd, seeds,  # type: ignore[operator]
                       f"{text} ({finding.kind} {finding.threshold:g})")
    sign = 1.0 if finding.kind in ("greater", "best") else -1.0
    margins = [(sign * (mean - stats[other][0]), sd + stats[other][1], other) for other in finding.arms[1:]]
    effect, spread, closest = min(margins, key=lambda m: m[0] - m[1])  # the comparison closest to failing
    return Verdict(finding, effect, spread, seeds, f"{text} (closest: {closest})")
