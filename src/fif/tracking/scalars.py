"""Loop events -> named scalars, the one mapping every plotting backend (TensorBoard, W&B) shares.

Events and the scalars they become (``step`` is the x value on the tag's axis):

- ``start`` (gflops_per_sample, ...): nothing; remembered to derive compute spent.
- ``step`` (task, step, samples_seen, loss, lr, other loss terms): ``train/<field>`` and
  ``train/samples_seen``, on the samples-seen axis.
- ``eval`` (task, A_KA, A_ZS, geometric_mean, optional per_dataset, gflops, seconds):
  ``eval/<metric>``, ``eval/task``, ``eval/samples_seen``, ``eval/gflops`` (given, or
  gflops_per_sample x samples_seen, as results.json computes it) and ``dataset/<name>``, on the
  task axis (task 0 = zero-shot). Task 0 also gives the summaries ``zero_shot/<metric>``.
- ``within`` (task, step, samples_seen, A_KA, A_ZS, geometric_mean, per_dataset): an evaluation
  inside a task (the stability gap): ``within/<metric>`` and ``within/dataset/<name>`` on the
  samples-seen axis, where the training curves are.
- ``end`` (A_KA, A_ZS, geometric_mean, per_dataset, seconds, optional averaged, ...): summaries
  ``final/<metric>``, ``final/dataset/<name>``, ``averaged/<metric>`` and ``run/seconds``.
  ``averaged`` is the event's own when it carries one, else the mean over tasks 1..T of the eval
  events this tracker saw (as results.json's "averaged"), left out when it did not see them all
  (a resumed run's tracker starts mid-stream).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import fmean
from typing import Any
from collections.abc import Mapping

HEADLINE = ("A_KA", "A_ZS", "geometric_mean")
TRAIN_AXIS = "train/samples_seen"
EVAL_AXIS = "eval/task"
SUMMARY_PREFIXES = ("zero_shot/", "final/", "averaged/", "run/")


@dataclass(frozen=True)
class Scalar:
    tag: str
    value: float
    step: int

    @property
    def is_summary(self) -> bool:
        """One value per run (W&B summary) rather than a series."""
        return self.tag.startswith(SUMMARY_PREFIXES)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class ScalarMapper:
    """Stateful: ``eval`` needs the GFLOPs per sample of ``start``; ``end`` needs every task's scores."""

    def __init__(self) -> None:
        self.gflops_per_sample: float | None = None
        self.samples_seen = 0
        self.task_scores: dict[int, dict[str, float]] = {}

    def map(self, event: str, fields: Mapping[str, Any]) -> list[Scalar]:
        if event == "start":
            if _number(fields.get("gflops_per_sample")):
                self.gflops_per_sample = float(fields["gflops_per_sample"])
            return []
        if event == "step":
            return self._step(fields)
        if event == "eval":
            return self._eval(fields)
        if event == "within":
            return self._within(fields)
        if event == "end":
            return self._end(fields)
        return []

    def _within(self, fields: Mapping[str, Any]) -> list[Scalar]:
        seen = int(fields["samples_seen"])
        out = [Scalar(TRAIN_AXIS, float(seen), seen)]  # W&B plots within/* against it
        out += [Scalar(f"within/{k}", float(fields[k]), seen) for k in HEADLINE if _number(fields.get(k))]
        per_dataset = fields.get("per_dataset") or {}
        return out + [Scalar(f"within/dataset/{name}", float(v), seen) for name, v in per_dataset.items()
                      if _number(v)]

    def _step(self, fields: Mapping[str, Any]) -> list[Scalar]:
        seen = int(fields["samples_seen"])
        self.samples_seen = seen
        out = [Scalar(TRAIN_AXIS, float(seen), seen)]
        out += [Scalar(f"train/{k}", float(v), seen) for k, v in fields.items()
                if k not in ("step", "samples_seen") and _number(v)]
        return out

    def _eval(self, fields: Mapping[str, Any]) -> list[Scalar]:
        task = int(fields["task"])
        out = [Scalar(EVAL_AXIS, float(task), task), Scalar("eval/samples_seen", float(self.samples_seen), task)]
        out += [Scalar(f"eval/{k}", float(fields[k]), task) for k in (*HEADLINE, "seconds") if _number(fields.get(k))]
        gflops = fields.get("gflops")
        if not _number(gflops) and self.gflops_per_sample is not None:
            gflops = self.gflops_per_sample * self.samples_seen
        if _number(gflops):
            out.append(Scalar("eval/gflops", float(gflops), task))
        per_dataset = fields.get("per_dataset") or {}
        out += [Scalar(f"dataset/{name}", float(v), task) for name, v in per_dataset.items() if _number(v)]
        scores = {k: float(fields[k]) for k in HEADLINE if _number(fields.get(k))}
        if task == 0:
            out += [Scalar(f"zero_shot/{k}", v, 0) for k, v in scores.items()]
        else:
            self.task_scores[task] = scores
        return out

    def _end(self, fields: Mapping[str, Any]) -> list[Scalar]:
        last = max(self.task_scores, default=0)
        out = [Scalar(f"final/{k}", float(fields[k]), last) for k in HEADLINE if _number(fields.get(k))]
        given = fields.get("averaged") if isinstance(fields.get("averaged"), dict) else {}
        seen_all = last > 0 and set(self.task_scores) == set(range(1, last + 1))  # not so after a resume
        for k in HEADLINE:
            values = [scores[k] for scores in self.task_scores.values() if k in scores]
            if _number(given.get(k)):
                out.append(Scalar(f"averaged/{k}", float(given[k]), last))
            elif seen_all and len(values) == last:
                out.append(Scalar(f"averaged/{k}", fmean(values), last))
        per_dataset = fields.get("per_dataset") or {}
        out += [Scalar(f"final/dataset/{name}", float(v), last) for name, v in per_dataset.items() if _number(v)]
        if _number(fields.get("seconds")):
            out.append(Scalar("run/seconds", float(fields["seconds"]), last))
        return out
