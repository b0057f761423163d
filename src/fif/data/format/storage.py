"""Where one dataset's images live: the folder ``ROOT/<FOLDER>/`` or one tar ``ROOT/<FOLDER>.tar``.

Both are addressed by the info file's key. The tar is never extracted (clusters limit file
counts; that is why the reference offers ``experiment.dataset.tar``): it is indexed once per
process (member -> offset, size) and each image is one positional read. The reference's tars hold
``<FOLDER>/<key>`` members (the path relative to the data root); members without the folder
prefix are accepted too.

File handles are opened lazily per process, so a store can be shared with DataLoader worker
processes (forked or spawned) without two processes moving one file offset.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable, Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from fif.data.format.images import decode_rgb
from fif.errors import CorruptSampleError, FifError


class ImageStore(ABC):
    """Encoded image bytes by info-file key; ``load`` decodes them to RGB."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The encoded image; a missing or unreadable entry is a CorruptSampleError."""

    @abstractmethod
    def where(self, key: str) -> str:
        """Where the image lives, for messages: a file path, or ``TAR: MEMBER``."""

    @abstractmethod
    def __contains__(self, key: object) -> bool: ...

    def load(self, key: str) -> Image.Image:
        return decode_rgb(io.BytesIO(self.read_bytes(key)), self.where(key))


