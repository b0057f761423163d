"""The per-split info files: not in the archives but in the reference repository.

The reference keeps ``data_lib/00_info/<FOLDER>_<split>.json`` (+ ``_224`` variants for some
datasets and ``<FOLDER>_classnames.json``) in its code repository. They are fetched from its raw
file URLs by default, or from another base URL, or copied from a local folder (a checkout, or its
``data_lib/00_info``), into ``ROOT/00_info`` where ``fif run`` and ``fif data verify`` look.

Which files: the splits the benchmark reads are required (test always; train for streamed
datasets); the ``_224`` variants and the class-name list are optional (only some datasets have
them: a 404 is fine). Two reference loaders name their splits differently
(``iNATURALIST2021``: train_mini / val; ``MTSD``: val for test); those files are stored under the
benchmark's split names (``iNATURALIST2021_test.json``), which is what the reader asks for.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit
from urllib.request import url2pathname

from fif.data.fetch.transfer import TIMEOUT, TransferError, fetch_resumable
from fif.errors import FifError
from fif.utils.io import atomic_write_json

DEFAULT_INFO_BASE = "https://raw.githubusercontent.com/ExplainableML/fomo_in_flux/main/data_lib/00_info"
RESIZED = 224  # the suffix of the reference's resized variants
# The reference loaders that set their own split names (data_lib/inaturalist2021.py, data_lib/mtsd.py).
REMOTE_SPLITS: dict[str, dict[str, str]] = {"iNATURALIST2021": {"train": "train_mini", "test": "val"},
                                            "MTSD": {"test": "val"}}


@dataclass(frozen=True)
class InfoFile:
    local: str  # file name under ROOT/00_info
    remote: str  # file name in the reference's data_lib/00_info
    required: bool


def info_files_for(folder: str, splits: tuple[str, ...] | list[str], classnames: bool = True) -> list[InfoFile]:
    """The info files of one dataset: each split's file (required) and its ``_224`` variant, and the
    class-name list (optional)."""
    renamed = REMOTE_SPLITS.get(folder, {})
    files = []
    for split in splits:
        remote = renamed.get(split, split)
        files.append(InfoFile(f"{folder}_{split}.json", f"{folder}_{remote}.json", True))
        files.append(InfoFile(f"{folder}_{split}_{RESIZED}.json", f"{folder}_{remote}_{RESIZED}.json", False))
    if classnames:
        files.append(InfoFile(f"{folder}_classnames.json", f"{folder}_classnames.json", False))
    return files


def _is_url(where: str) -> bool:
    return "://" in where and where.split("://", 1)[0].lower() in ("http", "https")


class InfoSource:
    """Where info files come from: a base URL, or a local folder (a checkout or its data_lib/00_info)."""

    def __init__(self, where: str | Path | None = None, timeout: float = TIMEOUT) -> None:
        where = str(where) if where else DEFAULT_INFO_BASE
        self.timeout = timeout
        if where.lower().startswith("file://"):  # a local folder written as a URL
            where = url2pathname(urlsplit(where).path)
        if _is_url(where):
            self.base, self.folder = where.rstrip("/"), None
            return
        folder = Path(where).expanduser()
        if (folder / "data_lib" / "00_info").is_dir():
            folder = folder / "data_lib" / "00_info"
        if not folder.is_dir():
            raise FifError(f"--info-from {where}: neither a URL nor an existing folder (expected the reference's "
                           f"data_lib/00_info, a checkout of it, or a base URL)")
        self.base, self.folder = None, folder

    def location(self, name: str) -> str:
        return f"{self.base}/{quote(name)}" if self.base else str(self.folder / name)

    def fetch(self, info: InfoFile, dest: Path) -> bool:
        """Write ``info`` to ``dest`` (atomically); False when the source has no such file (404)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if self.folder is not None:
            source = self.folder / info.remote
            if not source.is_file():
                return False
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
            os.close(fd)
            shutil.copyfile(source, tmp)
            os.replace(tmp, dest)
            return True
        part = dest.with_name(f".{dest.name}.part")
        try:
            fetch_resumable(self.location(info.remote), part, timeout=self.timeout, refuse_html=False)
        except TransferError as error:
            part.unlink(missing_ok=True)
            if error.status in (404, 410):
                return False
            raise
        os.replace(part, dest)
        return True



class AbsentRecord:
    """Optional info files a source answered 404 for, so that a rerun does not ask again
    (``ROOT/.downloads/info_absent.json``: source -> file names). Thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._absent: dict[str, set[str]] = {}
        if self.path.is_file():
            try:
                raw = json.loads(self.path.read_text())
                self._absent = {str(where): set(names) for where, names in raw.items()}
            except (OSError, ValueError, AttributeError, TypeError):
                self._absent = {}  # only a cache of 404s: asking again is harmless

    def has(self, where: str, name: str) -> bool:
        with self._lock:
            return name in self._absent.get(where, ())

    def add(self, where: str, name: str) -> None:
        with self._lock:
            self._absent.setdefault(where, set()).add(name)
            atomic_write_json(self.path, {w: sorted(names) for w, names in sorted(self._absent.items())})
