"""Download, check and unpack many dataset archives in parallel, and fetch their info files.

Where things go (ROOT is the FiF data root):

    ROOT/.downloads/<FOLDER>.tar.part   bytes received so far (a rerun continues it)
    ROOT/.downloads/<FOLDER>.tar        a complete transfer, before its checksum and extraction
    ROOT/.downloads/checksums.json      SHA-256 per archive, recorded on first download
    ROOT/.downloads/info_absent.json    optional info files the source does not have (not asked again)
    ROOT/<FOLDER>/...                   the extracted dataset (appears in one rename)
    ROOT/<FOLDER>.tar                   the archive itself, with keep_archives (tar mode reads it)
    ROOT/00_info/<FOLDER>_<split>.json  info files

Each dataset is one job on a thread pool: transfer (retried, resumed) -> checksum -> extract ->
info files. A dataset that fails does not stop the others; every outcome is returned, and the
caller reports the failures. A dataset already extracted (and kept, with keep_archives) is
skipped without a request, so a rerun after success is a no-op. One process at a time per root
(an ``flock``, released by the kernel even when the process is killed).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterator

from tqdm import tqdm

from fif.data.fetch.archives import extract_dataset
from fif.data.fetch.checksums import ChecksumBook, check_archive
from fif.data.fetch.info_sources import AbsentRecord, InfoFile, InfoSource
from fif.data.fetch.transfer import TIMEOUT, TransferError, fetch_resumable
from fif.errors import FifError

try:
    import fcntl
except ImportError:  # not on Windows: no lock there
    fcntl = None

DOWNLOADS = ".downloads"
INFO_DIR = "00_info"
PRESENT, DOWNLOADED, FAILED = "present", "downloaded", "failed"


@dataclass(frozen=True)
class DatasetRequest:
    """One dataset to get: its archive link and the info files it needs."""

    name: str  # registry handle, for messages
    folder: str  # ROOT/<FOLDER>, the archive's top folder
    url: str  # the direct-download link
    info_files: tuple[InfoFile, ...] = ()
    sha256: str | None = None  # expected digest (manifest column or --checksums), if any


@dataclass
class DatasetOutcome:
    request: DatasetRequest
    status: str = PRESENT  # present | downloaded | failed
    fetched: int = 0  # archive bytes received in this run
    resumed_from: int = 0  # bytes the .part file held when the last attempt began
    files: int = 0  # files extracted
    sha256: str | None = None
    info_fetched: int = 0
    info_absent: list[str] = field(default_factory=list)  # optional info files the source lacks
    error: str | None = None


@dataclass(frozen=True)
class DownloadOptions:
    jobs: int = 4  # datasets in flight at once
    keep_archives: bool = False  # move each archive to ROOT/<FOLDER>.tar instead of deleting it
    retries: int = 3  # further attempts after an interruption, timeout or 5xx answer
    backoff: float = 2.0  # seconds before the first retry, doubling
    timeout: float = TIMEOUT  # seconds without data before an attempt counts as interrupted
    progress: bool = True


class _Bars:
    """Two byte bars shared by the worker threads: received and extracted."""

    def __init__(self, enabled: bool) -> None:
        self._lock = threading.Lock()
        self.received = tqdm(total=0, unit="B", unit_scale=True, desc="download", disable=not enabled, position=0)
        self.extracted = tqdm(total=0, unit="B", unit_scale=True, desc="extract", disable=not enabled, position=1)

    def grow(self, bar: tqdm, count: int) -> None:
        with self._lock:
            bar.total += count
            bar.refresh()

    def update(self, bar: tqdm, count: int) -> None:
        with self._lock:
            bar.update(count)

    def close(self) -> None:
        self.received.close()
        self.extracted.close()


@contextmanager
def _root_lock(downloads: Path) -> Iterator[None]:
    downloads.mkdir(parents=True, exist_ok=True)
    with open(downloads / ".lock", "w") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise FifError(f"another fif data download is working in {downloads.parent} "
                               f"(lock {downloads / '.lock'}); wait for it or stop it") from None
        yield


def _with_retries(action: Callable[[], object], what: str, options: DownloadOptions,
                  echo: Callable[[str], None], wait: Callable[[float], object] = time.sleep) -> object:
    """Run ``action``; a retryable TransferError is tried again (resuming) after ``wait`` ing
    doubling pauses."""
    for attempt in range(options.retries + 1):
        try:
            return action()
        except TransferError as error:
            if not error.retryable or attempt == options.retries:
                raise
            pause = options.backoff * 2 ** attempt
            echo(f"{what}: {error}; retrying in {pause:g}s ({attempt + 1} of {options.retries} retries)")
            wait(pause)
    raise AssertionError("unreachable")


class Stopped(Exception):
    """The run is being stopped (Ctrl-C): transfers and extractions end at their next chunk."""


@dataclass
class _Context:
    """What every job of one run shares."""

    root: Path
    source: InfoSource
    book: ChecksumBook
    absent: AbsentRecord
    options: DownloadOptions
    bars: _Bars
    echo: Callable[[str], None]
    stop: threading.Event = field(default_factory=threading.Event)


class _Job:
    """Everything one dataset needs; ``run`` fills its outcome."""

    def __init__(self, context: _Context, request: DatasetRequest) -> None:
        self.context, self.request = context, request
        self.root, self.source, self.book, self.absent = context.root, context.source, context.book, context.absent
        self.options, self.bars, self.echo = context.options, context.bars, context.echo
        self.outcome = DatasetOutcome(request)

    def _check_stop(self) -> None:
        if self.context.stop.is_set():
            raise Stopped(self.request.folder)

    def _expect(self, count: int) -> None:
        _need_space(self.root, count, f"{self.request.folder}: the rest of its archive")
        self.bars.grow(self.bars.received, count)

    def _transfer(self, part: Path) -> None:
        def attempt() -> None:
            result = fetch_resumable(self.request.url, part, on_bytes=self._received, on_length=self._expect,
                                     timeout=self.options.timeout)
            self.outcome.resumed_from = result.resumed_from

        _with_retries(attempt, self.request.folder, self.options, self.echo, self.context.stop.wait)

    def _received(self, count: int) -> None:
        self._check_stop()
        self.outcome.fetched += count
        self.bars.update(self.bars.received, count)

    def _extracted(self, count: int) -> None:
        self._check_stop()
        self.bars.update(self.bars.extracted, count)

    def _archive(self) -> None:
        folder = self.request.folder
        target, kept = self.root / folder, self.root / f"{folder}.tar"
        if target.is_dir() and (kept.is_file() or not self.options.keep_archives):
            return
        archive = kept if kept.is_file() else self.root / DOWNLOADS / f"{folder}.tar"
        if not archive.is_file():
            part = archive.with_name(archive.name + ".part")
            self._transfer(part)
            os.replace(part, archive)
        self.outcome.status = DOWNLOADED
        self.outcome.sha256 = check_archive(archive, folder, self.book, self.request.sha256, self.request.url)
        if not target.is_dir():
            _need_space(self.root, archive.stat().st_size, f"{folder}: its extracted files")
            self.bars.grow(self.bars.extracted, archive.stat().st_size)
            self.outcome.files = extract_dataset(archive, self.root, folder, on_bytes=self._extracted)
        if archive != kept:
            if self.options.keep_archives:
                os.replace(archive, kept)
            else:
                archive.unlink()

    def _info(self) -> None:
        info_dir = self.root / INFO_DIR
        where = self.source.location("")
        for info in self.request.info_files:
            if (info_dir / info.local).is_file() or (not info.required and self.absent.has(where, info.remote)):
                continue
            self._check_stop()
            found = _with_retries(lambda info=info: self.source.fetch(info, info_dir / info.local),
                                  f"{self.request.folder} info", self.options, self.echo, self.context.stop.wait)
            if found:
                self.outcome.info_fetched += 1
            elif info.required:
                raise FifError(f"{self.request.folder}: required info file {info.remote} not found at "
                               f"{self.source.location(info.remote)}")
            else:
                self.outcome.info_absent.append(info.remote)
                self.absent.add(where, info.remote)

    def run(self) -> DatasetOutcome:
        try:
            self._check_stop()
            self._archive()
            self._info()
        except FifError as error:
            self.outcome.status, self.outcome.error = FAILED, _name_first(str(error), self.request.folder)
        except OSError as error:  # disk full, permissions: name the dataset, keep the others going
            self.outcome.status = FAILED
            self.outcome.error = f"{self.request.folder}: {type(error).__name__}: {error}"
        self.echo(describe(self.outcome))
        return self.outcome


def _need_space(root: Path, count: int, what: str) -> None:
    """Fail early, naming the dataset, rather than fill the disk (other jobs write at the same time,
    so this is a check, not a reservation)."""
    free = shutil.disk_usage(root).free
    if free < count:
        raise FifError(f"{what} needs {_size(count)} but {root} has {_size(free)} free")


def _name_first(message: str, folder: str) -> str:
    return message if message.startswith(f"{folder}:") else f"{folder}: {message}"


def _size(count: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def describe(outcome: DatasetOutcome) -> str:
    """One line per dataset: what this run did for it."""
    folder = outcome.request.folder
    if outcome.status == FAILED:
        return f"failed: {outcome.error}"
    parts = []
    if outcome.status == DOWNLOADED:
        resumed = f", resumed at {_size(outcome.resumed_from)}" if outcome.resumed_from else ""
        parts.append(f"{_size(outcome.fetched)} fetched{resumed}, sha256 {outcome.sha256[:16]}...")
        if outcome.files:
            parts.append(f"{outcome.files} files extracted")
    else:
        parts.append("archive already extracted")
    absent = len(outcome.info_absent)
    parts.append(f"{outcome.info_fetched} info files fetched" + (f" ({absent} optional {'one' if absent == 1 else 'ones'} "
                                                                  f"not in the source)" if absent else ""))
    return f"{folder}: " + "; ".join(parts)


def download_datasets(root: str | Path, requests: list[DatasetRequest], source: InfoSource,
                      options: DownloadOptions = DownloadOptions(),
                      echo: Callable[[str], None] = tqdm.write) -> list[DatasetOutcome]:
    """Get every requested dataset into ``root``; see the module docstring. Never raises for one
    dataset's failure: it is in its outcome (status failed, one-line error naming the dataset)."""
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    downloads = root / DOWNLOADS
    with _root_lock(downloads):
        for stale in root.glob(".extract-*"):  # staging folders of a killed run (we hold the lock: none is live)
            shutil.rmtree(stale, ignore_errors=True)
        book = ChecksumBook(downloads / "checksums.json")
        absent = AbsentRecord(downloads / "info_absent.json")
        context = _Context(root, source, book, absent, options, _Bars(options.progress), echo)
        try:
            with ThreadPoolExecutor(max_workers=max(1, options.jobs), thread_name_prefix="fif-download") as pool:
                futures = [pool.submit(_Job(context, request).run) for request in requests]
                try:
                    return [future.result() for future in futures]
                except BaseException:  # Ctrl-C: stop the running jobs at their next chunk, drop the queued ones
                    context.stop.set()
                    for future in futures:
                        future.cancel()
                    raise
        finally:
            context.bars.close()
