"""Deployment orderings of a stream, built from a data root (``fif streams build``).

The reference studies how the order in which concepts arrive changes what a model keeps. Each
builder here returns a permutation of every class (with training samples) of the chosen
adaptation datasets, in the reference stream format ``FOLDER+++classname``:

- ``random``: classes shuffled by seed (numpy's legacy RandomState, as ``sequence_reshuffle``).
- ``dataset_incremental``: datasets one after another, each a contiguous block of its classes in
  dataset (target) order; datasets in the order given by ``--datasets``, else shuffled by seed.
- ``performance_easy_to_hard`` / ``performance_hard_to_easy``: classes sorted by the base model's
  zero-shot accuracy on them (per class, within its own dataset, the dataset's primer as prompt;
  mean probability of the true class breaks ties), measured on up to ``max_per_class`` training
  images per class. Easy first is what the model already knows; hard first brings the most new
  knowledge early.
- ``similarity``: chains of semantically similar concepts. Class names are embedded with the
  backbone's text encoder; k-means (scikit-learn) groups them into about sqrt(N) clusters; the
  clusters are visited nearest-centroid-first from a seeded start, and inside each cluster a
  greedy nearest-neighbour chain starts from the class closest to the previous one. Neighbours in
  the stream are therefore close in text-embedding space.
- ``frequency``: rare concepts first, by how many pretraining-pool captions name each class
  (``fif.tools.stream_frequency``: the matching rule read off the reference's stream; ties by seed).
- ``time_incremental_dschunked`` / ``time_incremental_rsagg``: datasets in release-year order, each
  dataset one chunk, or each year one chunk of its datasets' classes mixed
  (``fif.tools.stream_time``; years from ``fif/data/reference/dataset_years.json`` or ``--years``).
- ``reversed``: the exact reverse of a given stream (a shipped name or a file); needs no data root.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fif.data.format.fif_format import ADAPTATION, DatasetSpec, Split, read_split
from fif.data.format.registry import adaptation_specs, find_dataset
from fif.data.format.streams import SEPARATOR, StreamEntry, read_stream, reshuffle, resolve_stream, split_classes
from fif.errors import FifError
from fif.tools.stream_orders import ORDERS  # the orderings build_stream makes (re-exported for callers)


@dataclass
class BuiltStream:
    """An ordering and what it was measured from (per-class accuracy, or adjacent similarity)."""

    order: str
    entries: list[StreamEntry]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # "FOLDER+++class" -> measurements
    summary: dict[str, float | int] = field(default_factory=dict)


def select_datasets(registry: dict[str, DatasetSpec], datasets: Sequence[str] | None) -> list[DatasetSpec]:
    """The named adaptation datasets in the given order, or all of them in registry order."""
    if not datasets:
        specs = adaptation_specs(registry)
        if not specs:
            raise FifError("the dataset registry has no adaptation datasets to build a stream from")
        return specs
    specs = []
    for key in datasets:
        spec = find_dataset(registry, key, "--datasets: dataset")
        if spec.role != ADAPTATION:
            raise FifError(f"--datasets: {spec.folder} is not an adaptation dataset (role {spec.role!r}); "
                           f"streams may only bring adaptation datasets")
        if spec not in specs:
            specs.append(spec)
    return specs


def random_order(entries: list[StreamEntry], seed: int) -> list[StreamEntry]:
    """Every class in a seeded random order."""
    return reshuffle(entries, seed)


def dataset_incremental_order(blocks: list[list[StreamEntry]], seed: int, keep_order: bool) -> list[StreamEntry]:
    """Each dataset contiguous; blocks in the given order, or shuffled by seed."""
    order = list(range(len(blocks)))
    if not keep_order:
        np.random.RandomState(seed).shuffle(order)
    return [entry for i in order for entry in blocks[i]]


def performance_order(entries: list[StreamEntry], scores: dict[StreamEntry, tuple[float, float]],
                      easy_first: bool) -> list[StreamEntry]:
    """Sorted by (accuracy, true-class probability), highest first; hard-to-easy is its exact reverse."""
    easy = sorted(entries, key=lambda e: (-scores[e][0], -scores[e][1]))
    return easy if easy_first else easy[::-1]


def mean_adjacent_similarity(embeddings: torch.Tensor) -> float:
    """Mean cosine similarity of consecutive rows (rows normalised): how smoothly a stream drifts."""
    if len(embeddings) < 2:
        return 1.0
    return float((embeddings[:-1] * embeddings[1:]).sum(-1).mean())


def _chain(sims: np.ndarray, start: int) -> list[int]:
    """Greedy nearest-neighbour path through all items of a similarity matrix."""
    path, left = [start], np.ones(len(sims), dtype=bool)
    left[start] = False
    while left.any():
        candidates = np.where(left, sims[path[-1]], -np.inf)
        path.append(int(candidates.argmax()))
        left[path[-1]] = False
    return path


def similarity_order(embeddings: torch.Tensor, seed: int, clusters: int | None = None) -> list[int]:
    """Indices of a chain of similar concepts: k-means clusters visited nearest-first, NN chains inside."""
    from sklearn.cluster import KMeans

    x = F.normalize(embeddings.float(), dim=-1).cpu().numpy().astype(np.float64)
    n = len(x)
    k = max(1, min(n, clusters or round(n ** 0.5)))
    with warnings.catch_warnings():  # duplicate names (the same concept in two datasets) are fine
        warnings.simplefilter("ignore")
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
    members = [np.flatnonzero(labels == c) for c in range(k)]
    members = [m for m in members if len(m)]
    centroids = np.stack([x[m].mean(0) for m in members])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True).clip(min=1e-12)
    cluster_path = _chain(centroids @ centroids.T, int(np.random.RandomState(seed).randint(len(members))))
    order: list[int] = []
    for c in cluster_path:
        m = members[c]
        if order:  # continue from the class most similar to where the previous cluster ended
            start = int((x[m] @ x[order[-1]]).argmax())
        else:  # begin at the cluster's outermost class so the chain runs through it
            start = int((x[m] @ centroids[c]).argmin())
        order += [int(m[i]) for i in _chain(x[m] @ x[m].T, start)]
    return order


@torch.no_grad()
def name_embeddings(model: torch.nn.Module, tokenizer, names: list[str], template: str,
                    device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Normalised text embedding of each class name (through ``template``)."""
    from fif.eval.zero_shot import class_embeddings

    model.eval()
    return class_embeddings(model, tokenizer, names, [template], device, batch_size).cpu()


