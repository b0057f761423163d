"""Adopt and verify a pretraining pool: a folder of webdataset tar shards, certified by ``pool.json``.

A run reads ``experiment.dataset.pretraining_pool`` (every ``*.tar`` in the folder) through
``fif.data.samples.pool``; this module checks a folder the same way before a run depends on it:
every shard a readable tar, every sample an image and a caption, every image (or ``sample`` of
them per shard) decodable exactly as the run's batch builder decodes it. A clean check writes
``pool.json`` (atomic): shard names, sample counts, sizes and SHA-256. Re-checking later only
hashes the shards (no image decoding) and decodes just the ones that changed.

Shards are read as a stream (tarfile's ``r|``) with webdataset's own member grouping, so the
sample keys and counts are those the run sees, and each shard is read once for the check and
its hash together.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from collections.abc import Iterator

from fif.data.samples.pool import IMAGE_EXTENSIONS, TEXT_EXTENSIONS, PoolRecord
from fif.errors import CorruptSampleError, FifError
from fif.utils.io import atomic_write_json

MANIFEST = "pool.json"
MANIFEST_FORMAT = 1


class _HashingReader:
    """A file read once, hashed as it is read (the tar stream and its SHA-256 in one pass)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle, self.digest, self.bytes = handle, hashlib.sha256(), 0

    def __str__(self) -> str:  # webdataset appends "@ <file>" to the errors it sees
        return str(self.handle.name)

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        self.bytes += len(data)
        return data

    def finish(self) -> str:
        """Hash what the tar reader left unread (end-of-archive padding) and return the SHA-256."""
        while self.read(1 << 20):
            pass
        return self.digest.hexdigest()


@dataclass
class ShardCheck:
    """One shard as checked: what pool.json records of it, and the problems found."""

    name: str
    bytes: int = 0
    sha256: str = ""
    samples: int = 0
    images_checked: int = 0
    problems: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "problems"}


def _samples(reader: _HashingReader, shard: str) -> Iterator[dict[str, Any]]:
    """webdataset's grouping of tar members into samples (the run's keys), read as a stream."""
    from webdataset.tariterators import group_by_keys, tar_file_iterator

    members = ({**member, "__url__": shard} for member in tar_file_iterator(reader))
    return group_by_keys(members)


def _record(shard: str, sample: dict[str, Any]) -> PoolRecord:
    image = next((ext for ext in IMAGE_EXTENSIONS if ext in sample), None)
    text = next((ext for ext in TEXT_EXTENSIONS if ext in sample), None)
    return PoolRecord(f"{shard}:{sample['__key__']}", image, sample.get(image), text, sample.get(text))


def _shallow_problem(record: PoolRecord) -> str | None:
    """What is wrong without decoding the image: a missing image, a missing or empty caption."""
    if record.image_bytes is None:
        return f"{record.where}: no image (expected a .{'/.'.join(IMAGE_EXTENSIONS)} member)"
    if record.caption_bytes is None or not record.caption_bytes.strip():
        return f"{record.where}: no caption (expected a non-empty .{'/.'.join(TEXT_EXTENSIONS)} member)"
    return None


def _decode_problem(record: PoolRecord) -> str | None:
    """Decode as the run's batch builder does; an empty caption after decoding is a problem too."""
    try:
        image, caption = record.decode()
    except CorruptSampleError as error:
        return str(error)
    if not caption.strip():
        return f"{record.where}: empty caption"
    if min(image.size) < 1:
        return f"{record.where}: empty image"
    return None


def _end_problem(path: Path) -> str | None:
    """A cut-off shard, which tarfile (and so the run) reads without complaint up to the cut.

    tarfile stops quietly at a truncated header; a complete archive has two zero blocks (the
    end-of-archive marker) right after its last member. The headers are read with seeks only.
    """
    with tarfile.open(path) as archive:
        members = len(archive.getmembers())
        end = archive.offset  # just past the last member read: where the marker starts
    with open(path, "rb") as handle:
        handle.seek(end)
        tail = handle.read()
    if len(tail) < 2 * tarfile.BLOCKSIZE or tail.strip(b"\0"):
        return f"{path.name}: cut off after {members} members (no end-of-archive marker: an unfinished write?)"
    return None


