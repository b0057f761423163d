"""SHA-256 of each archive, recorded on its first complete download and checked ever after.

The reference publishes no checksums, so the first complete download is the reference point
(trust on first use): ``ROOT/.downloads/checksums.json`` maps the dataset folder to the digest,
size and URL. A later download or re-extraction of the same dataset must give the same digest;
an expected digest given by the user (manifest column or ``--checksums``) is checked first.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from fif.errors import FifError
from fif.utils.io import atomic_write_json, sha256_file



class ChecksumMismatch(FifError):
    """An archive whose digest is not the expected one (the file has been removed)."""


class ChecksumBook:
    """``checksums.json`` of a downloads folder; safe to use from several threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[str, dict] = {}
        if self.path.is_file():
            try:
                raw = json.loads(self.path.read_text())
                assert isinstance(raw, dict) and all(isinstance(v, dict) and "sha256" in v for v in raw.values())
            except (OSError, ValueError, AssertionError):
                raise FifError(f"{self.path} is not a checksum record ({{folder: {{sha256, size, url}}}}); "
                               f"move it away to record the digests anew") from None
            self._entries = raw

    def recorded(self, folder: str) -> str | None:
        with self._lock:
            entry = self._entries.get(folder)
            return entry["sha256"] if entry else None

    def record(self, folder: str, sha256: str, size: int, url: str) -> None:
        with self._lock:
            self._entries[folder] = {"sha256": sha256, "size": size, "url": url,
                                     "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            atomic_write_json(self.path, dict(sorted(self._entries.items())))


def check_archive(path: Path, folder: str, book: ChecksumBook, expected: str | None, url: str) -> str:
    """The archive's digest after checking it against ``expected`` (given by the user; it wins over
    the record) or else the record, recording it when new. A mismatch removes the file and raises
    ChecksumMismatch naming both digests."""
    actual = sha256_file(path)
    recorded = book.recorded(folder)
    want, source = ((expected, "the expected SHA-256") if expected
                    else (recorded, f"the SHA-256 recorded in {book.path}"))
    if want is not None and want != actual:
        path.unlink(missing_ok=True)
        raise ChecksumMismatch(f"{folder}: {path.name} does not match {source}: expected {want}, got {actual} "
                               f"(the file was removed; run again to download it anew)")
    if recorded != actual:
        book.record(folder, actual, path.stat().st_size, url)
    return actual
