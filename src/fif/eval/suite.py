"""The evaluation suite: every benchmark dataset's test split, scored zero-shot.

Evaluation needs only a model, a tokenizer and datasets. Classification scores are top-1
accuracy with the dataset's primer prompt; retrieval scores are recall@5 (recall@1 is logged).
A run that knows which task brought each class (``task_groups``) also gets the task-masked
top-1 of those datasets in the score's details.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from fif.data.format.fif_format import DatasetSpec, Split, read_split
from fif.data.samples.pixels import PixelFinish, split_transform
from fif.errors import CorruptSampleError
from fif.eval.retrieval import recall_at_k
from fif.eval.zero_shot import class_embeddings, task_masked_accuracy, top1_accuracy
from fif.runtime.device import autocast_for
from fif.runtime.distributed import SINGLE, DistContext, gather_rows, shard


class _SplitImages(Dataset):
    """(index, image tensor) per test sample; a corrupt image yields (index, the error) instead,
    so the main process decides (a one-line error, or leave the sample out)."""

    def __init__(self, split: Split, transform: Callable) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | CorruptSampleError]:
        try:
            return index, self.transform(self.split.image(index))
        except CorruptSampleError as error:
            return index, error


def _collate(items: list[tuple[int, torch.Tensor | CorruptSampleError]]) -> tuple[list, list]:
    """Split a batch of items into the readable ones and the corrupt ones."""
    readable = [item for item in items if isinstance(item[1], torch.Tensor)]
    return readable, [item for item in items if not isinstance(item[1], torch.Tensor)]


TASK_MASKED = "task_masked_top1"  # the details key of the task-masked accuracy


@dataclass
class EvalSet:
    spec: DatasetSpec
    split: Split
    images: torch.Tensor | None  # preloaded, transformed test images (small benchmarks)
    kept: list[int] | None = None  # preloaded: the sample indices ``images`` holds (corrupt ones left out)


@dataclass(frozen=True)
class DatasetScore:
    score: float  # the headline number: top-1 accuracy or recall@5, in percent
    metric: str
    details: dict[str, float]



class EvalSuite:
    """Test splits of the given datasets, loaded once and scored for any model state."""

    def __init__(self, root: str | Path, specs: Sequence[DatasetSpec], transform: Callable,
                 info_dir: str | Path | None = None, preload: bool = True, batch_size: int = 256,
                 num_workers: int = 0, templates: Sequence[str] | None = None, skip_corrupt: bool = False,
                 tar: bool = False, resized: bool = False, splits: Mapping[str, Split] | None = None,
                 dist: DistContext = SINGLE) -> None:
        """``splits``: per dataset name, a split scored instead of its test split (validation mode)."""
        self.transform, self.batch_size, self.num_workers = transform, batch_size, num_workers
        self.templates, self.skip_corrupt = templates, skip_corrupt
        self.skipped: Counter[str] = Counter()  # corrupt test files left out (counted once per file)
        self.dist = dist  # under torchrun: each rank encodes its shard, features are gathered
        self.sets: list[EvalSet] = []
        self._loader_transform: Callable = transform  # see ``for_device``
        self._finish: PixelFinish | None = None
        self._pin_memory = False
        self._subset_cache: dict[str, tuple[tuple[int, ...], EvalSet]] = {}  # name -> (indices, restricted set)
        self.task_groups: dict[str, list[int | None]] = {}  # name -> the task of each class (fif.eval.scope)
        for spec in specs:
            split = (splits or {}).get(spec.name)
            if split is None:
                split = read_split(root, spec, "test", info_dir, tar=tar, resized=resized)
            if preload:
                images = _SplitImages(split, transform)
                loaded, corrupt = _collate([images[i] for i in range(len(split))])
                self._corrupt(corrupt)
                if not loaded:
                    raise CorruptSampleError(f"dataset {spec.name}: no readable test image")
                self.sets.append(EvalSet(spec, split, torch.stack([t for _, t in loaded]), [i for i, _ in loaded]))
            else:
                self.sets.append(EvalSet(spec, split, None))

    def for_device(self, device: torch.device) -> EvalSuite:
        """On a GPU: pinned loader batches of uint8 crops, normalised on the device (``normalise_on_device``)."""
        if device.type == "cuda":
            self.normalise_on_device()
            self._pin_memory = True
        return self

    def normalise_on_device(self) -> bool:
        """Loader workers ship uint8 crops (4x fewer bytes per image) and the scaling and normalisation run
        where the model is, with the same values (fif.data.samples.pixels); False if the transform can't split."""
        split = split_transform(self.transform)
        if split is not None:
            self._loader_transform, self._finish = split
        return split is not None

    def _corrupt(self, corrupt: list[tuple[int, CorruptSampleError]]) -> None:
        """Stop on the first corrupt test image, or (skip_corrupt) record it as left out."""
        for _, error in corrupt:
            if not self.skip_corrupt:
                raise CorruptSampleError(str(error), error.path)
            self.skipped[str(error.path or error)] = 1

    def _image_features(self, model: torch.nn.Module, eval_set: EvalSet,
                        device: torch.device) -> tuple[torch.Tensor, list[int]]:
        """Normalized features of the readable test images, and which sample indices they are."""
        if eval_set.images is not None:
            mine = shard(len(eval_set.kept), self.dist)  # under torchrun each rank encodes its part
            kept_mine, images = eval_set.kept[mine.start:mine.stop], eval_set.images[mine.start:mine.stop]
            batches = [(kept_mine[i:i + self.batch_size], chunk)
                       for i, chunk in zip(range(0, len(kept_mine), self.batch_size), images.split(self.batch_size))]
        else:
            mine = shard(len(eval_set.split), self.dist)
            loader = DataLoader(Subset(_SplitImages(eval_set.split, self._loader_transform), mine),
                                batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=_collate,
                                pin_memory=self._pin_memory)
            batches = self._readable(loader)
        features, kept = [], []
        with autocast_for(device):
            for indices, batch in batches:
                if len(indices):
                    pixels = batch.to(device, non_blocking=True)
                    if pixels.dtype == torch.uint8:  # a loader batch of uint8 crops (``for_device``)
                        pixels = self._finish(pixels)
                    features.append(model.encode_image(pixels).float())
                    kept.extend(indices)
        local = torch.cat(features) if features else torch.zeros(0, model.visual.output_dim, device=device)
        gathered = gather_rows(local, self.dist)
        kept = gather_rows(torch.tensor(kept, dtype=torch.long, device=device), self.dist).tolist()
        if not kept:
            raise CorruptSampleError(f"dataset {eval_set.spec.name}: no readable test image")
        return F.normalize(gathered, dim=-1), kept

    def _readable(self, loader: DataLoader):
        for loaded, corrupt in loader:
            self._corrupt(corrupt)
            yield [i for i, _ in loaded], torch.stack([t for _, t in loaded]) if loaded else None

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, tokenizer: Callable, device: torch.device,
                 subsets: Mapping[str, Sequence[int]] | None = None) -> dict[str, DatasetScore]:
        """Score every set; ``subsets`` (dataset name -> sample indices) scores only those samples."""
        was_training = model.training
        model.eval()
        scores: dict[str, DatasetScore] = {}
        try:
            for eval_set in self.sets:
                chosen = (subsets or {}).get(eval_set.spec.name)
                if chosen is not None and len(chosen) < len(eval_set.split):
                    eval_set = self._restricted(eval_set, chosen)
                scores[eval_set.spec.name] = self._score(model, tokenizer, eval_set, device)
        finally:
            model.train(was_training)
        return scores

    def _restricted(self, eval_set: EvalSet, indices: Sequence[int]) -> EvalSet:
        """The samples ``indices`` of a set as a set of its own (cached: the subsets stay fixed)."""
        chosen = tuple(int(i) for i in indices)
        cached = self._subset_cache.get(eval_set.spec.name)
        if cached is None or cached[0] != chosen:
            from fif.data.format.validation import subset_split

            split = subset_split(eval_set.split, chosen, f"{eval_set.split.name}[subset]")
            images, kept = None, None
            if eval_set.images is not None:  # preloaded: pick the rows, renumber the kept samples
                position = {index: j for j, index in enumerate(chosen)}
                rows = [r for r, index in enumerate(eval_set.kept) if index in position]
                images, kept = eval_set.images[rows], [position[eval_set.kept[r]] for r in rows]
            cached = self._subset_cache[eval_set.spec.name] = (chosen, EvalSet(eval_set.spec, split, images, kept))
        return cached[1]

    def _score(self, model: torch.nn.Module, tokenizer: Callable, eval_set: EvalSet, device: torch.device) -> DatasetScore:
        image_features, kept = self._image_features(model, eval_set, device)
        split = eval_set.split
        with autocast_for(device):
            if eval_set.spec.kind == "retrieval":
                texts = [c for i in kept for c in split.captions[i]]
                owner = torch.tensor([row for row, i in enumerate(kept) for _ in split.captions[i]])
                text_features = torch.cat([model.encode_text(tokenizer(texts[i:i + self.batch_size]).to(device)).float()
                                           for i in range(0, len(texts), self.batch_size)])
                recalls = recall_at_k(image_features, F.normalize(text_features, dim=-1), owner.to(device))
                return DatasetScore(recalls[5], "recall@5", {"recall@1": recalls[1], "recall@5": recalls[5]})
            templates = self.templates or [eval_set.spec.primer]
            classes = class_embeddings(model, tokenizer, split.classnames, templates, device, self.batch_size)
        targets = torch.tensor(split.targets)[kept]
        accuracy = top1_accuracy(image_features, classes, targets)
        details = {"top1": accuracy}
        groups = self.task_groups.get(eval_set.spec.name)
        masked = task_masked_accuracy(image_features, classes, targets, groups) if groups else None
        if masked is not None:
            details[TASK_MASKED] = masked
        return DatasetScore(accuracy, "top1", details)
