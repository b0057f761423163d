"""The archive manifest: one link per dataset tar, as the reference's ``download_data.csv``.

A row is ``URL``, optionally preceded by the dataset folder and followed by the archive's
SHA-256 (``[FOLDER,]URL[,SHA256]``); lines starting with ``#`` are comments. The folder defaults
to the tar's basename (``.../CIFAR100.tar?rlkey=...`` -> ``CIFAR100``), which is how the
reference names them (``wget -O DATASETNAME.tar link``). The reference publishes no checksums;
a user may add them here or with ``--checksums``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from fif.errors import FifError

PACKAGE_MANIFEST = "download_data.csv"  # in fif.data.reference (MIT, source named in its README)
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_URL = re.compile(r"^(https?|file)://", re.IGNORECASE)


@dataclass(frozen=True)
class ManifestEntry:
    """One dataset archive: the folder it unpacks to, where to get it, and its digest if known."""

    folder: str
    url: str
    sha256: str | None = None
    where: str = ""  # "FILE:LINE", for messages

    @property
    def download_url(self) -> str:
        return direct_download_url(self.url)


def direct_download_url(url: str) -> str:
    """The link that returns the file itself: Dropbox shares answer an HTML preview page unless
    ``dl=1`` (``dl=0`` is replaced, other parameters such as ``rlkey`` are kept)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not (host == "dropbox.com" or host.endswith(".dropbox.com")):
        return url
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key != "dl"]
    return urlunsplit(parts._replace(query=urlencode(query + [("dl", "1")])))


def folder_of(url: str) -> str:
    """``https://host/path/CIFAR100.tar?x=y`` -> ``CIFAR100`` (the tar's basename)."""
    name = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    return name[: -len(".tar")] if name.lower().endswith(".tar") else name


def _entry(row: list[str], where: str) -> ManifestEntry:
    fields = [field.strip() for field in row if field.strip()]
    urls = [i for i, field in enumerate(fields) if _URL.match(field)]
    if len(urls) != 1 or urls[0] > 1:
        raise FifError(f"manifest {where}: expected [FOLDER,]URL[,SHA256] with one http(s):// or file:// URL, "
                       f"got {','.join(fields)!r}")
    at = urls[0]
    url, folder = fields[at], (fields[0] if at == 1 else folder_of(fields[at]))
    rest = fields[at + 1:]
    if len(rest) > 1 or (rest and not _SHA256.match(rest[0])):
        raise FifError(f"manifest {where}: after the URL expected nothing or a 64-hex-digit SHA-256, got {rest!r}")
    if not folder or "/" in folder or folder.startswith("."):
        raise FifError(f"manifest {where}: {folder!r} is not a usable dataset folder name")
    return ManifestEntry(folder, url, rest[0].lower() if rest else None, where)


def parse_manifest(text: str, source: str) -> list[ManifestEntry]:
    """Entries of a manifest's text; a folder listed twice is an error naming both lines."""
    entries: dict[str, ManifestEntry] = {}
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        entry = _entry(row, f"{source}:{number}")
        if entry.folder in entries:
            raise FifError(f"manifest {entry.where}: {entry.folder} is listed twice "
                           f"(first at {entries[entry.folder].where})")
        entries[entry.folder] = entry
    if not entries:
        raise FifError(f"manifest {source} lists no archives (expected one [FOLDER,]URL[,SHA256] per line)")
    return list(entries.values())


def read_manifest(path: str | Path | None = None) -> list[ManifestEntry]:
    """The given manifest file, or the reference's (shipped in ``fif.data.reference``)."""
    if path is None:
        text = resources.files("fif.data.reference").joinpath(PACKAGE_MANIFEST).read_text()
        return parse_manifest(text, f"fif.data.reference/{PACKAGE_MANIFEST}")
    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except OSError as error:
        raise FifError(f"manifest {path} cannot be read ({error.strerror or error})") from None
    return parse_manifest(text, str(path))


def read_checksums(path: str | Path) -> dict[str, str]:
    """Expected digests, folder -> SHA-256: a JSON object ``{"CIFAR100": "ab12..."}`` or
    ``sha256sum`` output (``ab12...  CIFAR100.tar``)."""
    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except OSError as error:
        raise FifError(f"checksums file {path} cannot be read ({error.strerror or error})") from None
    try:
        raw = json.loads(text)
        pairs = list(raw.items()) if isinstance(raw, dict) else None
    except json.JSONDecodeError:
        pairs = [tuple(reversed(line.split(None, 1))) for line in text.splitlines() if line.strip()]
    if pairs is None:
        raise FifError(f"checksums file {path}: expected a JSON object or sha256sum lines")
    out = {}
    for name, digest in pairs:
        if not isinstance(digest, str) or not _SHA256.match(digest.strip()):
            raise FifError(f"checksums file {path}: {name!r} has {digest!r}, expected a 64-hex-digit SHA-256")
        out[folder_of(str(name).strip().lstrip("*"))] = digest.strip().lower()
    return out
