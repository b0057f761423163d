"""Shared by the bad-input suite (tests/test_bad_*.py): run the real `fif` entry point in this process
and check that a bad input ends in exactly one line ``error: ...`` (exit 2) and leaves nothing behind."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from collections.abc import Sequence

# A short real run of the mini benchmark (the reproduction config).
SHORT_RUN = ("experiment.task.num=2", "experiment.task.n_samples=256", "log.progress=false")


def one_line_error(capsys, argv: Sequence[str], pattern: str) -> str:
    """Run ``fif ARGV``; assert exit 2 and a single stderr line ``error: ...`` matching ``pattern``."""
    from fif.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}; stdout: {out[-2000:]}; stderr: {err[-2000:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line: {err!r}"
    assert re.search(pattern, lines[0]), f"{lines[0]!r} does not match {pattern!r}"
    return lines[0]


def files_under(folder: Path) -> list[str]:
    """Every file under ``folder`` (relative paths, sorted); [] when the folder does not exist."""
    folder = Path(folder)
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def nothing_left(folder: Path) -> None:
    """No file at all under ``folder`` (a refused run writes nothing)."""
    assert files_under(folder) == [], files_under(folder)


def private_mini_root(mini_root: Path, dest: Path) -> Path:
    """A copy of the mini benchmark made of hard links (the pool stays shared and untouched)."""
    shutil.copytree(mini_root, dest, ignore=shutil.ignore_patterns("pool"), copy_function=os.link)
    return dest


def truncate_file(path: Path) -> None:
    """Cut ``path`` to a third, breaking its hard link first: only this copy is damaged."""
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data[: len(data) // 3])