class FolderStore(ImageStore):
    """Images as files under ``ROOT/<FOLDER>/``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._prefix = str(self.folder) + os.sep  # joining strings, not Paths: no per-image Path objects

    def where(self, key: str) -> str:
        return self._prefix + key

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and os.path.isfile(self._prefix + key)

    def read_bytes(self, key: str) -> bytes:
        try:
            with open(self._prefix + key, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            raise CorruptSampleError(f"image {self.where(key)} does not exist", self.where(key)) from None
        except OSError as error:
            raise CorruptSampleError(f"image {self.where(key)} is unreadable ({error})", self.where(key)) from None

    def load(self, key: str) -> Image.Image:
        return decode_rgb(self._prefix + key, self.where(key))


# ---- tar index ---------------------------------------------------------------------------------

BLOCK = 512
_REGULAR = (b"0", b"\0", b"7")
_SKIPPED = (b"1", b"2", b"3", b"4", b"5", b"6", b"g", b"V", b"D", b"M", b"N")  # links, dirs, devices, ...


class _Unsupported(Exception):
    """A tar feature the fast scanner leaves to :mod:`tarfile` (sparse files, odd checksums)."""


def _octal(field: bytes) -> int:
    if field[:1] == b"\x80":  # GNU base-256 for large values
        return int.from_bytes(field[1:], "big")
    if field[:1] == b"\xff":
        raise _Unsupported("negative base-256 number")
    return int(field.split(b"\0", 1)[0].strip() or b"0", 8)


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    records, pos = {}, 0
    while pos < len(data) and data[pos:pos + 1] != b"\0":
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1:pos + length - 1].partition(b"=")
        records[key] = value
        pos += length
    return records


def _scan_fast(path: Path) -> Iterator[tuple[str, int, int]]:
    """(name, data offset, size) of every regular member: ustar, GNU long names and pax headers.

    It reads only the 512-byte headers and seeks over the data, about ten times faster than
    iterating :class:`tarfile.TarFile` (which builds a TarInfo per member).
    """
    with open(path, "rb") as handle:
        offset, long_name, pax = 0, None, {}
        while True:
            handle.seek(offset)
            header = handle.read(BLOCK)
            if len(header) < BLOCK or header.count(0) == BLOCK:
                return
            if sum(header) - sum(header[148:156]) + 256 != _octal(header[148:156]):
                raise _Unsupported(f"checksum at byte {offset}")
            kind, size = header[156:157], _octal(header[124:136])
            data_offset = offset + BLOCK
            offset = data_offset + -(-size // BLOCK) * BLOCK
            if kind == b"L":
                long_name = _text(handle.read(size))
            elif kind in (b"x", b"X"):
                pax = _pax_records(handle.read(size))
                if any(k.startswith(b"GNU.sparse") for k in pax):
                    raise _Unsupported("sparse member")
            elif kind in _REGULAR:
                if b"size" in pax:
                    size = int(pax[b"size"])
                    offset = data_offset + -(-size // BLOCK) * BLOCK
                if b"path" in pax:
                    name = pax[b"path"].decode("utf-8", "surrogateescape")
                elif long_name is not None:
                    name = long_name
                else:
                    name = _text(header[0:100])
                    if header[257:262] == b"ustar" and header[345:346] != b"\0":
                        name = _text(header[345:500]) + "/" + name
                yield name, data_offset, size
                long_name, pax = None, {}
            elif kind in _SKIPPED:
                long_name, pax = None, {}
            elif kind == b"K":  # GNU long link target: belongs to the link that follows, which is skipped
                pass
            else:
                raise _Unsupported(f"member type {kind!r}")


def _scan_tarfile(path: Path) -> Iterator[tuple[str, int, int]]:
    with tarfile.open(path, "r:") as archive:
        while (member := archive.next()) is not None:
            archive.members = []  # keep memory flat on millions of members
            if member.isreg():
                yield member.name, member.offset_data, member.size


def _name_hash(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "little")


@dataclass(frozen=True)
class TarIndex:
    """Member name -> (data offset, size), as sorted 64-bit name hashes: 24 bytes per member.

    Keeping hashes instead of names makes the index of a 2.5M-image benchmark ~60 MB, cheap to
    share with worker processes. A false match needs a 64-bit hash collision (~1e-7 odds at
    2.5M names).
    """

    hashes: np.ndarray  # uint64, sorted
    offsets: np.ndarray  # int64
    sizes: np.ndarray  # int64
    prefix: str  # "<FOLDER>/" when the members carry it (the reference's layout), else ""

    def lookup(self, key: str) -> tuple[int, int] | None:
        h = np.uint64(_name_hash(key))
        i = int(np.searchsorted(self.hashes, h))
        if i < len(self.hashes) and self.hashes[i] == h:
            return int(self.offsets[i]), int(self.sizes[i])
        return None

    def __len__(self) -> int:
        return len(self.hashes)


def _normalize(name: str, prefix: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name[len(prefix):] if name.startswith(prefix) else name


def build_tar_index(path: str | Path, folder: str, progress: bool = True) -> TarIndex:
    """Index an uncompressed tar once: one pass over its headers, with a progress bar for big files."""
    path = Path(path)
    with open(path, "rb") as handle:
        magic = handle.read(262)
    if magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh" or magic[:6] == b"\xfd7zXZ\x00":
        raise FifError(f"tar file {path} is compressed; tar mode reads uncompressed tars only "
                       f"(decompress it once, e.g. gunzip)")
    prefix = folder.rstrip("/") + "/"
    total = path.stat().st_size
    hashes, offsets, sizes = [], [], []
    bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"indexing {path.name}", leave=False,
               disable=not progress or total < (1 << 30))

    def collect(members: Iterable[tuple[str, int, int]]) -> None:
        last = 0
        for name, offset, size in members:
            hashes.append(_name_hash(_normalize(name, prefix)))
            offsets.append(offset)
            sizes.append(size)
            if offset - last > (64 << 20):
                bar.update(offset - last)
                last = offset

    try:
        try:
            collect(_scan_fast(path))
        except _Unsupported:
            hashes.clear(), offsets.clear(), sizes.clear()
            collect(_scan_tarfile(path))
    except (tarfile.TarError, ValueError) as error:
        raise FifError(f"tar file {path} is not a readable tar ({type(error).__name__}: {error})") from None
    finally:
        bar.close()
    hash_array = np.array(hashes, dtype=np.uint64)
    # Later members win, as when tar extracts duplicates: keep each hash's last occurrence.
    reverse = hash_array[::-1]
    unique, first_in_reverse = np.unique(reverse, return_index=True)
    keep = len(hash_array) - 1 - first_in_reverse
    return TarIndex(unique, np.array(offsets, dtype=np.int64)[keep], np.array(sizes, dtype=np.int64)[keep], prefix)


_INDEX_CACHE: dict[tuple[str, int, int], TarIndex] = {}


def tar_index(path: Path, folder: str) -> TarIndex:
    """The index of ``path``, built once per process and file version (train and test share it)."""
    stat = path.stat()
    cache_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if cache_key not in _INDEX_CACHE:
        _INDEX_CACHE[cache_key] = build_tar_index(path, folder)
    return _INDEX_CACHE[cache_key]


class TarStore(ImageStore):
    """Images read straight out of ``ROOT/<FOLDER>.tar`` by seeking; never extracted."""

    def __init__(self, path: str | Path, folder: str, index: TarIndex | None = None) -> None:
        self.path, self.folder = Path(path), folder
        self.index = index if index is not None else tar_index(self.path, folder)
        self._handle: io.BufferedReader | None = None
        self._pid = -1

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handle": None, "_pid": -1}  # a process opens its own handle

    def __del__(self) -> None:
        try:
            if self._handle is not None and self._pid == os.getpid():
                self._handle.close()
        except Exception:  # interpreter shutdown: nothing left to release
            pass

    def _file(self) -> io.BufferedReader:
        if self._pid != os.getpid():  # first use in this process (or a forked worker)
            self._handle, self._pid = open(self.path, "rb"), os.getpid()
        assert self._handle is not None
        return self._handle

    def where(self, key: str) -> str:
        return f"{self.path}: {self.index.prefix}{key}"

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.index.lookup(key) is not None

    def read_bytes(self, key: str) -> bytes:
        found = self.index.lookup(key)
        if found is None:
            raise CorruptSampleError(f"image {self.where(key)} is not in the tar file", self.where(key))
        offset, size = found
        handle = self._file()
        try:
            if hasattr(os, "pread"):
                data = os.pread(handle.fileno(), size, offset)
            else:  # no positional reads (Windows): the handle is this process's own
                handle.seek(offset)
                data = handle.read(size)
        except OSError as error:
            raise CorruptSampleError(f"image {self.where(key)} is unreadable ({error})", self.where(key)) from None
        if len(data) != size:
            raise CorruptSampleError(f"image {self.where(key)} is truncated in the tar file "
                                     f"({len(data)} of {size} bytes)", self.where(key))
        return data


def open_store(root: str | Path, folder: str, tar: bool, dataset: str) -> ImageStore:
    """The store of one dataset; a missing folder or tar is a one-line FifError."""
    root = Path(root)
    if tar:
        path = root / f"{folder}.tar"
        if not path.is_file():
            raise FifError(f"tar file {path} does not exist (dataset {dataset!r}, experiment.dataset.tar=true)")
        return TarStore(path, folder)
    if not (root / folder).is_dir():
        raise FifError(f"dataset folder {root / folder} does not exist (dataset {dataset!r})")
    return FolderStore(root / folder)
