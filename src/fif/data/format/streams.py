"""Stream files (the reference format) and their chunking into tasks.

A stream file is a JSON list of ``"FOLDER+++classname"``: the order in which concepts arrive.
Streams ship with the package by name: the mini benchmark's (``fif/data/mini/streams``) and the
reference's 29 (``fif/data/reference/streams/*.json.gz``, e.g. ``random_sequence_1``); see docs/streams.md.
A run's stream comes from ``experiment.dataset.sequence`` (a file or shipped stream) or, without
one, from ``experiment.dataset.name`` (datasets whose train-split classes are streamed in dataset
order). ``experiment.dataset.sequence_reshuffle`` shuffles it by seed as the reference does
(numpy's legacy RandomState). It is then chunked into ``experiment.task.num`` contiguous tasks
(the first ``len % num`` tasks get one class more) or, with
``experiment.task.dataset_incremental``, into one task per dataset in order of first appearance.
"""

from __future__ import annotations

import gzip
import json
import zlib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Sequence

import numpy as np

from fif.config.blocks import DatasetOptions, ExperimentOptions
from fif.errors import FifError

if TYPE_CHECKING:
    from fif.data.format.fif_format import DatasetSpec, Split

SEPARATOR = "+++"
StreamEntry = tuple[str, str]  # (dataset folder, classname)


SHIPPED_PACKAGES = ("fif.data.mini", "fif.data.reference")  # each holds a streams/ folder
REFERENCE_FOLDER = "stream_construction"  # where the reference's experiment files say its streams live


def _stream_name(path: Path) -> str:
    """``random_sequence_1`` for ``random_sequence_1.json`` and ``random_sequence_1.json.gz``."""
    return path.name.removesuffix(".gz").removesuffix(".json")


def shipped_streams() -> dict[str, Path]:
    """Every stream file that ships with the package, by name: the mini benchmark's and the reference's 29."""
    streams: dict[str, Path] = {}
    for package in SHIPPED_PACKAGES:
        folder = Path(str(resources.files(package) / "streams"))
        for path in sorted([*folder.glob("*.json"), *folder.glob("*.json.gz")]):
            streams.setdefault(_stream_name(path), path)
    return streams


def resolve_stream(value: str, what: str = "experiment.dataset.sequence") -> Path:
    """A stream given as a shipped stream's name, a file path, or the reference's spelling of a shipped one.

    The reference's experiment files write ``stream_construction/random_sequence_1.json`` (a path inside
    its repository); where no such file exists, that means the shipped stream of that name.
    """
    streams = shipped_streams()
    if value in streams:
        return streams[value]
    path = Path(value).expanduser()
    if path.is_file():
        return path
    if path.parent.name == REFERENCE_FOLDER and _stream_name(path) in streams:
        return streams[_stream_name(path)]
    raise FifError(f"{what}={value!r} is neither a file nor a shipped stream "
                   f"(shipped: {', '.join(streams)})")


