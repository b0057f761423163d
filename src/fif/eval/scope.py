"""What the stream brings to evaluation: the datasets A_KA averages over, and the task of each class.

``evaluation.ka_datasets`` chooses which adaptation datasets A_KA averages over:

- ``stream`` (default, as the reference: its A_KA is the mean over the datasets of the run's
  sequence): the adaptation datasets the run's stream contains. A stream over part of the
  registry (a debug or ``_short`` stream, ``experiment.dataset.name=[...]``) is scored on what it
  streams; the other adaptation datasets are still evaluated and listed per dataset.
- ``registry``: every adaptation dataset of the registry (this project's behaviour before 0.13),
  so runs over different partial streams share one yardstick.

A_ZS always averages over the registry's held-out (evaluation-only) datasets. The task of each
class (the first task whose entries name it) gives the reference's task-masked accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Sequence

from fif.data.format.fif_format import DatasetSpec

StreamEntry = tuple[str, str]  # (dataset folder, classname), as fif.data.format.streams


@dataclass(frozen=True)
class StreamScope:
    """Which datasets each task brings and which ones the headline averages count."""

    mode: str  # evaluation.ka_datasets
    task_datasets: tuple[tuple[str, ...], ...]  # per task: the dataset names it brings, in stream order
    knowledge: tuple[str, ...]  # the datasets A_KA averages over
    held_out: tuple[str, ...]  # the datasets A_ZS averages over

    def record(self) -> dict[str, Any]:
        """results.json keys (fif.results.RunResults.start)."""
        return {"ka_datasets": self.mode, "knowledge_datasets": list(self.knowledge),
                "held_out_datasets": list(self.held_out), "task_datasets": [list(t) for t in self.task_datasets]}


def stream_scope(tasks: Sequence[Sequence[StreamEntry]], specs: Sequence[DatasetSpec], mode: str) -> StreamScope:
    """The scope of a run whose ``tasks`` are scored on ``specs``."""
    name_of = {spec.folder: spec.name for spec in specs}
    task_datasets = tuple(tuple(dict.fromkeys(name_of[folder] for folder, _ in task if folder in name_of))
                          for task in tasks)
    streamed = {name for names in task_datasets for name in names}
    adaptation = [s.name for s in specs if not s.eval_only]
    knowledge = tuple(n for n in adaptation if mode == "registry" or n in streamed)
    return StreamScope(mode, task_datasets, knowledge, tuple(s.name for s in specs if s.eval_only))


def task_groups(tasks: Sequence[Sequence[StreamEntry]], sets: Sequence[Any]) -> dict[str, list[int | None]]:
    """Per streamed classification set of an EvalSuite: the task (0-based) that first brought each of its
    test classes, None for a class no task brings."""
    by_folder = {s.spec.folder: s for s in sets if s.spec.kind == "classification" and not s.spec.eval_only}
    index: dict[str, dict[str, int]] = {}  # folder -> classname -> class index of its test split
    groups: dict[str, list[int | None]] = {}
    for t, task in enumerate(tasks):
        for folder, classname in task:
            eval_set = by_folder.get(folder)
            if eval_set is None:
                continue
            if folder not in index:
                index[folder] = {name: k for k, name in enumerate(eval_set.split.classnames)}
                groups[eval_set.spec.name] = [None] * len(eval_set.split.classnames)
            k = index[folder].get(classname)
            if k is not None and groups[eval_set.spec.name][k] is None:
                groups[eval_set.spec.name][k] = t
    return groups
