"""The one owner of results.json's layout: the run writes it through ``RunResults``, reports read it.

A run's results.json is the record everything else derives from (tables, plots, the HTML
report, resume). Its shape (scores in percent)::

    {"config": {...}, "status": "running" | "complete" | "failed", ["error": "<one line>",]
     <evaluation protocol fields>, "world_size": N,
     "ka_datasets": "stream" | "registry", "knowledge_datasets": [..], "held_out_datasets": [..],
     "task_datasets": [[names task 1 brings], ...],
     "zero_shot": POINT, ["zero_shot_subset": POINT,]
     "tasks": [POINT + {"task", "subset_evaluation", "classes", "samples_seen", "gflops", "seconds",
                         "train_seconds", "data_wait_seconds", "within_eval_seconds", "buffer_samples"}, ...],
     ["within_task": [HEADLINE + {"per_dataset", "task", "step", "samples_in_task", "samples_seen",
                                  "subset_evaluation", "seconds"}, ...],]
     "final": POINT, "averaged": HEADLINE, "seconds": ..,
     ["transfer": {"forgetting", "backward_transfer", "forgetting_zs", "task_masked_accuracy",
                   "per_dataset": {name: {"forgetting", ["backward_transfer", "first_task", "last_task"]}}},]
     ["skipped_corrupt": N, "skipped_corrupt_files": {file: count}],
     "skipped_nonfinite_steps": N}

    POINT = HEADLINE + {"per_dataset": {name: score}, "details": {name: {...}}, ["A_KA_task_masked"]}
    HEADLINE = {"A_KA", "A_ZS", "geometric_mean"}

"within_task" holds the evaluations inside tasks (evaluation.every_n_samples / gap_samples, the
stability gap), "transfer" the forgetting metrics of fif.eval.transfer (written at the end of a
stream of at least one task). A run that stopped on an error is ``"failed"`` with the one-line
reason in "error" (``fail``); resumed and completed, it is ``"complete"`` again and the error is
gone. "skipped_nonfinite_steps" counts the optimizer steps whose update was skipped because the
loss or the gradient was not finite (experiment.optimizer.skip_nonfinite_steps); it is part of the
checkpointed results, so a resumed run keeps counting.

Only this module spells those keys; the loop and ``fif.report`` call its methods. It imports
nothing heavier than json, so reports can read results without torch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import fmean
from typing import Any
from collections.abc import Callable, Mapping, Sequence

from fif.errors import FifError
from fif.utils.io import atomic_write_json

# (zero-shot per-dataset scores, per-task per-dataset scores, datasets per task, held-out datasets) -> metrics
TransferMetrics = Callable[[Mapping[str, float], Sequence[Mapping[str, float]], Sequence[Sequence[str]], Sequence[str]], dict[str, Any]]

FILENAME = "results.json"
HEADLINE = ("A_KA", "A_ZS", "geometric_mean")
POINTS = ("zero_shot", "final", "averaged")  # the headline points of a run, in table order
RUNNING, COMPLETE, FAILED = "running", "complete", "failed"
FINAL_KEYS = (*HEADLINE, "per_dataset", "details", "A_KA_task_masked")  # what "final" copies from the last task
EVAL_EVENT_KEYS = (*HEADLINE, "per_dataset")  # what each evaluation sends to the trackers


def average_over_tasks(tasks: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean of each headline metric over the evaluated tasks (NaN before any task)."""
    return {k: fmean(t[k] for t in tasks) for k in HEADLINE} if tasks else {k: float("nan") for k in HEADLINE}


def headline(point: Any) -> dict[str, float] | None:
    """A_KA / A_ZS / GM of an evaluation point, or None when it is missing or incomplete."""
    if not isinstance(point, dict) or not all(k in point for k in HEADLINE):
        return None
    return {k: point[k] for k in HEADLINE}


