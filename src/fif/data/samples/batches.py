"""Turn a step's BatchPlan into tensors: images through the train transform, captions tokenized."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import torch
from PIL import Image

from fif.data.samples.catalogue import TrainingCatalogue
from fif.data.samples.mixture import BatchPlan
from fif.data.samples.pool import PoolStream
from fif.errors import CorruptSampleError, FifError

MAX_REPLACEMENT_TRIES = 100


@dataclass
class Batch:
    images: torch.Tensor
    texts: torch.Tensor
    sources: dict[str, int]
    indices: list[int] = field(default_factory=list)  # catalogue indices used (update, then buffer)

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.images.to(device, non_blocking=True), self.texts.to(device, non_blocking=True), self.sources,
                     self.indices)


def corrupt_file(error: CorruptSampleError) -> str:
    """The file a CorruptSampleError is about (its message when the raiser gave no path)."""
    return str(getattr(error, "path", None) or error)


class BatchBuilder:
    """Deterministic batches: augmentation and caption choice are seeded by (seed, task, step).

    A corrupt image stops the run (CorruptSampleError) unless ``skip_corrupt``: then it is replaced
    by a sample of the same source drawn from (seed, task, step, slot), so the batch keeps its size
    and a rerun builds the same batch; ``skipped`` counts the skips per file.
    """

    def __init__(self, catalogue: TrainingCatalogue, pool: PoolStream | None, transform: Callable,
                 tokenizer: Callable, seed: int, skip_corrupt: bool = False) -> None:
        self.catalogue, self.pool, self.transform, self.tokenizer, self.seed = catalogue, pool, transform, tokenizer, seed
        self.skip_corrupt = skip_corrupt
        self.skipped: Counter[str] = Counter()
        self._corrupt: dict[int, str] = {}  # catalogue index -> file, so a bad file is read once

    def _image(self, source: str, index: int, plan: BatchPlan, task: int, step: int,
               slot: int) -> tuple[Image.Image, int]:
        """The image of ``index``, or (with skip_corrupt) of its deterministic replacement."""
        if not self.skip_corrupt:
            return self.catalogue.image(index), index
        candidates = plan.candidates.get(source, ())
        pick = random.Random(f"{self.seed}/replace/{task}/{step}/{slot}")
        for _ in range(MAX_REPLACEMENT_TRIES):
            if index not in self._corrupt:
                try:
                    return self.catalogue.image(index), index
                except CorruptSampleError as error:
                    self._corrupt[index] = corrupt_file(error)
            self.skipped[self._corrupt[index]] += 1
            if len(candidates) == 0:
                break
            index = int(candidates[pick.randrange(len(candidates))])
        raise FifError(f"no readable replacement for a corrupt {source} sample of task {task} "
                       f"(last corrupt file: {self._corrupt[index]}; up to {MAX_REPLACEMENT_TRIES} tries)")

    def build(self, plan: BatchPlan, task: int, step: int, slots: range | None = None) -> Batch:
        """The batch of ``plan``, or only its ``slots`` (positions in update + buffer + pretraining order).

        Captions and augmentations are seeded per slot, so a rank that builds a slice of the global
        batch (DDP) gets exactly the samples the one-process run puts at those positions.
        """
        order = [("update", i) for i in plan.update] + [("buffer", i) for i in plan.buffer]
        total = len(order) + plan.pretraining
        slots = range(total) if slots is None else slots
        if slots.start < 0 or slots.stop > total:
            raise ValueError(f"slots {slots} outside a batch of {total}")
        pool_samples: list[tuple[Image.Image, str]] = []
        if plan.pretraining:
            if self.pool is None:
                raise RuntimeError("batch plan asks for pool samples but no pool is configured")
            pool_samples = self.pool.take(plan.pretraining)  # every rank walks the same stream
        images, captions, used, sources = [], [], [], Counter()
        for slot in slots:
            if slot < len(order):
                source, index = order[slot]
                image, index = self._image(source, index, plan, task, step, slot)
                used.append(index)
                caption = self.catalogue.caption(index, random.Random(f"{self.seed}/caption/{task}/{step}/{slot}"))
            else:
                source = "pretraining"
                image, caption = pool_samples[slot - len(order)]
            sources[source] += 1
            images.append(image)
            captions.append(caption)
        pixels = []
        with torch.random.fork_rng(devices=[]):
            for slot, image in zip(slots, images):
                torch.default_generator.manual_seed(hash((self.seed, task, step, slot)) % (2**31))  # CPU only: 1 us
                pixels.append(self.transform(image))
        return Batch(torch.stack(pixels), self.tokenizer(captions),
                     {name: sources[name] for name in ("update", "buffer", "pretraining")}, used)
