"""Bad run folders and runs that fail inside them.

A ``log.folder`` that is a file or cannot be written is refused in one line before any data is
read, and nothing is written. A run that fails once its folder exists (a corrupt test image, any
other exception, Ctrl-C) records ``status: failed`` with its one-line reason in results.json and
an ``error`` event, and ``fif results`` shows it failed. Real runs of the mini benchmark.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bad_input_helpers import SHORT_RUN, files_under, nothing_left, one_line_error, private_mini_root, truncate_file
from fif.cli import main
from fif.config import compose
from fif.data.samples.mixture import MixtureSampler, batch_split
from fif.errors import CorruptSampleError
from fif.results import RunResults
from fif.train.run import Run

ROOT_USER = os.geteuid() == 0  # chmod does not stop root: the read-only cases cannot be seen as root


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def test_log_folder_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "runs"
    target.write_text("not a folder")
    one_line_error(capsys, ["run", *SHORT_RUN, f"log.folder={target}", "log.name=x"],
                   rf"^error: log\.folder {target} is a file, not a folder; choose a folder to hold runs$")
    assert files_under(tmp_path) == ["runs"] and target.read_text() == "not a folder"


def test_a_file_above_log_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    one_line_error(capsys, ["run", *SHORT_RUN, f"log.folder={tmp_path / 'file' / 'runs'}", "log.name=x"],
                   rf"^error: log\.folder {tmp_path / 'file' / 'runs'} cannot be made: {tmp_path / 'file'} is a file, "
                   rf"not a folder$")
    assert files_under(tmp_path) == ["file"]


def test_a_run_folder_that_is_a_file(tmp_path, capsys):
    (tmp_path / "x").write_text("x")
    one_line_error(capsys, ["run", *SHORT_RUN, f"log.folder={tmp_path}", "log.name=x"],
                   rf"^error: run folder {tmp_path / 'x'} is a file, not a folder; choose another log\.name$")
    assert files_under(tmp_path) == ["x"]


@pytest.mark.skipif(ROOT_USER, reason="running as root: a read-only folder is still writable")
def test_a_read_only_log_folder(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o555)
    try:
        one_line_error(capsys, ["run", *SHORT_RUN, f"log.folder={runs}", "log.name=x"],
                       rf"^error: log\.folder {runs} is not writable \(permission denied\); choose a writable log\.folder$")
        one_line_error(capsys, ["run", *SHORT_RUN, f"log.folder={runs / 'deeper'}", "log.name=x"],
                       rf"^error: log\.folder {runs / 'deeper'} is not writable \(cannot make it in {runs}: permission "
                       rf"denied\)")
    finally:
        runs.chmod(0o755)
    nothing_left(runs)


@pytest.mark.skipif(not ROOT_USER or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_a_read_only_log_folder_seen_by_another_user():
    """As root, the same refusals through a real unprivileged process (user nobody, via setpriv) over a
    world-readable folder in /tmp (pytest's temporary folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="fif_read_only_", dir="/tmp"))
    try:
        folder.chmod(0o755)
        runs = folder / "runs"
        runs.mkdir()
        runs.chmod(0o555)
        cases = ((runs, "permission denied"), (runs / "deeper", f"cannot make it in {runs}: permission denied"))
        calls = "; ".join(f"codes.append(main({['run', *SHORT_RUN, f'log.folder={log_folder}', 'log.name=x']!r}))"
                          for log_folder, _ in cases)
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                               f"from fif.cli import main; codes = []; {calls}; print(codes)"],
                              capture_output=True, text=True, env={**os.environ, "HOME": str(folder)}, cwd=folder,
                              timeout=300)
        assert done.stdout.strip() == "[2, 2]", done.stderr[-2000:]
        assert done.stderr.strip().splitlines() == [
            f"error: log.folder {log_folder} is not writable ({reason}); choose a writable log.folder"
            for log_folder, reason in cases]
        assert files_under(folder) == []
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_run_failing_inside_its_folder_is_recorded_failed(tmp_path, mini_root, capsys):
    """A corrupt training image (skip_corrupt=false) drawn by task 1's second step: the run folder exists
    by then, so the failure is recorded there (the phases without evaluations: what matters is the folder)."""
    root = private_mini_root(mini_root, tmp_path / "root")
    cfg = compose([*SHORT_RUN, f"log.folder={tmp_path / 'runs'}", "log.name=bad", f"experiment.dataset.root={root}",
                   f"experiment.dataset.pretraining_pool={mini_root / 'pool'}", "experiment.dataset.pool_shards=4",
                   "experiment.dataset.preload=false"])  # images read when drawn, after the folder exists
    run = Run(cfg, echo=lambda *a, **k: None)
    with pytest.raises(CorruptSampleError) as raised:
        with run:
            run.build()
            parts = run.parts
            counts = batch_split(parts.settings.batch_size, parts.settings.mixture, buffer_empty=True,
                                 pool_available=parts.pool is not None)
            plan = MixtureSampler(parts.settings.seed, 0, parts.catalogue.task_indices(parts.tasks[0]), [], counts)
            split, local = parts.catalogue._locate(plan.plan(1).update[0])  # the first sample of step 2
            image = Path(split.where(local))
            truncate_file(image)
            run.train_task(0)
    reason = str(raised.value)
    assert str(image) in reason and "\n" not in reason
    results = RunResults.read(tmp_path / "runs" / "bad")
    assert results.failed and results.error == reason and results.tasks == []
    last = _events(tmp_path / "runs" / "bad")[-1]
    assert (last["event"], last["error"], last["global_step"]) == ("error", reason, 1)  # step 1 was done
    assert files_under(tmp_path / "runs" / "bad") == ["config.yaml", "events.jsonl", "results.json"]  # no lock
    assert main(["results", str(tmp_path / "runs" / "bad"), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["status"], row["detail"]) == ("failed", reason)


def test_any_exception_is_recorded_as_its_type_and_first_line(tmp_path, mini_root):
    run = Run(compose([*SHORT_RUN, f"log.folder={tmp_path}", "log.name=phase"]), echo=lambda *a, **k: None)
    with pytest.raises(IndexError):
        with run:
            run.build()
            run.train_task(5)  # the run has 2 tasks
    results = RunResults.read(tmp_path / "phase")
    assert results.failed and results.error == "IndexError: list index out of range"
    assert _events(tmp_path / "phase")[-1]["error"] == results.error
    assert not (tmp_path / "phase" / ".lock").exists()


def test_ctrl_c_is_recorded_as_interrupted(tmp_path, mini_root):
    """SIGINT to a real ``fif run`` once it has started: exit 130, results.json failed "interrupted"."""
    run_dir = tmp_path / "runs" / "int"
    process = subprocess.Popen([sys.executable, "-m", "fif.cli", "run", *SHORT_RUN, f"log.folder={tmp_path / 'runs'}",
                                "log.name=int"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ))
    try:
        deadline = time.time() + 240
        while time.time() < deadline and process.poll() is None:
            events = run_dir / "events.jsonl"
            if events.is_file() and '"start"' in events.read_text():
                break
            time.sleep(0.05)
        assert process.poll() is None, process.communicate()[1][-2000:]
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130 and err.strip().splitlines()[-1] == "interrupted", err[-2000:]
    results = RunResults.read(run_dir)
    assert results.failed and results.error == "interrupted"
    assert _events(run_dir)[-1]["event"] == "error" and not (run_dir / ".lock").exists()
