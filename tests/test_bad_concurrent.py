"""Concurrent use of one run folder: a second run is refused in one line naming the holder's process,
before it writes anything; a SIGKILLed holder leaves no stale lock (the kernel drops ``flock``s).

The holders are real other processes: a ``python -c`` holding the lock through ``RunLock`` (the
function every run uses), and a real ``fif run``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bad_input_helpers import SHORT_RUN, files_under, one_line_error
from fif.config.settings import RunSettings
from fif.config import compose
from fif.errors import FifError
from fif.train.run import Run
from fif.train.run_folder import LOCK_NAME, RunLock, create_run_dir

HOLD = ("import pathlib, sys, time; from fif.train.run_folder import RunLock; "
        "lock = RunLock.acquire(pathlib.Path(sys.argv[1])); print('locked', flush=True); time.sleep(600)")


def _in_use(run_dir: Path, pid: int) -> str:
    return (rf"^error: run folder {run_dir} is in use by process {pid} \(another fif run\); wait for it or choose "
            rf"another log\.name$")


def _wait_for_lock(process: subprocess.Popen, run_dir: Path, seconds: float = 240) -> None:
    """Until ``run_dir/.lock`` names ``process`` (it has locked and written its pid)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        lock = run_dir / LOCK_NAME
        if lock.is_file() and lock.read_text().split()[:1] == [str(process.pid)]:
            return
        if process.poll() is not None:
            raise AssertionError(f"the holder ended first: {process.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"{run_dir / LOCK_NAME} never named process {process.pid}")


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)


@pytest.fixture()
def holder(tmp_path):
    """Another process holding ``tmp_path/runs/x``'s lock until the test SIGKILLs it."""
    run_dir = tmp_path / "runs" / "x"
    run_dir.mkdir(parents=True)
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True,
                               env=dict(os.environ))
    try:
        _wait_for_lock(process, run_dir)
        yield run_dir, process
    finally:
        _kill(process)


def test_a_second_run_is_refused_before_it_writes_anything(holder, capsys, mini_root):
    run_dir, process = holder
    before = (run_dir / LOCK_NAME).read_text()
    one_line_error(capsys, ["run", *SHORT_RUN, f"log.folder={run_dir.parent}", "log.name=x"], _in_use(run_dir, process.pid))
    one_line_error(capsys, ["run", *SHORT_RUN, f"log.folder={run_dir.parent}", "log.name=x", "log.resume=true"],
                   _in_use(run_dir, process.pid))  # a resume locks before it reads any checkpoint
    with pytest.raises(FifError, match=_in_use(run_dir, process.pid)[len("^error: "):]):
        create_run_dir(run_dir, RunSettings.from_config(compose(list(SHORT_RUN))), new=True)  # the lock taken after a (long) build
    assert files_under(run_dir.parent) == ["x/.lock"] and (run_dir / LOCK_NAME).read_text() == before


def test_a_sigkilled_holder_leaves_no_stale_lock(holder):
    run_dir, process = holder
    _kill(process)
    stale = (run_dir / LOCK_NAME).read_text()
    assert stale.split()[0] == str(process.pid)  # the file stays behind with the dead pid; the lock does not
    started = time.perf_counter()
    lock = RunLock.acquire(run_dir)
    assert time.perf_counter() - started < 1.0 and lock.held
    assert (run_dir / LOCK_NAME).read_text().split()[0] == str(os.getpid())
    lock.release()
    assert not (run_dir / LOCK_NAME).exists()
    lock.release()  # idempotent


def test_a_real_run_holds_its_folder_and_a_killed_one_frees_it(tmp_path, capsys, mini_root):
    """A real ``fif run`` holds its lock: a second one is refused naming it; SIGKILLed, the next run takes the
    folder at once (no results.json yet, so a new run may start there)."""
    runs, run_dir = tmp_path / "runs", tmp_path / "runs" / "real"
    first = subprocess.Popen([sys.executable, "-m", "fif.cli", "run", *SHORT_RUN, f"log.folder={runs}", "log.name=real"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        _wait_for_lock(first, run_dir)
        while not (run_dir / "config.yaml").is_file():  # written right after the lock is taken
            time.sleep(0.05)
        config = (run_dir / "config.yaml").read_bytes()
        one_line_error(capsys, ["run", *SHORT_RUN, f"log.folder={runs}", "log.name=real"], _in_use(run_dir, first.pid))
        assert (run_dir / "config.yaml").read_bytes() == config
    finally:
        _kill(first)
    assert not (run_dir / "results.json").exists()
    with Run(compose([*SHORT_RUN, f"log.folder={runs}", "log.name=real"]), echo=lambda *a, **k: None) as second:
        second.build()
        assert second.lock is not None and second.lock.held
        assert (run_dir / LOCK_NAME).read_text().split()[0] == str(os.getpid())
    assert not (run_dir / LOCK_NAME).exists() and not second.lock.held  # released by close()
