"""``fif data resize``: write the 224-px variants that ``create_resized_variant_if_possible`` reads.

What the reference does (data_lib/__init__.py, ``_create_and_use_resized_data``), and so what this
does: every image of a split is opened as RGB, resized with
``torchvision.transforms.Resize(224, interpolation=BICUBIC)`` (the shorter side becomes 224, the
aspect ratio is kept, the longer side is ``int(224 * long / short)``; smaller images are enlarged;
an image whose shorter side is already 224 is kept as is) and saved under the same file name with
PIL's defaults for its extension (JPEG quality 75). The variant of split S of dataset F is

    ROOT/F/F_S_224/<key>              the images (folder mode), or members F/F_S_224/<key> of ROOT/F.tar
    <info_dir>/F_S_224.json           the same entries keyed F_S_224/<key>, in the same order

The reference resizes only the datasets whose loader sets ``create_resized_variant_if_possible``
(35 of the 63: large, varied photos); those are the default here (REFERENCE_RESIZED), and our
reader, like the reference, reads a variant wherever it exists.

Images are resized in worker processes; each file is written atomically (a temporary name, then a
rename) and existing ones are skipped, so an interrupted run continues. A split's info file is
written last, once all its images are there: a reader never sees a variant that is incomplete.
In tar mode the new members are appended to a copy of the tar, which then replaces it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Iterator

from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from tqdm import tqdm

from fif.data.format.fif_format import DatasetSpec
from fif.data.format.storage import ImageStore, TarStore, open_store
from fif.errors import CorruptSampleError, FifError
from fif.utils.io import atomic_write

SIZE = 224
CHUNK = 64  # images per worker task
# The datasets whose reference loader sets create_resized_variant_if_possible=True (data_lib/<name>.py).
REFERENCE_RESIZED = frozenset({
    "AI2DIAGRAMS", "BIRDSNAP", "CALTECH101", "CALTECH256", "CARS196", "CLEVR", "COUNTRY211", "DF20MINI",
    "DOLLARSTREET", "DOMAINNET_CLIPART", "DOMAINNET_INFOGRAPH", "DOMAINNET_PAINTING", "DOMAINNET_QUICKDRAW",
    "DOMAINNET_SKETCH", "FGVCAircraft", "Food101", "FRU92", "IMAGENET", "IMAGENET_A", "IMAGENET_D", "IMAGENET_R",
    "IMAGENET_S", "IMAGENET_V2", "iNATURALIST2021", "ISICMELANOMA", "MONKEYS10", "MSCOCO", "MVTECAD_Adapt",
    "MVTECAD_Eval", "OBJECTNET", "OPENIMAGES", "QUILT", "SNAKECLEF", "SUN397", "VEG200",
})


def variant_name(folder: str, split: str, size: int = SIZE) -> str:
    """``<FOLDER>_<split>_<size>``: the variant's info-file stem and its folder under ROOT/<FOLDER>/."""
    return f"{folder}_{split}_{size}"


@dataclass
class ResizeReport:
    written: int = 0  # images resized by this run
    skipped: int = 0  # images already there
    variants: list[str] = field(default_factory=list)  # info files written
    problems: list[str] = field(default_factory=list)  # one line each


@dataclass
class _Split:
    """One split to resize: its entries, the images still to do, and where its info file goes."""

    spec: DatasetSpec
    split: str
    variant: str
    info: dict
    pending: list[str]
    info_out: Path
    problems: list[str] = field(default_factory=list)


_STORES: dict[tuple[str, str, bool], ImageStore] = {}  # per process; forked workers inherit the parent's


def _store(root: str, folder: str, tar: bool, name: str) -> ImageStore:
    key = (root, folder, tar)
    if key not in _STORES:
        _STORES[key] = open_store(root, folder, tar, name)
    return _STORES[key]


def _encode(image: Image.Image, key: str) -> bytes:
    fmt = Image.registered_extensions().get(os.path.splitext(key)[1].lower())
    if fmt is None:
        raise ValueError(f"no image format for the extension of {key!r}")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)  # PIL's defaults, as the reference's img.save(path)
    return buffer.getvalue()


def resize_image(image: Image.Image, size: int = SIZE) -> Image.Image:
    """The reference's resize: shorter side to ``size``, bicubic, aspect kept."""
    return TF.resize(image, size, interpolation=InterpolationMode.BICUBIC)


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: handle.write(data), binary=True)


def _resize_chunk(root: str, folder: str, name: str, tar: bool, variant: str, keys: list[str],
                  size: int) -> tuple[int, list[str], list[tuple[str, bytes]]]:
    """Worker task: resize ``keys``; folder mode writes the files, tar mode returns their bytes."""
    store = _store(root, folder, tar, name)
    written, problems, encoded = 0, [], []
    for key in keys:
        try:
            data = _encode(resize_image(store.load(key), size), key)
        except (CorruptSampleError, ValueError, OSError) as error:
            problems.append(f"{store.where(key)}: not resized ({error})")
            continue
        if tar:
            encoded.append((key, data))
        else:
            _write_file(Path(root) / folder / variant / key, data)
            written += 1
    return written, problems, encoded


