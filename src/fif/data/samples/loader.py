"""Training batches built ahead of time in worker processes, in step order, bit-identical to one process.

torch's DataLoader does the process work (workers, ordered results, prefetching, pinned memory, worker
errors): its "dataset" is ``BatchBuilder.assemble`` and its "sampler" yields one ``StepJob`` per step.
The sampler runs in the main process, so the two sequential things, the mixture sampler's plan and
the pretraining pool's stream, stay in one place and in step order, while reading, decoding and
augmenting run in ``workers`` processes, ``prefetch`` batches per worker ahead of training. Because
a job fixes every random draw of its batch (seed, task, step, slot), the batch of step s is the same
tensors with 0, 1 or N workers, and a resumed run builds from its step on exactly what the
uninterrupted run built.

Consuming a batch (``BatchBuilder.consumed``) counts its corrupt skips and settles the pool, so a
checkpoint resumes after the last batch training used, never after the prefetched ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from collections.abc import Iterable, Iterator, Mapping, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from fif.data.samples.batches import Batch, BatchBuilder, StepJob
from fif.data.samples.mixture import BatchPlan
from fif.errors import FifError

MAX_AUTO_WORKERS = 8  # the reference's per-source worker count; more rarely helps a single GPU


def auto_workers(device: torch.device, local_processes: int = 1) -> int:
    """``train_workers: auto``: on a GPU, this process's share of the cores minus the one that trains
    (at most 8); on the CPU none, because there the training step itself uses every core."""
    if device.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_AUTO_WORKERS, cores // max(1, local_processes) - 1))


def resolve_workers(value: Any, device: torch.device, local_processes: int = 1) -> int:
    """The ``experiment.dataset.train_workers`` value as a count (``auto`` or an integer >= 0)."""
    if value is None or str(value) == "auto":
        return auto_workers(device, local_processes)
    try:
        workers = int(value)
    except (TypeError, ValueError):
        workers = -1
    if workers < 0 or str(value) != str(workers):
        raise FifError(f"experiment.dataset.train_workers={value!r}: expected auto or an integer >= 0")
    return workers


@dataclass
class _Failed:
    """A worker's FifError, carried back as a value so the main process raises it unchanged (one line)."""

    error: FifError


class _Assemble(Dataset):
    """Map-style dataset whose "indices" are StepJobs (the DataLoader passes them through untouched)."""

    def __init__(self, builder: BatchBuilder, candidates: Mapping[str, Sequence[int]]) -> None:
        self.builder, self.candidates = builder, candidates

    def __getitem__(self, job: StepJob) -> Batch | _Failed:  # type: ignore[override]
        try:
            return self.builder.assemble(job, self.candidates)
        except FifError as error:
            return _Failed(error)


class _Jobs(Sampler):
    """One job per (step, plan), created lazily in the main process as the loader asks for more."""

    def __init__(self, builder: BatchBuilder, plans: Iterable[tuple[int, BatchPlan]], task: int,
                 slots: range | None) -> None:
        self.builder, self.plans, self.task, self.slots = builder, plans, task, slots

    def __iter__(self) -> Iterator[StepJob]:
        for step, plan in self.plans:
            yield self.builder.job(plan, self.task, step, self.slots)


def _keep(item: Any) -> Any:
    """collate_fn: a built batch is already a batch."""
    return item


@dataclass(frozen=True)
class LoaderSettings:
    """How training batches are built: ``workers`` processes (0: in the training process), ``prefetch``
    batches per worker in flight, page-locked memory for asynchronous host-to-GPU copies."""

    workers: int = 0
    prefetch: int = 2
    pin_memory: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.prefetch, bool) or not isinstance(self.prefetch, int) or self.prefetch < 1:
            raise FifError(f"experiment.dataset.prefetch={self.prefetch!r}: expected an integer >= 1")


def step_batches(builder: BatchBuilder, plans: Iterable[tuple[int, BatchPlan]], task: int,
                 candidates: Mapping[str, Sequence[int]], settings: LoaderSettings = LoaderSettings(),
                 slots: range | None = None) -> Iterator[Batch]:
    """The batches of ``plans`` (``(step, plan)`` in training order), built by ``settings.workers``
    processes; each is marked consumed (skips counted, pool settled) as it is handed out."""
    loader = DataLoader(_Assemble(builder, candidates), batch_size=None, sampler=_Jobs(builder, plans, task, slots),
                        num_workers=settings.workers, collate_fn=_keep, pin_memory=settings.pin_memory,
                        prefetch_factor=settings.prefetch if settings.workers else None)
    for item in loader:
        if isinstance(item, _Failed):
            raise item.error
        builder.consumed(item)
        yield item
