"""Turn a step's BatchPlan into tensors: images through the train transform, captions tokenized.

Building a batch has two halves. ``BatchBuilder.job`` runs in the main process and is cheap: it
fixes which samples the step uses (the plan's indices, and the pretraining pool's next undecoded
records, since the pool is one sequential stream). ``BatchBuilder.assemble`` is the expensive part
(reading, decoding and augmenting images, tokenizing captions) and is a pure function of the job,
so any process can run it: ``fif.data.samples.loader`` runs it in worker processes, ahead of
training. ``build`` is both halves in the calling process.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any
from collections.abc import Callable, Mapping, Sequence

import torch
from PIL import Image
from torch.utils.data import default_collate

from fif.data.samples.catalogue import TrainingCatalogue
from fif.data.samples.mixture import BatchPlan
from fif.data.samples.pixels import PixelFinish, split_transform
from fif.data.samples.pool import PoolRecord, PoolStream
from fif.errors import CorruptSampleError, FifError

MAX_REPLACEMENT_TRIES = 100


@dataclass
class Batch:
    images: torch.Tensor
    texts: torch.Tensor
    sources: dict[str, int]
    indices: list[int] = field(default_factory=list)  # catalogue indices used (update, then buffer)
    skipped: Counter[str] = field(default_factory=Counter)  # corrupt files replaced while building it
    pool_state: dict[str, Any] | None = None  # the pool stream's state after this batch's samples
    finish: PixelFinish | None = None  # set: ``images`` are uint8, scaled and normalised by ``to()``

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device) -> Batch:
        images = self.images.to(device, non_blocking=True)
        if self.finish is not None:
            images = self.finish(images)
        return replace(self, images=images, texts=self.texts.to(device, non_blocking=True), finish=None)

    def pin_memory(self) -> Batch:
        """Called by the DataLoader's pin-memory thread (CUDA runs): page-locked, so copies can be async."""
        return replace(self, images=self.images.pin_memory(), texts=self.texts.pin_memory())


@dataclass(frozen=True)
class StepJob:
    """Everything ``assemble`` needs beyond the builder itself: small enough to send to a worker."""

    task: int
    step: int
    update: list[int]
    buffer: list[int]
    pool: list[PoolRecord]
    pool_state: dict[str, Any] | None
    slots: range


def corrupt_file(error: CorruptSampleError) -> str:
    """The file a CorruptSampleError is about (its message when the raiser gave no path)."""
    return str(getattr(error, "path", None) or error)


