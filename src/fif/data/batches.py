"""Turn a step's BatchPlan into tensors: images through the train transform, captions tokenized."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import torch
from PIL import Image

from fif.data.catalogue import TrainingCatalogue
from fif.data.mixture import BatchPlan
from fif.data.pool import PoolStream
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

    def build(self, plan: BatchPlan, task: int, step: int) -> Batch:
        rng = random.Random(f"{self.seed}/caption/{task}/{step}")
        images, captions, used = [], [], []
        sources = ["update"] * len(plan.update) + ["buffer"] * len(plan.buffer)
        for slot, (source, index) in enumerate(zip(sources, plan.update + plan.buffer)):
            image, index = self._image(source, index, plan, task, step, slot)
            images.append(image)
            used.append(index)
            captions.append(self.catalogue.caption(index, rng))
        if plan.pretraining:
            if self.pool is None:
                raise RuntimeError("batch plan asks for pool samples but no pool is configured")
            for image, caption in self.pool.take(plan.pretraining):
                images.append(image)
                captions.append(caption)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, task, step)) % (2**31))
            pixels = torch.stack([self.transform(image) for image in images])
        return Batch(pixels, self.tokenizer(captions),
                     {"update": len(plan.update), "buffer": len(plan.buffer), "pretraining": plan.pretraining}, used)