def _plan(root: Path, spec: DatasetSpec, split: str, info_dir: Path, size: int, tar: bool) -> _Split:
    info_path = info_dir / f"{spec.folder}_{split}.json"
    try:
        info = json.loads(info_path.read_bytes())
        assert isinstance(info, dict)
    except FileNotFoundError:
        raise FifError(f"info file {info_path} does not exist (dataset {spec.name!r}, split {split!r})") from None
    except (OSError, ValueError, AssertionError) as error:
        raise FifError(f"info file {info_path} is not a JSON object of entries ({error})") from None
    variant = variant_name(spec.folder, split, size)
    store = _store(str(root), spec.folder, tar, spec.name)
    if tar:
        pending = [key for key in info if f"{variant}/{key}" not in store]
    else:
        prefix = f"{root / spec.folder / variant}{os.sep}"
        pending = [key for key in info if not os.path.isfile(prefix + key)]
    return _Split(spec, split, variant, info, pending, info_dir / f"{variant}.json")


class _TarAppender:
    """New members for ROOT/<FOLDER>.tar, appended to a copy that replaces the tar on ``commit``."""

    def __init__(self, root: Path, folder: str) -> None:
        self.path, self.folder = root / f"{folder}.tar", folder
        store = _STORES[(str(root), folder, True)]
        self.prefix = store.index.prefix if isinstance(store, TarStore) else f"{folder}/"
        fd, name = tempfile.mkstemp(dir=root, prefix=f".{folder}.tar.", suffix=".part")
        os.close(fd)
        self.part = Path(name)
        shutil.copyfile(self.path, self.part)
        self.archive = tarfile.open(self.part, "a")

    def add(self, variant: str, key: str, data: bytes) -> None:
        member = tarfile.TarInfo(f"{self.prefix}{variant}/{key}")
        member.size, member.mtime = len(data), int(time.time())
        self.archive.addfile(member, io.BytesIO(data))

    def commit(self) -> None:
        self.archive.close()
        os.replace(self.part, self.path)
        _STORES.pop((str(self.path.parent), self.folder, True), None)  # its index describes the old file

    def abort(self) -> None:
        self.archive.close()
        self.part.unlink(missing_ok=True)


def _chunks(keys: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(keys), CHUNK):
        yield keys[start:start + CHUNK]


class _InProcess(Executor):
    """``jobs=0``: the same tasks in this process (debugging, tiny roots)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[override]
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def _run_dataset(pool: Executor, root: Path, splits: list[_Split], tar: bool, size: int, bar: tqdm,
                 report: ResizeReport) -> None:
    """Resize one dataset's pending images, then write the info file of each split that is complete."""
    folder, name = splits[0].spec.folder, splits[0].spec.name
    appender = _TarAppender(root, folder) if tar and any(s.pending for s in splits) else None
    try:
        for split in splits:
            futures = [pool.submit(_resize_chunk, str(root), folder, name, tar, split.variant, keys, size)
                       for keys in _chunks(split.pending)]
            for future, keys in zip(futures, _chunks(split.pending), strict=True):
                written, problems, encoded = future.result()
                for key, data in encoded:
                    appender.add(split.variant, key, data)
                report.written += written + len(encoded)
                split.problems += problems
                bar.update(len(keys))
        if appender is not None:
            appender.commit()
            appender = None
    finally:
        if appender is not None:
            appender.abort()
    for split in splits:
        _finish_split(split, report)


def _finish_split(split: _Split, report: ResizeReport) -> None:
    report.skipped += len(split.info) - len(split.pending)
    report.problems += split.problems
    if split.problems:
        report.problems.append(f"{split.info_out}: not written ({len(split.problems)} images of "
                               f"{split.spec.folder} {split.split} could not be resized)")
        return
    resized = {f"{split.variant}/{key}": entry for key, entry in split.info.items()}
    if not split.info_out.is_file() or json.loads(split.info_out.read_bytes()) != resized:
        atomic_write(split.info_out, lambda handle: json.dump(resized, handle, indent=4))
    report.variants.append(split.info_out.name)


def resize_root(root: str | Path, specs: Iterable[DatasetSpec], info_dir: str | Path | None = None,
                size: int = SIZE, jobs: int = 0, tar: bool = False, progress: bool = True) -> ResizeReport:
    """Write the ``size``-px variant of every split of ``specs``; see the module docstring. Bad
    images are problems (their split's info file is then not written); a missing info file or
    image store is a FifError."""
    root = Path(root)
    info_dir = Path(info_dir) if info_dir else root / "00_info"
    if size <= 0:
        raise FifError(f"--size {size}: expected a positive number of pixels (the reference reads 224)")
    _STORES.clear()  # stores of an earlier call in this process may describe files that changed since
    plans = [[_plan(root, spec, split, info_dir, size, tar) for split in spec.splits] for spec in specs]
    report = ResizeReport()
    total = sum(len(split.pending) for splits in plans for split in splits)
    pool: Executor = ProcessPoolExecutor(max_workers=jobs) if jobs > 0 and total else _InProcess()
    with pool, tqdm(total=total, unit="img", desc="resizing", disable=not progress, mininterval=1.0) as bar:
        for splits in plans:
            if splits:
                _run_dataset(pool, root, splits, tar, size, bar, report)
    return report