def check_shard(path: str | Path, sample: int | None = None) -> ShardCheck:
    """Read one shard: count and check its samples, decode all images (or ``sample`` of them), hash it.

    ``sample`` picks a reservoir sample of that many per shard, seeded by the shard's name, so a
    repeated check decodes the same images.
    """
    path = Path(path)
    check = ShardCheck(path.name)
    chosen: list[PoolRecord] = []
    rng = random.Random(path.name)
    with open(path, "rb") as handle:
        reader = _HashingReader(handle)
        try:
            for raw in _samples(reader, path.name):
                record, check.samples = _record(path.name, raw), check.samples + 1
                problem = _shallow_problem(record)
                if problem:
                    check.problems.append(problem)
                elif sample is None:
                    check.problems += [p for p in [_decode_problem(record)] if p]
                    check.images_checked += 1
                elif len(chosen) < sample:
                    chosen.append(record)
                elif (slot := rng.randrange(check.samples)) < sample:
                    chosen[slot] = record
        except Exception as error:  # tarfile / webdataset raise many types for a damaged archive
            detail = " ".join(str(error).split())[:200]
            check.problems.append(f"{path.name}: unreadable tar after {check.samples} samples "
                                  f"({type(error).__name__}: {detail})")
        else:
            check.problems += [p for p in [_end_problem(path)] if p]
        check.sha256, check.bytes = reader.finish(), reader.bytes
    check.problems += [p for p in map(_decode_problem, chosen) if p]
    check.images_checked += len(chosen)
    if check.samples == 0 and not check.problems:
        check.problems.append(f"{path.name}: no samples")
    return check


def hash_shard(path: str | Path) -> tuple[str, int]:
    """SHA-256 and size of a shard (the cheap re-check)."""
    with open(path, "rb") as handle:
        reader = _HashingReader(handle)
        return reader.finish(), reader.bytes


def find_pool_shards(folder: Path) -> list[Path]:
    """The shards a run reads from ``folder`` (every ``*.tar``, sorted)."""
    if not folder.is_dir():
        raise FifError(f"pretraining pool folder {folder} does not exist")
    shards = sorted(folder.glob("*.tar"))
    if not shards:
        raise FifError(f"pretraining pool folder {folder} has no .tar shards (expected webdataset shards: "
                       f"<key>.jpg/.png/.webp + <key>.txt per sample)")
    return shards


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's pool.json, or None; a file that is not a pool manifest is a one-line error."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        for shard in data["shards"]:
            missing = [key for key in ShardCheck.__dataclass_fields__ if key != "problems" and key not in shard]
            if missing:
                raise KeyError(missing[0])
        return data
    except (ValueError, KeyError, TypeError) as error:
        raise FifError(f"{path} is not a pool manifest ({type(error).__name__}: {error}); delete it to check "
                       f"the pool afresh") from None


def adopt_shards(source: Path, out: Path) -> list[Path]:
    """Make ``out`` a pool folder of ``source``'s shards: links to them (no copy), or ``source`` itself."""
    shards = find_pool_shards(source)
    if out.resolve() == source.resolve():
        return shards
    out.mkdir(parents=True, exist_ok=True)
    for shard in shards:
        link = out / shard.name
        if link.is_symlink() and link.resolve() == shard.resolve():
            continue
        if link.exists() or link.is_symlink():
            raise FifError(f"{link} already exists and is not a link to {shard} (adopt into an empty folder)")
        link.symlink_to(shard.resolve())
    return find_pool_shards(out)


