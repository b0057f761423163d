"""Resume checkpoints: files in ``<run>/checkpoints/``, written atomically, verified on load.

One checkpoint is one ``torch.save`` file, ``step_<global step>.pt``, holding everything a run needs
to continue bit-identically (``fif.train.run_state.gather_state`` builds it), plus a sidecar
``step_<global step>.pt.sha256`` with the file's SHA-256. Both are written through a temporary
file, fsync and rename (``fif.utils.io.atomic_write``), so a kill at any moment leaves either the
old set of checkpoints or the new one, never half a file; the newest ``keep`` are kept, and all
are removed once the run completes (results.json is then the record). Out of space (or over a
file-size limit) while writing, the run stops with one line naming the file; the half-written
temporary file is removed and no older checkpoint has been rotated out yet.

A checkpoint is *usable* when its digest matches the sidecar (when the sidecar exists: a kill
between the two renames leaves a complete file without one), ``torch.load(weights_only=True)``
reads it, and it has every required key of this format. Resume takes the newest usable one and
says which files it skipped (``load_latest``); skipped files are renamed ``*.corrupt`` so they
are kept for inspection but never read again.

Writing and gathering are separate (``gather_state`` / ``Checkpointer.save``) so a multi-process
run can gather on every rank and write on rank 0 only (``Checkpointer(writer=False)`` elsewhere).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from collections.abc import Callable

import torch

from fif.errors import FifError
from fif.utils.io import NoSpaceError, atomic_write, sha256_file

FORMAT = 1
REQUIRED_KEYS = ("format", "position", "config", "method", "buffer", "pool", "rng", "loop")
# Test hook: SIGKILL this process right after the checkpoint of this global step is written, so a
# test can interrupt a run at an exact point, as a preemption would (no cleanup, no flush).
KILL_ENV = "FIF_KILL_AFTER_CHECKPOINT"
_NAME = re.compile(r"^step_(\d+)\.pt$")


@dataclass(frozen=True)
class Position:
    """Where a checkpoint sits in the run: before step ``step`` of task ``task`` (both 0-based).

    ``step == 0`` means task ``task`` has not begun (every earlier task was trained, ended,
    evaluated and added to the buffer; task 0: after the zero-shot evaluation); ``step > 0`` means
    that many optimizer steps of the task are done. ``global_step`` counts the optimizer steps of
    the whole run so far and names the file.
    """

    task: int
    step: int
    global_step: int

    def describe(self, num_tasks: int | None = None) -> str:
        total = f"/{num_tasks}" if num_tasks else ""
        if self.step == 0:
            return f"start of task {self.task + 1}{total} (global step {self.global_step})"
        return f"task {self.task + 1}{total}, after step {self.step} (global step {self.global_step})"

    def as_dict(self) -> dict[str, int]:
        return {"task": self.task, "step": self.step, "global_step": self.global_step}


def checkpoint_path(folder: Path, global_step: int) -> Path:
    return folder / f"step_{global_step:09d}.pt"


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint files in ``folder``, oldest first (by global step)."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


class _HashingWriter:
    """A write-only file wrapper that hashes what passes through (one pass: no re-read of the file)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle, self.digest, self.size = handle, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        self.digest.update(view)
        self.size += view.nbytes
        return self.handle.write(view)

    def flush(self) -> None:
        self.handle.flush()


@dataclass(frozen=True)
class Written:
    path: Path
    bytes: int
    seconds: float


def write_checkpoint(path: Path, state: dict[str, Any]) -> Written:
    """``torch.save`` ``state`` to ``path`` atomically, then its SHA-256 sidecar (also atomically)."""
    start = time.perf_counter()
    writer: list[_HashingWriter] = []

    def save(handle: BinaryIO) -> None:
        writer.append(_HashingWriter(handle))
        torch.save(state, writer[0])

    try:
        atomic_write(path, save, binary=True)
        atomic_write(sidecar(path), lambda f: f.write(f"{writer[0].digest.hexdigest()}  {path.name}\n"))
    except NoSpaceError as error:  # the rotation never ran: every earlier checkpoint is still there
        raise FifError(f"{error}; the earlier checkpoints in {path.parent} are kept (free space, then continue "
                       f"the run with log.resume=true)") from None
    return Written(path, writer[0].size, time.perf_counter() - start)


