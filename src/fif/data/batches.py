"""Turn a step's BatchPlan into tensors: images through the train transform, captions tokenized."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import torch

from fif.data.catalogue import TrainingCatalogue
from fif.data.mixture import BatchPlan
from fif.data.pool import PoolStream


@dataclass
class Batch:
    images: torch.Tensor
    texts: torch.Tensor
    sources: dict[str, int]

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.images.to(device, non_blocking=True), self.texts.to(device, non_blocking=True), self.sources)


class BatchBuilder:
    """Deterministic batches: augmentation and caption choice are seeded by (seed, task, step)."""

    def __init__(self, catalogue: TrainingCatalogue, pool: PoolStream | None, transform: Callable,
                 tokenizer: Callable, seed: int) -> None:
        self.catalogue, self.pool, self.transform, self.tokenizer, self.seed = catalogue, pool, transform, tokenizer, seed

    def build(self, plan: BatchPlan, task: int, step: int) -> Batch:
        rng = random.Random(f"{self.seed}/caption/{task}/{step}")
        images, captions = [], []
        for index in plan.update + plan.buffer:
            images.append(self.catalogue.image(index))
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
                     {"update": len(plan.update), "buffer": len(plan.buffer), "pretraining": plan.pretraining})