@dataclass
class PoolCheck:
    """A whole folder as checked: its shards, how many were unchanged since pool.json, every problem."""

    folder: Path
    shards: list[ShardCheck]
    unchanged: int
    problems: list[str]
    sample: int | None

    @property
    def samples(self) -> int:
        return sum(shard.samples for shard in self.shards)

    @property
    def images_checked(self) -> int:
        return sum(shard.images_checked for shard in self.shards)


def _parallel(function: Any, items: list[Any], workers: int, desc: str, progress: bool) -> list[Any]:
    """``function`` over ``items`` in worker processes (in this one for a single worker), with a progress bar."""
    from tqdm import tqdm

    results: list[Any] = [None] * len(items)
    with tqdm(total=len(items), desc=desc, unit="shard", disable=not progress or not items) as bar:
        if workers <= 1 or len(items) <= 1:
            for index, item in enumerate(items):
                results[index] = function(*item)
                bar.update()
            return results
        with ProcessPoolExecutor(min(workers, len(items))) as pool:
            futures = {pool.submit(function, *item): index for index, item in enumerate(items)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update()
    return results


def _still_valid(recorded: dict[str, Any], digest: str, size: int, sample: int | None) -> bool:
    """A recorded shard needs no new check: same bytes, and at least as many images decoded as asked now."""
    wanted = recorded["samples"] if sample is None else min(sample, recorded["samples"])
    return recorded["sha256"] == digest and recorded["bytes"] == size and recorded["images_checked"] >= wanted


def verify_pool(folder: Path, sample: int | None = None, workers: int | None = None, full: bool = False,
                progress: bool = True, previous: dict[str, Any] | None = None) -> PoolCheck:
    """Check every shard of ``folder``; shards unchanged since pool.json are only hashed (unless ``full``).

    ``previous``: the manifest to compare with when the folder's own is gone (a build removes it).
    """
    if sample is not None and sample < 1:
        raise FifError(f"--sample {sample}: expected at least 1 image per shard")
    shards = find_pool_shards(folder)
    workers = workers or os.cpu_count() or 1
    old = None if full else (read_manifest(folder) or previous)
    recorded = {shard["name"]: shard for shard in old["shards"]} if old else {}
    problems = [f"{name}: recorded in {folder / MANIFEST} but missing from the folder"
                for name in recorded if not (folder / name).exists()]
    known = [shard for shard in shards if shard.name in recorded]
    hashes = dict(zip(known, _parallel(hash_shard, [(s,) for s in known], workers, "hashing shards", progress)))
    checks: dict[Path, ShardCheck] = {}
    for shard, (digest, size) in hashes.items():
        if _still_valid(recorded[shard.name], digest, size, sample):
            checks[shard] = ShardCheck(**recorded[shard.name])
    unchanged = len(checks)
    todo = [shard for shard in shards if shard not in checks]
    for shard, check in zip(todo, _parallel(check_shard, [(s, sample) for s in todo], workers,
                                            "checking shards", progress)):
        checks[shard] = check
    ordered = [checks[shard] for shard in shards]
    problems += [problem for check in ordered for problem in check.problems]
    return PoolCheck(folder, ordered, unchanged, problems, sample)


def write_manifest(check: PoolCheck, source: dict[str, Any] | None = None) -> Path:
    """pool.json for a clean check (atomic); ``source`` says where the shards came from (kept if None)."""
    if check.problems:
        raise FifError(f"{check.folder} has {len(check.problems)} problems: no {MANIFEST} written")
    old = read_manifest(check.folder) or {}
    manifest = {"format": MANIFEST_FORMAT, "folder": str(check.folder.absolute()),
                "checked": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "num_shards": len(check.shards),
                "num_samples": check.samples, "images_checked": check.images_checked,
                "sample_per_shard": check.sample, "source": source if source is not None else old.get("source"),
                "shards": [shard.record() for shard in check.shards]}
    return atomic_write_json(check.folder / MANIFEST, manifest)