class _ProbeImages(torch.utils.data.Dataset):
    """The probe's images of one split, transformed in DataLoader workers."""

    def __init__(self, split: Split, indices: list[int], transform) -> None:
        self.split, self.indices, self.transform = split, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> torch.Tensor:
        return self.transform(self.split.image(self.indices[k]))


def _probe_indices(targets: Sequence[int], per_class: int, seed: int, folder: str) -> dict[int, list[int]]:
    """Up to ``per_class`` seeded sample indices of every class (all of a smaller class)."""
    by_class: dict[int, list[int]] = {}
    for index, target in enumerate(targets):
        by_class.setdefault(int(target), []).append(index)
    rng = random.Random(f"{seed}/{folder}")
    return {t: sorted(rng.sample(ix, per_class)) if len(ix) > per_class else ix for t, ix in by_class.items()}


@torch.no_grad()
def class_accuracies(backbone, splits: list[Split], max_per_class: int, seed: int, device: torch.device,
                     batch_size: int = 128, workers: int = 0,
                     progress: bool = True) -> dict[StreamEntry, tuple[float, float]]:
    """Zero-shot (accuracy %, mean true-class probability) of every class, within its own dataset."""
    from fif.runtime.device import autocast_for
    from fif.eval.zero_shot import class_embeddings

    if max_per_class < 1:
        raise FifError(f"--max-per-class={max_per_class} must be at least 1")
    model = backbone.model.to(device).eval()
    scale = float(model.logit_scale.exp()) if hasattr(model, "logit_scale") else 100.0
    plans = [(split.spec, split, _probe_indices(split.targets, max_per_class, seed, split.spec.folder))
             for split in splits]
    total = sum(len(ix) for _, _, picks in plans for ix in picks.values())
    bar = tqdm(total=total, desc="zero-shot probe", unit="img", disable=not progress, leave=False)
    scores: dict[StreamEntry, tuple[float, float]] = {}
    for spec, split, picks in plans:
        targets = sorted(picks)
        names = [split.classnames[t] for t in targets]
        with autocast_for(device):
            text = class_embeddings(model, backbone.tokenizer, names, [spec.primer], device).float()
        column = {t: i for i, t in enumerate(targets)}
        indices = [i for t in targets for i in picks[t]]
        truth = torch.tensor([column[int(split.targets[i])] for i in indices])
        hits, p_trues, done = [], [], 0
        loader = torch.utils.data.DataLoader(_ProbeImages(split, indices, backbone.eval_transform),
                                             batch_size=batch_size, num_workers=workers)
        for images in loader:  # per batch, so memory stays O(images) even for thousands of classes
            with autocast_for(device):
                feats = F.normalize(model.encode_image(images.to(device)).float(), dim=-1)
            probs = (scale * feats @ text.T).softmax(-1).cpu()
            own = truth[done:done + len(images)]
            hits.append(probs.argmax(-1) == own)
            p_trues.append(probs[torch.arange(len(own)), own])
            done += len(images)
            bar.update(len(images))
        hit, p_true = torch.cat(hits), torch.cat(p_trues)
        for t in targets:
            mask = truth == column[t]
            scores[(spec.folder, split.classnames[t])] = (100.0 * int(hit[mask].sum()) / int(mask.sum()),
                                                          float(p_true[mask].mean()))
    bar.close()
    return scores