class CheckpointError(Exception):
    """A checkpoint file that cannot be used (the message says why)."""


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The state in ``path``, verified (digest, loadable, required keys, format); else CheckpointError."""
    check = sidecar(path)
    if check.is_file():
        expected = check.read_text().split()[0] if check.read_text().split() else ""
        actual = sha256_file(path)
        if actual != expected:
            raise CheckpointError(f"SHA-256 {actual[:12]}... does not match {check.name} ({expected[:12]}...)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure to read means the file is unusable
        raise CheckpointError(f"torch.load failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}") \
            from None
    if not isinstance(state, dict):
        raise CheckpointError(f"it holds a {type(state).__name__}, not a checkpoint dict")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"missing keys {', '.join(missing)}")
    if state["format"] != FORMAT:
        raise CheckpointError(f"checkpoint format {state['format']}, this version reads format {FORMAT}")
    return state


def load_latest(folder: Path, echo: Callable[[str], Any] = print) -> tuple[Path, dict[str, Any]] | None:
    """The newest usable checkpoint in ``folder`` and its state; None if there is no checkpoint.

    Unusable newer files are reported (one line each), renamed ``*.corrupt`` and skipped; if no
    file is usable, a FifError names them.
    """
    bad: list[tuple[Path, str]] = []
    for path in reversed(list_checkpoints(folder)):
        try:
            state = read_checkpoint(path)
        except CheckpointError as error:
            echo(f"checkpoint {path} is unusable ({error}); falling back to the previous checkpoint")
            bad.append((path, str(error)))
            continue
        for broken, _ in bad:
            _set_aside(broken)
        return path, state
    if bad:
        raise FifError(f"no usable checkpoint in {folder}: {len(bad)} file(s) unusable, the newest {bad[0][0]} "
                       f"({bad[0][1]}); delete {folder} to restart the run from its beginning")
    return None


def _set_aside(path: Path) -> None:
    for item in (path, sidecar(path)):
        if item.exists():
            os.replace(item, item.with_name(item.name + ".corrupt"))


class Checkpointer:
    """Writes the run's checkpoints: at every task end and every ``every`` global steps; keeps ``keep``.

    ``keep=0`` writes nothing (the run cannot be resumed). ``writer=False`` (non-zero ranks of a
    multi-process run) gathers nothing and writes nothing.
    """

    def __init__(self, folder: Path, keep: int, every: int, writer: bool = True) -> None:
        for key, value in (("log.keep_checkpoints", keep), ("log.checkpoint_every_steps", every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise FifError(f"{key}={value!r} is not valid: expected a whole number >= 0")
        self.folder, self.keep, self.every, self.writer = folder, keep, every, writer

    @property
    def enabled(self) -> bool:
        return self.keep > 0 and self.writer

    def due_inside_task(self, global_step: int, step_done: int, steps: int) -> bool:
        """A periodic checkpoint after this step? (Never after a task's last step: its end checkpoint follows.)"""
        return self.enabled and self.every > 0 and global_step % self.every == 0 and step_done < steps

    def save(self, state: dict[str, Any], position: Position) -> Written | None:
        if not self.enabled:
            return None
        written = write_checkpoint(checkpoint_path(self.folder, position.global_step), state)
        for old in list_checkpoints(self.folder)[:-self.keep]:
            for item in (old, sidecar(old)):
                item.unlink(missing_ok=True)
        if os.environ.get(KILL_ENV) == str(position.global_step):
            os.kill(os.getpid(), signal.SIGKILL)
        return written

    def clear(self) -> None:
        """Remove this run's resume checkpoints (the run is complete); set-aside ``*.corrupt`` files stay."""
        if not self.writer:
            return
        for path in list_checkpoints(self.folder):
            for item in (path, sidecar(path)):
                item.unlink(missing_ok=True)
        if self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()