class BatchBuilder:
    """Deterministic batches: augmentation and caption choice are seeded by (seed, task, step, slot).

    A corrupt image stops the run (CorruptSampleError) unless ``skip_corrupt``: then it is replaced
    by a sample of the same source drawn from (seed, task, step, slot) (catalogue samples from the
    source's population, pool samples from the batch's own pool records), so the batch keeps its
    size and a rerun builds the same batch; each batch counts its skips per file, and whoever
    consumes the batches adds them to ``skipped``.
    """

    def __init__(self, catalogue: TrainingCatalogue, pool: PoolStream | None, transform: Callable,
                 tokenizer: Callable, seed: int, skip_corrupt: bool = False) -> None:
        self.catalogue, self.pool, self.transform, self.tokenizer, self.seed = catalogue, pool, transform, tokenizer, seed
        self.skip_corrupt = skip_corrupt
        self.skipped: Counter[str] = Counter()
        self.finish: PixelFinish | None = None
        self._pixels: Callable = transform  # image -> tensor in ``assemble``: the whole transform, or its uint8 part
        self._corrupt: dict[int, str] = {}  # catalogue index -> file, so a bad file is read once (per process)

    def normalise_on_device(self) -> bool:
        """Return uint8 crops and normalise them in ``Batch.to`` (on the GPU); False if the transform can't split."""
        split = split_transform(self.transform)
        if split is not None:
            self._pixels, self.finish = split
        return split is not None

    # ------------------------------------------------------------------ main process: what the step uses
    def job(self, plan: BatchPlan, task: int, step: int, slots: range | None = None) -> StepJob:
        """Fix the step's samples; takes the plan's pool samples from the stream (every rank walks it)."""
        total = len(plan.update) + len(plan.buffer) + plan.pretraining
        slots = range(total) if slots is None else slots
        if slots.start < 0 or slots.stop > total:
            raise ValueError(f"slots {slots} outside a batch of {total}")
        records, state = [], None
        if plan.pretraining:
            if self.pool is None:
                raise RuntimeError("batch plan asks for pool samples but no pool is configured")
            records, state = self.pool.take(plan.pretraining), self.pool.live_state()
        return StepJob(task, step, list(plan.update), list(plan.buffer), records, state, slots)

    def build(self, plan: BatchPlan, task: int, step: int, slots: range | None = None) -> Batch:
        """The batch of ``plan`` (or only its ``slots``: positions in update + buffer + pretraining order),
        built here; the skips are counted and the pool settled as if training consumed it."""
        batch = self.assemble(self.job(plan, task, step, slots), plan.candidates)
        self.consumed(batch)
        return batch

    def consumed(self, batch: Batch) -> None:
        """Training used ``batch``: count its skips, and a checkpoint now resumes the pool after it."""
        self.skipped.update(batch.skipped)
        if batch.pool_state is not None and self.pool is not None:
            self.pool.settle(batch.pool_state)

    # ------------------------------------------------------------------ any process: the expensive half
    def assemble(self, job: StepJob, candidates: Mapping[str, Sequence[int]]) -> Batch:
        """The tensors of ``job``. Captions and augmentations are seeded per slot, so a rank that builds a
        slice of the global batch (DDP) gets exactly the samples the one-process run puts at those positions.
        ``candidates``: each catalogue source's population, for replacing a corrupt sample."""
        order = [("update", i) for i in job.update] + [("buffer", i) for i in job.buffer]
        skipped: Counter[str] = Counter()
        images, captions, used, sources = [], [], [], Counter()
        for slot in job.slots:
            if slot < len(order):
                source, index = order[slot]
                image, index = self._image(source, index, candidates, job, slot, skipped)
                used.append(index)
                caption = self.catalogue.caption(index, random.Random(f"{self.seed}/caption/{job.task}/{job.step}/{slot}"))
            else:
                source = "pretraining"
                image, caption = self._pool_sample(job, slot - len(order), slot, skipped)
            sources[source] += 1
            images.append(image)
            captions.append(caption)
        pixels = []
        with torch.random.fork_rng(devices=[]):
            for slot, image in zip(job.slots, images):
                torch.default_generator.manual_seed(hash((self.seed, job.task, job.step, slot)) % (2**31))  # 1 us
                pixels.append(self._pixels(image))
        # default_collate stacks into shared memory inside a loader worker: no copy on the way out
        return Batch(default_collate(pixels), self.tokenizer(captions),
                     {name: sources[name] for name in ("update", "buffer", "pretraining")}, used, skipped,
                     job.pool_state, self.finish)

    def _image(self, source: str, index: int, candidates: Mapping[str, Sequence[int]], job: StepJob, slot: int,
               skipped: Counter[str]) -> tuple[Image.Image, int]:
        """The image of ``index``, or (with skip_corrupt) of its deterministic replacement."""
        if not self.skip_corrupt:
            return self.catalogue.image(index), index
        population = candidates.get(source, ())
        pick = random.Random(f"{self.seed}/replace/{job.task}/{job.step}/{slot}")
        for _ in range(MAX_REPLACEMENT_TRIES):
            if index not in self._corrupt:
                try:
                    return self.catalogue.image(index), index
                except CorruptSampleError as error:
                    self._corrupt[index] = corrupt_file(error)
            skipped[self._corrupt[index]] += 1
            if len(population) == 0:
                break
            index = int(population[pick.randrange(len(population))])
        raise FifError(f"no readable replacement for a corrupt {source} sample of task {job.task} "
                       f"(last corrupt file: {self._corrupt[index]}; up to {MAX_REPLACEMENT_TRIES} tries)")

    def _pool_sample(self, job: StepJob, position: int, slot: int, skipped: Counter[str]) -> tuple[Image.Image, str]:
        """Pool record ``position`` decoded, or (skip_corrupt) another of the batch's pool records."""
        record = job.pool[position]
        if not self.skip_corrupt:
            return record.decode()
        pick = random.Random(f"{self.seed}/replace-pool/{job.task}/{job.step}/{slot}")
        for _ in range(MAX_REPLACEMENT_TRIES):
            try:
                return record.decode()
            except CorruptSampleError as error:
                skipped[corrupt_file(error)] += 1
            record = job.pool[pick.randrange(len(job.pool))]
        raise FifError(f"no readable replacement for a corrupt pretraining pool sample of task {job.task} step "
                       f"{job.step} (last corrupt sample: {record.where}; up to {MAX_REPLACEMENT_TRIES} tries)")
