"""Data loading at FiF scale: folder vs tar throughput, tar indexing, and opening 2.5M info entries.

    python benchmarks/data_loading.py [--images 2000] [--entries 2500000] [--workers 2]

Prints (numbers, not a test):
1. decode + RGB-convert throughput in images/s for the folder and the tar layout, in one process
   and through a DataLoader with --workers worker processes (page cache warm: the files were just
   written; 256x320 JPEGs of ~20 KB, like the reference's 224-px variants);
2. how fast tar headers are indexed (the fast scanner vs iterating tarfile), per member;
3. the time and memory to open a FiF root of the 63 benchmark datasets whose info files hold
   --entries entries in total (info files only; sizes spread like a real benchmark: a few large
   datasets, many small ones), i.e. read every info file into Splits.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import random
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from fif.data.format.fif_format import DatasetSpec, Split, read_split
from fif.data.format.registry import builtin_registry
from fif.data.format.storage import _scan_fast, _scan_tarfile, build_tar_index


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---- 1. throughput ------------------------------------------------------------------------------

def _photo(rng: np.random.Generator) -> bytes:
    """A smooth, photo-like 320x256 JPEG (random noise would compress and decode unrealistically)."""
    coarse = rng.integers(0, 256, size=(8, 10, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((320, 256), Image.BICUBIC)
    fine = np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, size=(256, 320, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(fine, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_image_root(root: Path, count: int) -> DatasetSpec:
    rng = np.random.default_rng(0)
    folder, info = "BENCH", {}
    (root / "00_info").mkdir(parents=True)
    with tarfile.open(root / f"{folder}.tar", "w") as archive:
        for i in range(count):
            key = f"bench/train/class_{i % 100:03d}/image_{i:07d}.jpg"
            data = _photo(rng)
            path = root / folder / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            member = tarfile.TarInfo(f"{folder}/{key}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
            info[key] = {"classname": f"class {i % 100}", "default_caption": None, "primer_caption": f"A photo of a class {i % 100}.",
                         "synthetic_caption": None, "synthetic_merged_caption": None, "target": i % 100}
    (root / "00_info" / f"{folder}_train.json").write_text(json.dumps(info))
    return DatasetSpec("bench", folder, "classification", "adaptation", "A photo of a {}.")


class _Decode(Dataset):
    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[int, int]:
        return self.split.image(index).size


def _first(batch: list) -> int:
    return len(batch)


def throughput(root: Path, spec: DatasetSpec, tar: bool, workers: int) -> float:
    split = read_split(root, spec, "train", tar=tar)
    start = time.perf_counter()
    if workers == 0:
        for index in range(len(split)):
            split.image(index)
    else:
        for _ in DataLoader(_Decode(split), batch_size=32, num_workers=workers, collate_fn=_first):
            pass
    return len(split) / (time.perf_counter() - start)


# ---- 2. tar indexing ----------------------------------------------------------------------------

def index_speed(folder: Path, members: int) -> tuple[float, float]:
    path = folder / "many.tar"
    with tarfile.open(path, "w") as archive:
        for i in range(members):
            member = tarfile.TarInfo(f"MANY/many/train/class_{i % 1000:04d}/image_{i:08d}.jpg")
            member.size = 100
            archive.addfile(member, io.BytesIO(b"\0" * 100))
    start = time.perf_counter()
    fast = sum(1 for _ in _scan_fast(path))
    fast_s = time.perf_counter() - start
    start = time.perf_counter()
    slow = sum(1 for _ in _scan_tarfile(path))
    slow_s = time.perf_counter() - start
    assert fast == slow == members
    start = time.perf_counter()
    build_tar_index(path, "MANY", progress=False)
    index_s = time.perf_counter() - start
    path.unlink()
    return fast_s / members * 1e6, slow_s / members * 1e6, index_s / members * 1e6


# ---- 3. opening 2.5M info entries ---------------------------------------------------------------

def split_sizes(entries: int) -> dict[tuple[DatasetSpec, str], int]:
    """Heavy-tailed dataset sizes over the 63 benchmark datasets, summing to ``entries``."""
    specs = [s for s in builtin_registry().values() if s.role in ("adaptation", "evaluation")]
    rng = np.random.default_rng(0)
    weights = rng.lognormal(mean=0.0, sigma=1.2, size=len(specs))
    totals = np.floor(weights / weights.sum() * entries).astype(int)
    totals[0] += entries - totals.sum()
    sizes = {}
    for spec, total in zip(specs, totals):
        if spec.role == "evaluation":
            sizes[(spec, "test")] = int(total)
        else:
            sizes[(spec, "train")] = int(total * 0.8)
            sizes[(spec, "test")] = int(total) - int(total * 0.8)
    return sizes


WORDS = "red small large striped wooden metal bright dark old young flying sitting standing green blue".split()


def write_info_root(root: Path, entries: int) -> int:
    """Info files (no images) shaped like the reference's: ~500 bytes per entry, 5 captions for retrieval."""
    rng = random.Random(0)
    (root / "00_info").mkdir(parents=True, exist_ok=True)
    written = 0
    for (spec, split), size in split_sizes(entries).items():
        (root / spec.folder).mkdir(exist_ok=True)
        info = {}
        for i in range(size):
            target = i % 200
            key = f"{spec.folder.lower()}/{split}/n{target:05d}/{spec.folder.lower()}_{i:08d}.jpg"
            words = " ".join(rng.choice(WORDS) for _ in range(8))
            if spec.kind == "retrieval":
                info[key] = {"classname": None, "default_caption": [f"A photo of a {words} scene, take {k}." for k in range(5)],
                             "primer_caption": None, "synthetic_caption": None, "synthetic_merged_caption": None,
                             "target": i}
            else:
                name = f"class number {target}"
                primer = spec.primer.format(name)
                info[key] = {"classname": name, "default_caption": None, "primer_caption": primer,
                             "synthetic_caption": [f"a {words} object in a scene"],
                             "synthetic_merged_caption": [f"{primer[:-1]}, showing a {words} object in a scene."],
                             "target": target}
        (root / "00_info" / f"{spec.folder}_{split}.json").write_text(json.dumps(info, indent=4))
        written += size
    return written


