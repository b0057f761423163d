"""Unpack a dataset archive into ``ROOT/<FOLDER>`` all at once or not at all.

The reference's archives hold ``<FOLDER>/...`` (the path under the data root). Members are
extracted with tarfile's ``data`` filter (no absolute paths, no ``..``, no links leaving the
target, no device files) into a hidden staging folder inside ROOT, and the finished folder is
renamed into place with one ``os.replace``: a reader never sees a half-extracted dataset, and a
failure leaves nothing behind. An archive without the ``<FOLDER>/`` prefix is taken as the folder's
content (tar mode accepts both too).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from collections.abc import Callable, Iterator

from fif.errors import FifError

BLOCK = 512


def _no_progress(count: int) -> None:
    """Default progress callback."""


def _members(archive: tarfile.TarFile, seen: dict, on_bytes: Callable[[int], None]) -> Iterator[tarfile.TarInfo]:
    """Every member in order, noting the number of files and where the last member's data ends."""
    for member in archive:
        seen["end"] = member.offset_data + -(-member.size // BLOCK) * BLOCK if member.isreg() else member.offset_data
        seen["files"] = seen.get("files", 0) + member.isreg()
        yield member
        on_bytes(member.size)


def _check_end(archive: tarfile.TarFile, end: int | None) -> None:
    """tarfile treats a file cut between two members as a shorter archive; a complete one has its
    end-of-archive block (512 zero bytes) right after the last member, so look for it."""
    if end is None:
        raise tarfile.ReadError("no members")
    archive.fileobj.seek(end)
    if archive.fileobj.read(BLOCK) != bytes(BLOCK):
        raise tarfile.ReadError(f"truncated: no end-of-archive block after the last member (byte {end})")


def _unpack(archive_path: Path, staging: Path, on_bytes: Callable[[int], None]) -> dict:
    seen: dict = {}
    with tarfile.open(archive_path, "r:*") as archive:
        archive.extractall(staging, members=_members(archive, seen, on_bytes), filter="data")
        _check_end(archive, seen.get("end"))
    return seen


def extract_dataset(archive: str | Path, root: str | Path, folder: str,
                    on_bytes: Callable[[int], None] = _no_progress) -> int:
    """Extract ``archive`` to ``root/folder``; returns the number of files. Raises FifError naming the
    dataset and the archive when it is corrupt, truncated or unsafe (and nothing is left behind)."""
    archive, root = Path(archive), Path(root)
    target = root / folder
    if not hasattr(tarfile, "data_filter"):
        raise FifError("safe extraction needs Python 3.10.12+/3.11.4+ (tarfile extraction filters)")
    if target.exists():
        raise FifError(f"{folder}: {target} already exists; remove it to extract {archive.name} again")
    staging = Path(tempfile.mkdtemp(prefix=f".extract-{folder}-", dir=root))
    try:
        seen = _unpack(archive, staging, on_bytes)
        source = staging / folder
        if not source.is_dir():  # members without the <FOLDER>/ prefix: the whole archive is the folder
            source = staging
        os.replace(source, target)
        return int(seen.get("files", 0))
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:
        raise FifError(f"{folder}: archive {archive} cannot be extracted ({type(error).__name__}: {error}); "
                       f"nothing was extracted") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