def _load_json(path: Path) -> Any:
    """A JSON file's value; gzipped files (the shipped reference streams) are recognised by their magic bytes."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return json.loads(data)


def read_stream(path: str | Path) -> list[StreamEntry]:
    """The entries of a stream file (plain ``.json`` or gzipped ``.json.gz``), checked for the ``+++`` format."""
    path = Path(path)
    expected = "expected a JSON list of \"FOLDER+++classname\" strings"
    try:
        raw = _load_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FifError(f"stream file {path} is not JSON ({error}): {expected}") from None
    except (OSError, EOFError, zlib.error) as error:  # unreadable, or a broken .gz
        raise FifError(f"stream file {path} could not be read ({type(error).__name__}: {error}): {expected}") \
            from None
    if not isinstance(raw, list):
        raise FifError(f"stream file {path} holds a JSON {type(raw).__name__}: {expected}")
    if not raw:
        raise FifError(f"stream file {path} is an empty list: {expected} (at least one)")
    entries = []
    for position, item in enumerate(raw):
        if not isinstance(item, str) or SEPARATOR not in item:
            raise FifError(f"stream file {path}, entry {position}: {item!r} is not \"FOLDER+++classname\"")
        folder, classname = item.split(SEPARATOR, 1)
        entries.append((folder, classname))
    return entries


def write_stream(path: str | Path, entries: list[StreamEntry]) -> None:
    from fif.utils.io import atomic_write

    atomic_write(path, lambda f: f.write(json.dumps([f"{d}{SEPARATOR}{c}" for d, c in entries], indent=4)))


def chunk_into_tasks(entries: list[StreamEntry], num_tasks: int) -> list[list[StreamEntry]]:
    """Contiguous chunks; the first ``len(entries) % num_tasks`` chunks hold one entry more."""
    if num_tasks < 1:
        raise FifError(f"experiment.task.num={num_tasks} must be at least 1")
    if num_tasks > len(entries):
        raise FifError(f"experiment.task.num={num_tasks} exceeds the stream's {len(entries)} classes")
    base, extra = divmod(len(entries), num_tasks)
    tasks, start = [], 0
    for t in range(num_tasks):
        size = base + (1 if t < extra else 0)
        tasks.append(entries[start:start + size])
        start += size
    return tasks


def _not_streamable(spec: DatasetSpec) -> str | None:
    """Why a dataset may not be in a stream (None when it may): only adaptation datasets are streamed."""
    from fif.data.format.fif_format import ADAPTATION, EVALUATION

    if spec.role == ADAPTATION:
        return None
    what = ("an evaluation-only dataset" if spec.role == EVALUATION
            else f"not an adaptation dataset (role {spec.role!r})")
    return (f"{spec.folder} is {what}; streams may only bring adaptation datasets "
            f"(experiment.dataset.adapt_on=[{spec.name}] makes it one for this run)")


def check_stream(entries: list[StreamEntry], registry: dict[str, DatasetSpec], source: str) -> list[StreamEntry]:
    """Entries with their dataset part turned into registry folders; unknown, held-out or repeated ones fail."""
    from fif.data.format.registry import find_dataset

    specs: dict[str, DatasetSpec] = {}
    for position, (key, classname) in enumerate(entries):
        if key in specs:
            continue
        where = f"stream {source}, entry {position} ({key}{SEPARATOR}{classname}): dataset"
        spec = specs[key] = find_dataset(registry, key, where)
        reason = _not_streamable(spec)
        if reason:
            raise FifError(f"stream {source}, entry {position} ({key}{SEPARATOR}{classname}): {reason}")
    normalized = [(specs[key].folder, classname) for key, classname in entries]
    seen: dict[StreamEntry, int] = {}
    for position, entry in enumerate(normalized):
        if entry in seen:
            raise FifError(f"stream {source}, entry {position} ({entry[0]}{SEPARATOR}{entry[1]}) repeats entry "
                           f"{seen[entry]}; every dataset+class may appear once")
        seen[entry] = position
    return normalized


def split_classes(split: Split) -> list[StreamEntry]:
    """A split's classes that have samples, in target order (the reference's per-dataset streams)."""
    present = set(split.targets)
    classes = [(split.spec.folder, name) for target, name in enumerate(split.classnames) if target in present]
    if not classes:
        raise FifError(f"dataset {split.spec.folder}: its {split.name} split names no classes (info file entries "
                       f"have no 'classname'), so it cannot be streamed")
    return classes


def dataset_classes(root: str | Path, spec: DatasetSpec, info_dir: str | Path | None = None,
                    tar: bool = False) -> list[StreamEntry]:
    """A dataset's streamable classes, read from its train split's info file (folder or tar layout)."""
    from fif.data.format.fif_format import read_split

    return split_classes(read_split(root, spec, "train", info_dir, tar=tar))


def dataset_stream(names: Sequence[str], root: str | Path, registry: dict[str, DatasetSpec],
                   info_dir: str | Path | None = None, tar: bool = False) -> list[StreamEntry]:
    """Every class of the named datasets, dataset after dataset (``experiment.dataset.name``)."""
    from fif.data.format.registry import find_dataset

    entries: list[StreamEntry] = []
    for name in names:
        spec = find_dataset(registry, str(name), "experiment.dataset.name: dataset")
        reason = _not_streamable(spec)
        if reason:
            raise FifError(f"experiment.dataset.name: {reason}")
        entries += dataset_classes(root, spec, info_dir, tar)
    return check_stream(entries, registry, "experiment.dataset.name")


def reshuffle(entries: list[StreamEntry], seed: int) -> list[StreamEntry]:
    """The reference's ``sequence_reshuffle``: np.random.seed(seed); np.random.shuffle(sequence)."""
    order = np.arange(len(entries))
    np.random.RandomState(seed).shuffle(order)
    return [entries[i] for i in order]


def tasks_per_dataset(entries: list[StreamEntry]) -> list[list[StreamEntry]]:
    """One task per dataset, datasets in order of first appearance, classes in stream order."""
    tasks: dict[str, list[StreamEntry]] = {}
    for entry in entries:
        tasks.setdefault(entry[0], []).append(entry)
    return list(tasks.values())


def _names(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


def stream_source(ds: DatasetOptions) -> str:
    """How error messages name the run's stream: its file, or the dataset list it came from."""
    if ds.sequence:
        try:
            return f"stream {resolve_stream(str(ds.sequence))}"
        except FifError:
            return f"stream {ds.sequence}"
    return "stream experiment.dataset.name"


def make_tasks(experiment: ExperimentOptions, root: str | Path,
               registry: dict[str, DatasetSpec]) -> tuple[list[StreamEntry], list[list[StreamEntry]]]:
    """The run's stream and its tasks from ``experiment.dataset`` and ``experiment.task``."""
    ds, task = experiment.dataset, experiment.task
    if ds.sequence and ds.name:
        raise FifError(f"experiment.dataset.sequence={ds.sequence} and experiment.dataset.name={list(_names(ds.name))} "
                       f"are both set; a stream comes from one of them (add experiment.dataset.sequence=null)")
    if ds.sequence:
        source = resolve_stream(str(ds.sequence))
        entries = check_stream(read_stream(source), registry, str(source))
    elif ds.name:
        entries = dataset_stream(_names(ds.name), root, registry, ds.info_dir, ds.tar)
    else:
        raise FifError("no stream: set experiment.dataset.sequence (a stream file or shipped stream name) or "
                       "experiment.dataset.name (datasets to stream, e.g. [CIFAR100,DTD])")
    if ds.sequence_reshuffle:
        entries = reshuffle(entries, experiment.seed)
    if task.dataset_incremental:
        return entries, tasks_per_dataset(entries)
    return entries, chunk_into_tasks(entries, int(task.num))