def open_root(root: Path, entries: int) -> None:
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    splits = [read_split(root, spec, split) for spec, split in split_sizes(entries)]
    seconds = time.perf_counter() - start
    gc.collect()
    held = rss_mb() - before
    total = sum(len(s) for s in splits)
    packed = sum(s.keys.nbytes + s.captions.nbytes + s.targets.nbytes for s in splits) / 2**20
    print(f"open FiF root: {len(splits)} info files of {len({s.spec.name for s in splits})} datasets, {total:,} entries "
          f"in {seconds:.1f} s ({total / seconds:,.0f} entries/s); RSS held by the Splits {held:,.0f} MB "
          f"(packed keys+captions+targets {packed:,.0f} MB, {packed * 2**20 / total:.0f} B/entry)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--entries", type=int, default=2_500_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--index-members", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fif-bench-") as folder:
        root = Path(folder)
        spec = write_image_root(root / "images", args.images)
        size_kb = sum(p.stat().st_size for p in (root / "images" / "BENCH").rglob("*.jpg")) / args.images / 1024
        start = time.perf_counter()
        build_tar_index(root / "images" / "BENCH.tar", "BENCH", progress=False)
        print(f"images: {args.images} JPEGs 320x256 (~{size_kb:.0f} KB); tar index built in "
              f"{(time.perf_counter() - start) * 1e3:.0f} ms")
        for workers in (0, args.workers):
            for tar in (False, True):
                rate = throughput(root / "images", spec, tar, workers)
                print(f"decode+RGB  {'tar   ' if tar else 'folder'}  "
                      f"{'1 process' if workers == 0 else f'{workers} DataLoader workers'}: {rate:,.0f} images/s")
        fast, slow, index = index_speed(root, args.index_members)
        print(f"tar headers ({args.index_members:,} members): fast scanner {fast:.2f} us/member, tarfile "
              f"{slow:.2f} us/member; full index (scan + hash + sort) {index:.2f} us/member "
              f"-> {index * 2.5:.1f} s per 2.5M members")
        start = time.perf_counter()
        written = write_info_root(root / "info", args.entries)
        info_mb = sum(p.stat().st_size for p in (root / "info" / "00_info").glob("*.json")) / 2**20
        print(f"generated {written:,} info entries ({info_mb:,.0f} MB of JSON) in {time.perf_counter() - start:.0f} s")
        open_root(root / "info", args.entries)


if __name__ == "__main__":
    sys.exit(main())