def _key(entry: StreamEntry) -> str:
    return f"{entry[0]}{SEPARATOR}{entry[1]}"


def reversed_stream(source: str | None) -> BuiltStream:
    """The exact reverse of a shipped stream or stream file (e.g. random_sequence_reverse_1 from random_sequence_1)."""
    if not source:
        raise FifError("--order reversed needs --from NAME_OR_FILE (a shipped stream name such as random_sequence_1, "
                       "or a stream file)")
    entries = read_stream(resolve_stream(source, "--from"))
    return BuiltStream("reversed", entries[::-1], summary={"classes": len(entries)})


def frequency_stream(entries: list[StreamEntry], pool: Sequence[str | Path] | None, seed: int, plurals: bool,
                     workers: int, progress: bool) -> BuiltStream:
    """Rare concepts first, counted in the pool's captions (see fif.tools.stream_frequency)."""
    from fif.tools.stream_frequency import concept_counts, frequency_order

    if not pool:
        raise FifError("--order frequency needs --pool DIR (a folder of the pretraining pool's webdataset .tar shards)")
    counted = concept_counts(pool, [c for _, c in entries], plurals=plurals, workers=workers, progress=progress)
    count_of = dict(zip(entries, counted.counts))
    ordered = frequency_order(entries, counted.counts, seed)
    return BuiltStream("frequency", ordered, {_key(e): {"count": count_of[e]} for e in ordered}, {
        "captions": counted.captions, "samples_without_caption": counted.skipped,
        "classes_never_mentioned": sum(c == 0 for c in counted.counts),
        "median_count": float(np.median(counted.counts))})


def time_stream(order: str, blocks: list[list[StreamEntry]], years_path: str | Path | None, seed: int) -> BuiltStream:
    """Datasets in release-year order, dataset-chunked or year-aggregated (see fif.tools.stream_time)."""
    from fif.tools.stream_time import dschunked_order, read_years, rsagg_order, year_groups

    years = read_years(years_path)
    build = dschunked_order if order == "time_incremental_dschunked" else rsagg_order
    ordered = build(blocks, years, seed)
    year_of = {block[0][0]: year for year, group in year_groups(blocks, years) for block in group}
    return BuiltStream(order, ordered, {_key(e): {"year": year_of[e[0]]} for e in ordered},
                       {"datasets": len(blocks), "years": len(set(year_of.values()))})


