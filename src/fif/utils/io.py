"""Atomic file writes: a reader never sees a half-written result or checkpoint.

Every write goes to a temporary file ``.<name>.<random>.tmp`` beside its target, is fsynced, and is
renamed over the target. The temporary file is made by ``tempfile.mkstemp`` (a fresh name, never
a clash), which creates it with mode 0600; before the rename it gets the mode an ordinary ``open``
would give (0666 less the process's umask), so results.json, config.yaml, checkpoints and
report.html can be read by whoever the user's umask lets read them (a shared cluster group). The
umask is read from /proc/self/status at each write on Linux; elsewhere once, at import.

A write that runs out of space (ENOSPC, EDQUOT, or EFBIG from a file-size limit) removes its
temporary file and raises ``NoSpaceError``: one line naming the file. A process killed mid-write
leaves its temporary file behind; ``remove_stale_temps`` clears them (a resume does, see
fif.train.resume).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any
from collections.abc import Callable

from fif.errors import FifError

TEMP_SUFFIX = ".tmp"
# .<target name>.<mkstemp's 8 random characters>.tmp: only files this module made match.
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
# Out of space, out of quota, or over a file-size limit (RLIMIT_FSIZE): the same remedy for a user.
NO_SPACE_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG) if e is not None)


class NoSpaceError(FifError):
    """A write ran out of space; nothing half-written was left (``path``: the file that was not written)."""

    def __init__(self, path: Path, cause: OSError) -> None:
        reason = "" if cause.errno == errno.ENOSPC else f" ({os.strerror(cause.errno or 0)})"
        super().__init__(f"could not write {path}: no space left on device{reason}")
        self.path = path


def _proc_umask() -> int | None:
    """The umask as Linux reports it in /proc/self/status (no change to the process: no race); None elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_at_import() -> int:
    """Without /proc the only way to read the umask is to set it and set it back (``os.umask``), which
    is racy against a thread creating a file at that instant: done once, here at import, then kept."""
    found = _proc_umask()
    if found is not None:
        return found
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_IMPORT_UMASK = _umask_at_import()


def file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file now: 0666 less the umask."""
    found = _proc_umask()  # read anew: a umask set after import counts
    return 0o666 & ~(found if found is not None else _IMPORT_UMASK)


def _no_space_cause(error: BaseException) -> OSError | None:
    """The out-of-space OSError behind ``error``, if any (torch.save wraps it in a RuntimeError)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in NO_SPACE_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], binary: bool = False) -> Path:
    """Write through ``write(file)`` to a temporary file in the same folder, then rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        os.fchmod(fd, file_mode())  # mkstemp's 0600 -> what the user's umask allows
        with os.fdopen(fd, "wb" if binary else "w") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        cause = _no_space_cause(error) if isinstance(error, Exception) else None
        if cause is not None:
            raise NoSpaceError(path, cause) from None
        raise
    return path


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files ``atomic_write`` leaves when its process is killed mid-write.

    Only regular files directly in ``folder`` named like ours (``.<name>.<8 random>.tmp``); call it
    only while no other process writes there (a run folder under its lock). Returns what was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in sorted(folder.iterdir()) if _TEMP_NAME.match(p.name) and p.is_file() and not p.is_symlink()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def sha256_file(path: str | os.PathLike, block: int = 4 << 20) -> str:
    """The SHA-256 of a file, read in blocks (archives and weights are GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write(path, lambda f: json.dump(data, f, indent=1))


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f), binary=True)
