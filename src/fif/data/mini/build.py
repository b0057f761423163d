"""Write the mini benchmark to disk in the reference FoMo-in-Flux layout.

    ROOT/datasets.json                         registry (the reference's datasets.json fields)
    ROOT/<FOLDER>/<folder>/<split>/<c>/<i>.png  images
    ROOT/00_info/<FOLDER>_<split>.json          info files: image key -> classname, captions, target
    ROOT/00_classnames/<FOLDER>_classnames.json class-name lists
    ROOT/pool/shard-<n>.tar                     pretraining pool, webdataset shards (png + txt)

Generation is deterministic from the data seed and atomic: a folder is written under a temporary
name and renamed into place, so an interrupted build never leaves a half-written benchmark.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from fif.data.mini.worlds import DATASETS, MiniDataset, pool_sample
from fif.utils.io import atomic_write_json

FORMAT_VERSION = 1
POOL_SHARD_SIZE = 5000
_DONE = "BUILD_COMPLETE"


def default_root(seed: int = 0) -> Path:
    """Where the generated benchmark lives unless ``experiment.dataset.root`` says otherwise."""
    cache = Path(os.environ.get("FIF_CACHE", Path.home() / ".cache" / "fif"))
    return cache / f"mini-v{FORMAT_VERSION}-seed{seed}"


def _sample_rng(seed: int, *parts: object) -> random.Random:
    return random.Random("/".join(str(p) for p in (seed, *parts)))


def _write_dataset(root: Path, dataset: MiniDataset, seed: int) -> None:
    splits = {"train": dataset.train_per_class, "test": dataset.test_per_class}
    for split, per_class in splits.items():
        if per_class == 0:
            continue
        info: dict[str, dict] = {}
        for target, classname in enumerate(dataset.classnames):
            folder = root / dataset.folder / dataset.key / split / f"{target:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for item in range(per_class):
                image, captions = dataset.draw(_sample_rng(seed, dataset.folder, split, target, item), target, split, item)
                key = f"{dataset.key}/{split}/{target:03d}/{item:04d}.png"
                image.save(root / dataset.folder / key, format="PNG", compress_level=1)
                if dataset.kind == "retrieval":
                    # Retrieval items are their own "class": captions are the ground truth.
                    target_id = len(info)
                    info[key] = {"classname": None, "default_caption": captions, "primer_caption": None,
                                 "synthetic_caption": None, "synthetic_merged_caption": None, "target": target_id}
                else:
                    info[key] = {"classname": classname, "default_caption": None,
                                 "primer_caption": dataset.primer.format(classname),
                                 "synthetic_caption": captions[-1:], "synthetic_merged_caption": captions,
                                 "target": target}
        atomic_write_json(root / "00_info" / f"{dataset.folder}_{split}.json", info)
    if dataset.kind == "classification":
        atomic_write_json(root / "00_classnames" / f"{dataset.folder}_classnames.json", list(dataset.classnames))


def registry_entries() -> dict[str, dict]:
    return {
        d.key: {"folder": d.folder, "primer": d.primer, "classnames_file": f"{d.folder}_classnames.json",
                "type": d.kind, "role_in_default_benchmark": d.role}
        for d in DATASETS
    }


def is_built(root: Path) -> bool:
    return (Path(root) / _DONE).exists()


def build_datasets(root: Path, seed: int = 0, workers: int | None = None) -> Path:
    """Generate every mini dataset under ``root`` unless a complete build is already there."""
    root = Path(root)
    if is_built(root):
        return root
    tmp = root.with_name(root.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "00_info").mkdir(parents=True)
    (tmp / "00_classnames").mkdir()
    workers = workers or min(4, os.cpu_count() or 1)
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_write_dataset, [tmp] * len(DATASETS), DATASETS, [seed] * len(DATASETS)))
    atomic_write_json(tmp / "datasets.json", registry_entries())
    (tmp / _DONE).write_text(json.dumps({"version": FORMAT_VERSION, "seed": seed}))
    if (root / "pool").exists():  # keep pool shards built earlier
        shutil.move(str(root / "pool"), str(tmp / "pool"))
    if is_built(root):  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return root
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return root


def _write_pool_shard(root: Path, index: int, seed: int) -> None:
    import webdataset as wds

    path = root / "pool" / f"shard-{index:05d}.tar"
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    with wds.TarWriter(str(tmp)) as sink:
        for item in range(POOL_SHARD_SIZE):
            image, caption = pool_sample(_sample_rng(seed, "pool", index, item))
            sink.write({"__key__": f"{index:05d}_{item:05d}", "png": image, "txt": caption})
    os.replace(tmp, path)


def pool_shards(root: Path, num_shards: int, seed: int = 0, workers: int | None = None) -> list[Path]:
    """The first ``num_shards`` pool shards, generating any that are missing.

    Shard n is a pure function of (seed, n), so a small pool is a prefix of a large one: the
    replay pool of a run is part of the pool the base model was pretrained on.
    """
    (Path(root) / "pool").mkdir(parents=True, exist_ok=True)
    paths = [Path(root) / "pool" / f"shard-{i:05d}.tar" for i in range(num_shards)]
    missing = [i for i, p in enumerate(paths) if not p.exists()]
    if missing:
        workers = workers or min(4, os.cpu_count() or 1)
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_pool_shard, [Path(root)] * len(missing), missing, [seed] * len(missing)))
    return paths