def finite(value: Any) -> float | None:
    """A number as float, or None for NaN, inf and non-numbers (what tables and plots may show)."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


class RunResults:
    """results.json of one run, as a dict behind named operations (``data`` is the dict itself)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    # ------------------------------------------------------------------ writing (the run)
    @classmethod
    def start(cls, config: dict[str, Any], protocol: Mapping[str, Any], world_size: int) -> RunResults:
        """A new run: its config, the evaluation protocol it follows and its process count."""
        return cls({"config": config, "status": RUNNING, **protocol, "world_size": world_size})

    def record_zero_shot(self, point: dict[str, Any], subset_point: dict[str, Any] | None = None) -> None:
        """The model before any update (full sets), and on the fixed subsets when the run uses them."""
        self.data["zero_shot"] = point
        if subset_point is not None:
            self.data["zero_shot_subset"] = subset_point
        self.data["tasks"] = []

    def record_task(self, point: dict[str, Any], **facts: Any) -> dict[str, Any]:
        """Task ``facts['task']``'s evaluation point plus what the run knows of it (samples, seconds, ...)."""
        point.update(facts)
        self.data["tasks"].append(point)
        return point

    def record_within(self, point: dict[str, Any], **facts: Any) -> dict[str, Any]:
        """An evaluation inside a task (``facts``: task, step, samples_in_task, samples_seen, seconds, ...)."""
        entry = {**{k: point[k] for k in (*HEADLINE, "per_dataset")}, **facts}
        self.data.setdefault("within_task", []).append(entry)
        return entry

    def finish(self, seconds: float, skipped: dict[str, Any] | None = None,
               transfer_metrics: TransferMetrics | None = None) -> None:
        """Final = the last task's point (the zero-shot one when nothing was trained), averaged = the mean
        over tasks, the forgetting metrics (``transfer_metrics``: fif.eval.transfer's, given by the run so
        this bottom-layer module imports no evaluation code); status complete."""
        last = self.tasks[-1] if self.tasks else self.data["zero_shot"]
        self.data["final"] = {k: last[k] for k in FINAL_KEYS if k in last}
        self.data["averaged"] = average_over_tasks(self.tasks)
        if transfer_metrics is not None and self.tasks and "task_datasets" in self.data:
            self.data["transfer"] = {
                **transfer_metrics(self.data["zero_shot"]["per_dataset"], [t["per_dataset"] for t in self.tasks],
                                   self.data["task_datasets"], self.data.get("held_out_datasets", [])),
                "task_masked_accuracy": last.get("A_KA_task_masked")}
        self.data["seconds"] = seconds
        if skipped is not None:
            self.data.update(skipped)
        self.data.setdefault("skipped_nonfinite_steps", 0)
        self.data["status"] = COMPLETE
        self.data.pop("error", None)  # a failed run that was resumed and completed

    def fail(self, error: str) -> None:
        """The run stopped on ``error`` (one line): status failed, the reason kept for ``fif results``."""
        self.data["status"] = FAILED
        self.data["error"] = error

    def count_nonfinite_step(self) -> int:
        """One more optimizer step skipped for a non-finite loss or gradient; the count so far."""
        self.data["skipped_nonfinite_steps"] = self.skipped_nonfinite_steps + 1
        return self.data["skipped_nonfinite_steps"]

    @property
    def skipped_nonfinite_steps(self) -> int:
        return int(self.data.get("skipped_nonfinite_steps", 0))

    def set_world_size(self, world_size: int) -> None:
        self.data["world_size"] = world_size

    def save(self, run_dir: Path) -> None:
        """Atomically: a reader sees the previous results.json or this one, never half of one."""
        atomic_write_json(Path(run_dir) / FILENAME, self.data)

    # ------------------------------------------------------------------ reading (runs, reports)
    @classmethod
    def read(cls, path: Path) -> RunResults:
        """A results.json (or the run folder holding one); a broken file is a one-line error naming it."""
        path = Path(path)
        if path.is_dir():
            path = path / FILENAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FifError(f"{path}: no such results file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise FifError(f"{path} is not JSON ({error})") from None
        if not isinstance(data, dict):
            raise FifError(f"{path} is not a JSON object (expected a run's results)")
        return cls(data)

    @property
    def status(self) -> str | None:
        return self.data.get("status")

    @property
    def complete(self) -> bool:
        return self.status == COMPLETE

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    @property
    def error(self) -> str | None:
        """The one-line reason a failed run stopped (None otherwise)."""
        return self.data.get("error") if self.failed else None

    @property
    def finished(self) -> bool:
        """Complete, or (files of older versions without a status) holding the averaged point."""
        return self.complete or (self.status is None and "averaged" in self.data)

    @property
    def tasks(self) -> list[dict[str, Any]]:
        return list(self.data.get("tasks") or [])

    @property
    def within_task(self) -> list[dict[str, Any]]:
        """The evaluations inside tasks, in the order they happened ([] when the run had none)."""
        return list(self.data.get("within_task") or [])

    def within_eval_seconds(self, task: int) -> float:
        """Seconds spent on evaluations inside task ``task`` (1-based)."""
        return sum(float(w.get("seconds", 0.0)) for w in self.within_task if w.get("task") == task)

    @property
    def transfer(self) -> dict[str, Any]:
        """Forgetting, backward transfer and task-masked accuracy ({} for runs without them)."""
        return dict(self.data.get("transfer") or {})

    @property
    def config(self) -> dict[str, Any]:
        return self.data.get("config") or {}

    def config_value(self, dotted: str, default: Any = None) -> Any:
        """A key of the run's config, e.g. ``experiment.task.batch_size`` (default when absent)."""
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    @property
    def method(self) -> str | None:
        return self.config_value("continual.method")

    @property
    def world_size(self) -> int:
        return int(self.data.get("world_size", 1))

    def point(self, name: str) -> dict[str, float] | None:
        """Headline scores of ``zero_shot`` / ``final`` / ``averaged``, None when not written yet."""
        return headline(self.data.get(name))

    def per_dataset(self, name: str) -> dict[str, float]:
        """Per-dataset scores of an evaluation point ({} when absent)."""
        block = self.data.get(name)
        return dict(block.get("per_dataset") or {}) if isinstance(block, dict) else {}