def _model_stream(order: str, entries: list[StreamEntry], splits: list[Split], opts: dict) -> BuiltStream:
    """The orderings that need the backbone: similarity (text embeddings) and performance (zero-shot probe)."""
    from fif.models.backbone import build_backbone
    from fif.runtime.device import resolve_device

    seed = opts["seed"]
    backbone = build_backbone(opts["backbone_name"], opts["checkpoint"], opts["cache_dir"])
    torch_device = resolve_device(opts["device"])
    if order == "similarity":
        template = opts["text_template"]
        if "{}" not in template:
            raise FifError(f"--text-template={template!r} must contain '{{}}' where the class name goes")
        emb = name_embeddings(backbone.model.to(torch_device), backbone.tokenizer, [c for _, c in entries],
                              template, torch_device)
        path = similarity_order(emb, seed, opts["clusters"])
        baseline = [int(i) for i in np.random.RandomState(seed).permutation(len(entries))]
        return BuiltStream(order, [entries[i] for i in path], summary={
            "mean_adjacent_similarity": mean_adjacent_similarity(emb[path]),
            "mean_adjacent_similarity_random": mean_adjacent_similarity(emb[baseline])})
    measured = class_accuracies(backbone, splits, opts["max_per_class"], seed, torch_device, workers=opts["workers"],
                                progress=opts["progress"])
    ordered = performance_order(entries, measured, easy_first=order == "performance_easy_to_hard")
    scores = {_key(e): {"accuracy": measured[e][0], "true_class_probability": measured[e][1]} for e in ordered}
    mean_accuracy = float(np.mean([measured[e][0] for e in entries]))
    return BuiltStream(order, ordered, scores, {"mean_class_accuracy": mean_accuracy})


def build_stream(order: str, root: str | Path | None, registry: dict[str, DatasetSpec] | None, *,
                 datasets: Sequence[str] | None = None, seed: int = 0, info_dir: str | Path | None = None,
                 backbone_name: str = "mini_clip", checkpoint: str | None = None, cache_dir: str | None = None,
                 device: str = "auto", max_per_class: int = 20, workers: int = 0, clusters: int | None = None,
                 text_template: str = "{}", progress: bool = True, tar: bool = False,
                 pool: Sequence[str | Path] | None = None, plurals: bool = True,
                 years: str | Path | None = None, source: str | None = None) -> BuiltStream:
    """Build one ordering over the adaptation datasets of ``root`` (see the module docstring).

    ``reversed`` reads only ``source``; every other ordering reads the train splits' classes from ``root``."""
    if order not in ORDERS:
        raise FifError(f"--order={order!r} is not a stream ordering (expected one of: {', '.join(ORDERS)})")
    if order == "reversed":
        return reversed_stream(source)
    if source:
        raise FifError(f"--from={source} is only read by --order reversed (this is --order {order})")
    if root is None or registry is None:
        raise FifError(f"--order {order} needs a data root and its dataset registry")
    splits = [read_split(root, spec, "train", info_dir, tar=tar) for spec in select_datasets(registry, datasets)]
    blocks = [split_classes(split) for split in splits]
    entries = [entry for block in blocks for entry in block]
    if order == "random":
        return BuiltStream(order, random_order(entries, seed))
    if order == "dataset_incremental":
        return BuiltStream(order, dataset_incremental_order(blocks, seed, keep_order=bool(datasets)))
    if order == "frequency":
        return frequency_stream(entries, pool, seed, plurals, workers, progress)
    if order.startswith("time_incremental_"):
        return time_stream(order, blocks, years, seed)
    return _model_stream(order, entries, splits, dict(
        seed=seed, backbone_name=backbone_name, checkpoint=checkpoint, cache_dir=cache_dir, device=device,
        text_template=text_template, clusters=clusters, max_per_class=max_per_class, workers=workers,
        progress=progress))
