"""The run folder: its name, its checks, its creation, its lock and the config.yaml a run (and its resume) starts from.

One run writes one folder. ``new_run_dir`` names it and refuses, before any data is read, a
``log.folder`` that is a file or not writable, a folder that already holds a run, and a folder
another process is running in. ``create_run_dir`` makes it and takes its ``RunLock``: an OS file
lock (``fcntl.flock`` on ``RUN/.lock``) held for the run's life. The kernel drops the lock when the
process ends, however it ends, so a SIGKILLed run never leaves a stale lock behind; the lock file
holds the holder's pid (and host) only for the refusal's message.
"""

from __future__ import annotations

import errno
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any
from collections.abc import Callable

from fif.config.settings import RunSettings
from fif.errors import FifError
from fif.results import FILENAME
from fif.utils.io import atomic_write

try:
    import fcntl
except ImportError:  # Windows: no flock; runs go unlocked (RunLock.acquire says so)
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
_LOCK_ATTEMPTS = 5  # a holder removes the lock file on release: reopen if it vanished under us
_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


def _in_use(run_dir: Path, holder: str) -> FifError:
    pid, _, host = holder.strip().partition(" ")
    if not pid.isdigit():
        who = "another process"
    else:
        who = f"process {pid}" + (f" on {host}" if host and host != socket.gethostname() else "")
    return FifError(f"run folder {run_dir} is in use by {who} (another fif run); wait for it or choose another "
                    f"log.name")


def _holder(fd: int) -> str:
    """What the lock file says of its holder ("PID HOST"; empty while the holder is still writing it)."""
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace")
    except OSError:
        return ""


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


class RunLock:
    """An exclusive ``flock`` on ``RUN/.lock``, held open from the folder's creation (or resume) to
    ``release()``; ``fd`` None: this platform has no fcntl and the run goes unlocked."""

    def __init__(self, run_dir: Path, fd: int | None) -> None:
        self.run_dir, self.path, self.fd = run_dir, run_dir / LOCK_NAME, fd
        self._released = False

    @classmethod
    def acquire(cls, run_dir: Path, echo: Callable[..., Any] = print) -> RunLock:
        """Lock ``run_dir`` (which exists) for this process, or refuse in one line naming the holder."""
        if fcntl is None:
            echo(f"note: no fcntl on this platform: run folder {run_dir} is not locked against a second run")
            return cls(run_dir, None)
        path = run_dir / LOCK_NAME
        for _ in range(_LOCK_ATTEMPTS):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as error:
                raise FifError(f"run folder {run_dir} is not writable ({error.strerror}: {path})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                holder = _holder(fd)
                os.close(fd)
                if error.errno in _BUSY:
                    raise _in_use(run_dir, holder) from None
                raise FifError(f"cannot lock run folder {run_dir} ({error.strerror}: {path})") from None
            if _same_file(fd, path):  # not a file its last holder removed after we opened it
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
                return cls(run_dir, fd)
            os.close(fd)
        raise FifError(f"cannot lock run folder {run_dir}: {path} keeps being replaced by other processes")

    @property
    def held(self) -> bool:
        """This process owns the folder (locked, or unlocked where there is no fcntl) until ``release()``."""
        return not self._released

    def release(self) -> None:
        """Remove the lock file while still holding it, then let go (idempotent)."""
        self._released = True
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)


def refuse_if_locked(run_dir: Path) -> None:
    """A one-line refusal if another process holds ``run_dir``'s lock now (nothing is created)."""
    path = run_dir / LOCK_NAME
    if fcntl is None or not path.is_file():
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # unreadable: the real acquire (create_run_dir) decides
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in _BUSY:
            raise _in_use(run_dir, _holder(fd)) from None
    finally:
        os.close(fd)  # closing drops the probe's own lock


def check_writable(folder: Path, run_dir: Path) -> None:
    """``log.folder`` (and the run folder in it) must be, or can become, writable folders."""
    existing = next(p for p in (run_dir, *run_dir.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        if existing == run_dir:
            raise FifError(f"run folder {run_dir} is a file, not a folder; choose another log.name")
        if existing == folder:
            raise FifError(f"log.folder {folder} is a file, not a folder; choose a folder to hold runs")
        raise FifError(f"log.folder {folder} cannot be made: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        if existing == run_dir:
            raise FifError(f"run folder {run_dir} is not writable (permission denied); choose another log.name")
        detail = "permission denied" if existing == folder else f"cannot make it in {existing}: permission denied"
        raise FifError(f"log.folder {folder} is not writable ({detail}); choose a writable log.folder")


def refuse_existing_run(run_dir: Path) -> None:
    if (run_dir / FILENAME).exists():
        raise FifError(f"run folder {run_dir} already holds a run ({FILENAME}); choose another log.name, "
                       f"or continue it with log.resume=true")


def new_run_dir(settings: RunSettings, lock: RunLock | None = None) -> Path:
    """``log.folder/log.name`` (default name: method and time), checked before any data is read.

    Refused: a log.folder that is a file or not writable, a folder that already holds a run, a
    folder another process has locked (unless ``lock``, this process's own, is that folder's).
    Only the path: the folder is made once the run has built (``create_run_dir``), so a run that
    fails on its data leaves nothing behind.
    """
    name = settings.log.name or f"{settings.method}_{datetime.now():%Y%m%d-%H%M%S}"
    folder = Path(settings.log.folder).expanduser()
    run_dir = folder / str(name)
    check_writable(folder, run_dir)
    refuse_existing_run(run_dir)
    if lock is None or lock.run_dir != run_dir:
        refuse_if_locked(run_dir)
    return run_dir


def create_run_dir(run_dir: Path, settings: RunSettings, write_config: bool = True, lock: RunLock | None = None,
                   echo: Callable[..., Any] = print, new: bool = False) -> RunLock:
    """Make the folder, lock it (or keep ``lock``, already held) and write the resolved config (secrets
    redacted) as config.yaml. Returns the lock, for the run to release when it ends.

    ``new``: a new run, refused if a run finished in the folder since ``new_run_dir`` looked.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FifError(f"cannot make run folder {run_dir} ({error.strerror}); choose a writable log.folder") \
            from None
    lock = lock if lock is not None and lock.run_dir == run_dir else RunLock.acquire(run_dir, echo)
    try:
        if new:
            refuse_existing_run(run_dir)
        if write_config:
            atomic_write(run_dir / "config.yaml", lambda f: f.write(settings.public_yaml()))
    except BaseException:
        lock.release()
        raise
    return lock
