"""``fif data verify``: check a FiF data root against a registry before spending GPU hours on it.

For every registered dataset: is its folder (or tar) there, are its split info files there and
well formed (a caption and an integer target per entry, one class name per target, the same
names as its ``<FOLDER>_classnames.json`` where that exists), and does every image decode?
Each problem is one line naming the file and entry; nothing is ever a traceback.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping

import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fif.data.format.fif_format import DatasetSpec, Split, read_split
from fif.data.format.storage import ImageStore, open_store
from fif.errors import CorruptSampleError, FifError

COMPLETE, CORRUPT, MISSING, ABSENT = "complete", "corrupt", "missing", "absent"
NOT_IN_BENCHMARK = "not_in_benchmark"


@dataclass
class DatasetReport:
    """What verify found for one dataset."""

    spec: DatasetSpec
    status: str = COMPLETE  # complete | corrupt (problems) | missing (no folder/tar) | absent (optional, not there)
    entries: dict[str, int] = field(default_factory=dict)  # split -> usable info entries
    classes: int = 0
    bad_entries: int = 0
    images_ok: int = 0
    unreadable: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, problem: str) -> None:
        self.problems.append(" ".join(problem.split("\n")))  # one line per problem, always
        if self.status == COMPLETE:
            self.status = CORRUPT


@dataclass
class VerifyReport:
    root: Path
    tar: bool
    datasets: list[DatasetReport]

    @property
    def problems(self) -> list[str]:
        return [p for d in self.datasets for p in d.problems]

    def count(self, status: str) -> int:
        return sum(d.status == status for d in self.datasets)

    def summary(self) -> str:
        images = sum(d.images_ok + d.unreadable for d in self.datasets)
        return (f"{len(self.datasets)} datasets: {self.count(COMPLETE)} complete, {self.count(CORRUPT)} corrupt, "
                f"{self.count(MISSING)} missing, {self.count(ABSENT)} absent (not in benchmark); "
                f"{images} images checked, {sum(d.unreadable for d in self.datasets)} unreadable; "
                f"{sum(d.bad_entries for d in self.datasets)} bad info entries; {len(self.problems)} problems")


def _classnames_file(info_dir: Path, root: Path, folder: str) -> Path | None:
    """The reference keeps ``<FOLDER>_classnames.json`` beside the info files; the mini in ROOT/00_classnames."""
    for candidate in (info_dir / f"{folder}_classnames.json", root / "00_classnames" / f"{folder}_classnames.json"):
        if candidate.is_file():
            return candidate
    return None


def _check_classes(report: DatasetReport, splits: list[Split], classnames_path: Path | None) -> None:
    """Targets and class names agree across splits, no target lacks a name, and they match the classnames file."""
    named: dict[int, tuple[str, Path | None]] = {}
    for split in splits:
        for target, name in enumerate(split.classnames):
            if name.startswith("<missing class"):
                continue
            seen = named.setdefault(target, (name, split.info_path))
            if seen[0] != name:
                report.add(f"{split.info_path}: target {target} is {name!r} but {seen[1]} names it {seen[0]!r}")
    used = {int(t) for split in splits for t in np.unique(split.targets)}
    if report.spec.kind != "classification":  # retrieval targets number images, not classes
        report.classes = len(named)
        if not named:
            return
    else:
        report.classes = len(used)
    unnamed = sorted(used - set(named))
    if unnamed and report.spec.kind == "classification":
        report.add(f"dataset {report.spec.name}: targets {unnamed[:10]} have no classname in any entry")
    if classnames_path is None:
        return
    try:
        listed = json.loads(classnames_path.read_text())
        assert isinstance(listed, list)
    except (OSError, ValueError, AssertionError):
        report.add(f"{classnames_path}: not a JSON list of class names")
        return
    for target, (name, info_path) in sorted(named.items()):
        expected = listed[target] if target < len(listed) else None
        if expected != name:
            report.add(f"{info_path}: target {target} is {name!r} but {classnames_path} has "
                       f"{'no such target' if expected is None else repr(expected)}")


class _Decode(Dataset):
    """Decodes every image of the given splits; an item is None or the problem line."""

    def __init__(self, splits: list[Split]) -> None:
        self.splits = splits
        self.ends = np.cumsum([len(s) for s in splits])

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def __getitem__(self, index: int) -> tuple[int, str | None]:
        which = int(np.searchsorted(self.ends, index, side="right"))
        local = index - (int(self.ends[which - 1]) if which else 0)
        try:
            self.splits[which].image(local)
            return which, None
        except CorruptSampleError as error:
            return which, str(error)


def _as_list(batch: list) -> list:
    return batch


def _decode_all(splits: list[Split], owners: list[DatasetReport], workers: int, progress: bool) -> None:
    dataset = _Decode(splits)
    if len(dataset) == 0:
        return
    loader = DataLoader(dataset, batch_size=64, num_workers=workers, collate_fn=_as_list)
    with tqdm(total=len(dataset), desc="decoding images", unit="img", disable=not progress, mininterval=1.0) as bar:
        for batch in loader:
            for which, problem in batch:
                if problem is None:
                    owners[which].images_ok += 1
                else:
                    owners[which].unreadable += 1
                    owners[which].add(problem)
            bar.update(len(batch))


def verify_root(root: str | Path, registry: Mapping[str, DatasetSpec], info_dir: str | Path | None = None,
                tar: bool = False, resized: bool = False, workers: int = 0, progress: bool = True) -> VerifyReport:
    """Check every dataset of ``registry`` under ``root``; see the module docstring."""
    root = Path(root)
    if not root.is_dir():
        raise FifError(f"data root {root} does not exist")
    info_dir = Path(info_dir) if info_dir else root / "00_info"
    reports: list[DatasetReport] = []
    to_decode: list[Split] = []
    owners: list[DatasetReport] = []
    for spec in registry.values():
        report = DatasetReport(spec)
        reports.append(report)
        try:
            store: ImageStore = open_store(root, spec.folder, tar, spec.name)
        except FifError as error:
            if spec.role == NOT_IN_BENCHMARK:
                report.status = ABSENT
            else:
                report.add(str(error))
                report.status = MISSING
            continue
        splits = []
        for name in spec.splits:
            problems: list[str] = []
            try:
                split = read_split(root, spec, name, info_dir, tar=tar, resized=resized, store=store, problems=problems)
            except FifError as error:
                report.add(str(error))
                continue
            for problem in problems:
                report.add(problem)
            report.bad_entries += len(problems)
            report.entries[name] = len(split)
            splits.append(split)
        _check_classes(report, splits, _classnames_file(info_dir, root, spec.folder))
        to_decode += splits
        owners += [report] * len(splits)
    _decode_all(to_decode, owners, workers, progress)
    return VerifyReport(root, tar, reports)


def format_report(report: VerifyReport) -> str:
    """The table, one ``problem:`` line per problem, and the summary line."""
    lines = [f"{'dataset':<22} {'role':<16} {'kind':<14} {'train':>8} {'test':>8} {'classes':>7} "
             f"{'unreadable':>10} {'bad':>5}  status"]
    for d in report.datasets:
        lines.append(f"{d.spec.name:<22} {d.spec.role:<16} {d.spec.kind:<14} {d.entries.get('train', '-'):>8} "
                     f"{d.entries.get('test', '-'):>8} {d.classes:>7} {d.unreadable:>10} {d.bad_entries:>5}  {d.status}")
    lines += [f"problem: {p}" for p in report.problems]
    lines.append(report.summary())
    return "\n".join(lines)


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)
