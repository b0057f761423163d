"""The evaluation suite: every benchmark dataset's test split, scored zero-shot.

Evaluation needs only a model, a tokenizer and datasets. Classification scores are top-1
accuracy with the dataset's primer prompt; retrieval scores are recall@5 (recall@1 is logged).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from fif.data.fif_format import DatasetSpec, Split, read_split
from fif.eval.retrieval import recall_at_k
from fif.eval.zero_shot import class_embeddings, top1_accuracy


class _SplitImages(Dataset):
    def __init__(self, split: Split, transform: Callable) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.split.image(index))


@dataclass
class EvalSet:
    spec: DatasetSpec
    split: Split
    images: torch.Tensor | None  # preloaded, transformed test images (small benchmarks)


@dataclass(frozen=True)
class DatasetScore:
    score: float  # the headline number: top-1 accuracy or recall@5, in percent
    metric: str
    details: dict[str, float]


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA (the reference trains with AMP); exact fp32 on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class EvalSuite:
    """Test splits of the given datasets, loaded once and scored for any model state."""

    def __init__(self, root: str | Path, specs: Sequence[DatasetSpec], transform: Callable,
                 info_dir: str | Path | None = None, preload: bool = True, batch_size: int = 256,
                 num_workers: int = 0, templates: Sequence[str] | None = None) -> None:
        self.transform, self.batch_size, self.num_workers = transform, batch_size, num_workers
        self.templates = templates
        self.sets: list[EvalSet] = []
        for spec in specs:
            split = read_split(root, spec, "test", info_dir)
            images = torch.stack([transform(split.image(i)) for i in range(len(split))]) if preload else None
            self.sets.append(EvalSet(spec, split, images))

    def _image_features(self, model: torch.nn.Module, eval_set: EvalSet, device: torch.device) -> torch.Tensor:
        if eval_set.images is not None:
            batches = eval_set.images.split(self.batch_size)
        else:
            batches = DataLoader(_SplitImages(eval_set.split, self.transform), batch_size=self.batch_size,
                                 num_workers=self.num_workers)
        features = []
        with autocast_for(device):
            for batch in batches:
                features.append(model.encode_image(batch.to(device, non_blocking=True)).float())
        return F.normalize(torch.cat(features), dim=-1)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, tokenizer: Callable, device: torch.device) -> dict[str, DatasetScore]:
        was_training = model.training
        model.eval()
        scores: dict[str, DatasetScore] = {}
        try:
            for eval_set in self.sets:
                scores[eval_set.spec.name] = self._score(model, tokenizer, eval_set, device)
        finally:
            model.train(was_training)
        return scores

    def _score(self, model: torch.nn.Module, tokenizer: Callable, eval_set: EvalSet, device: torch.device) -> DatasetScore:
        image_features = self._image_features(model, eval_set, device)
        split = eval_set.split
        with autocast_for(device):
            if eval_set.spec.kind == "retrieval":
                texts = [c for captions in split.captions for c in captions]
                owner = torch.tensor([i for i, captions in enumerate(split.captions) for _ in captions])
                text_features = torch.cat([model.encode_text(tokenizer(texts[i:i + self.batch_size]).to(device)).float()
                                           for i in range(0, len(texts), self.batch_size)])
                recalls = recall_at_k(image_features, F.normalize(text_features, dim=-1), owner.to(device))
                return DatasetScore(recalls[5], "recall@5", {"recall@1": recalls[1], "recall@5": recalls[5]})
            templates = self.templates or [eval_set.spec.primer]
            classes = class_embeddings(model, tokenizer, split.classnames, templates, device, self.batch_size)
        accuracy = top1_accuracy(image_features, classes, torch.tensor(split.targets))
        return DatasetScore(accuracy, "top1", {"top1": accuracy})
