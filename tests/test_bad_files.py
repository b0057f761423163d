"""Bad input, files: a full disk while checkpointing, the user's umask, temporary files a kill leaves.

The disk fills up for real, without filling the machine's disk: the run goes in a subprocess whose
file-size limit (RLIMIT_FSIZE, 10 MB) lets the zero-shot checkpoint (~7 MB) through and stops the
first one with optimizer state (~20 MB) with EFBIG, which fif treats as ENOSPC and EDQUOT. That
run is then continued (log.resume=true) as its one-line error says, after a kill's leftovers
(``.<name>.<random>.tmp``) and look-alikes are planted in it, under umask 0o027: every file the run,
its resume and ``fif report`` write must be 0640 (before: mkstemp's 0600 whatever the umask).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from bad_input_helpers import SHORT_RUN, files_under
from fif.errors import FifError
from fif.train.checkpoint import read_checkpoint, sidecar, write_checkpoint
from fif.utils.io import NoSpaceError, atomic_torch_save, atomic_write, atomic_write_json

LIMIT = 10 * 1024 * 1024  # bytes per file: the zero-shot checkpoint fits, the first mid-task one does not
UMASK = 0o027
LIMITED = ("import os, resource, signal, sys\n"
           "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit: EFBIG instead of a kill\n"
           f"resource.setrlimit(resource.RLIMIT_FSIZE, ({LIMIT}, {LIMIT}))\n"
           f"os.umask({UMASK:#o})\n"
           "from fif.cli import main\n"
           "sys.exit(main(sys.argv[1:]))\n")
STALE = (".results.json.k3j9x0ab.tmp", "checkpoints/.step_000000001.pt.a1b2c3d4.tmp")  # what a kill leaves
LOOK_ALIKES = ("notes.tmp", ".results.json.tmp", "checkpoints/.step.ABCDEFGH.tmp", "tensorboard/.x.abcdefgh.tmp")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@dataclass
class Stopped:
    run: Path
    result: subprocess.CompletedProcess
    files_after_stop: list[str]
    checkpoint_modes: dict[str, int]
    resume_code: int
    resume_out: str


@pytest.fixture(scope="module")
def stopped(mini_root, tmp_path_factory) -> Stopped:
    """The run stopped by the full disk, then resumed (leftovers planted in between, umask 0o027)."""
    runs = tmp_path_factory.mktemp("files") / "runs"
    argv = ["run", *SHORT_RUN, f"log.folder={runs}", "log.name=r", "log.checkpoint=true",
            "log.checkpoint_every_steps=1", "log.keep_checkpoints=5"]
    result = subprocess.run([sys.executable, "-c", LIMITED, *argv], capture_output=True, text=True, timeout=900)
    run = runs / "r"
    after = files_under(run)
    modes = {name: mode(run / name) for name in after if name.startswith("checkpoints/")}
    for name in (*STALE, *LOOK_ALIKES):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(b"half a write")
    from fif.cli import main

    out = io.StringIO()
    with umask(UMASK), contextlib.redirect_stdout(out):
        code = main([*argv, "log.resume=true"])
        report = main(["report", str(run), "--out", str(run / "report.html")])
    assert report == 0
    return Stopped(run, result, after, modes, code, out.getvalue())


def test_a_full_disk_while_checkpointing_is_one_line_naming_the_file(stopped):
    checkpoints = stopped.run / "checkpoints"
    lines = [line for line in stopped.result.stderr.splitlines() if line.strip()]
    assert stopped.result.returncode == 2, stopped.result.stderr[-3000:]
    assert lines == [f"error: could not write {checkpoints}/step_000000001.pt: no space left on device (File too "
                     f"large); the earlier checkpoints in {checkpoints} are kept (free space, then continue the run "
                     f"with log.resume=true)"]


def test_the_earlier_checkpoint_survives_whole_and_no_half_file_is_left(stopped):
    checkpoints = [name for name in stopped.files_after_stop if name.startswith("checkpoints/")]
    assert checkpoints == ["checkpoints/step_000000000.pt", "checkpoints/step_000000000.pt.sha256"]
    assert not any(name.endswith(".tmp") for name in stopped.files_after_stop)
    assert stopped.checkpoint_modes == {name: 0o640 for name in checkpoints}  # umask 0o027 (was 0600)


def test_the_resume_removes_only_the_kills_temporary_files_and_says_so(stopped):
    assert stopped.resume_code == 0
    assert (f"note: removed 2 temporary file(s) of writes interrupted in {stopped.run} "
            f"(.results.json.k3j9x0ab.tmp, .step_000000001.pt.a1b2c3d4.tmp)") in stopped.resume_out.splitlines()
    left = files_under(stopped.run)
    assert not any(name in left for name in STALE)
    assert all(name in left for name in LOOK_ALIKES)
    assert json.loads((stopped.run / "results.json").read_text())["status"] == "complete"


def test_every_file_follows_the_umask(stopped):
    written = ["results.json", "config.yaml", "final_model.pt", "report.html"]
    assert {name: mode(stopped.run / name) for name in written} == {name: 0o640 for name in written}


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o027, 0o640)],
                         ids=["umask022", "umask077", "umask027"])
def test_atomic_writes_get_the_mode_of_an_ordinary_open(tmp_path, mask, expected):
    with umask(mask):
        paths = [atomic_write_json(tmp_path / "r.json", {"a": 1}), atomic_torch_save(tmp_path / "m.pt", {"w": 1}),
                 write_checkpoint(tmp_path / "step_000000000.pt", {"format": 1}).path]
        paths.append(sidecar(paths[-1]))
        with open(tmp_path / "plain", "w") as handle:  # what the umask gives an ordinary file
            handle.write("x")
    assert mode(tmp_path / "plain") == expected
    assert {p.name: mode(p) for p in paths} == {p.name: expected for p in paths}


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_enospc_inside_a_write_names_the_file_and_leaves_nothing(tmp_path):
    def write(handle) -> None:
        handle.write("{")
        with open("/dev/full", "wb", buffering=0) as full:  # the kernel answers ENOSPC
            full.write(b"x")

    with pytest.raises(NoSpaceError) as error:
        atomic_write(tmp_path / "results.json", write)
    assert isinstance(error.value, FifError)
    assert str(error.value) == f"could not write {tmp_path / 'results.json'}: no space left on device"
    assert list(tmp_path.iterdir()) == []


def test_write_checkpoint_reads_back_what_it_wrote(tmp_path):
    """The umask change touches nothing of the content: digest and state round-trip."""
    state = {"format": 1, "position": {}, "config": {}, "method": {"w": torch.ones(3)}, "buffer": {}, "pool": None,
             "rng": {}, "loop": {}}
    written = write_checkpoint(tmp_path / "step_000000003.pt", state)
    assert torch.equal(read_checkpoint(written.path)["method"]["w"], torch.ones(3))


def test_report_names_an_unreadable_results_file_instead_of_saying_nothing_was_evaluated(capsys, tmp_path):
    from bad_input_helpers import one_line_error

    broken = tmp_path / "a" / "results.json"
    broken.parent.mkdir()
    broken.write_text('{"status": "running", "tasks": [')  # cut off mid-write by another tool
    out = tmp_path / "report.html"
    one_line_error(capsys, ["report", str(broken.parent), "--out", str(out)],
                   f"^error: nothing to report: {broken} is not JSON \\(Expecting value: line 1 column 33 "
                   f"\\(char 32\\)\\)$")
    other = tmp_path / "b" / "results.json"
    other.parent.mkdir()
    other.write_text("[]")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results.json").write_text('{"status": "running", "tasks": []}')  # started, no scores yet
    one_line_error(capsys, ["report", *(str(tmp_path / name) for name in "abc"), "--out", str(out)],
                   f"^error: nothing to report: {broken} is not JSON \\(.*\\) \\(and 1 more unreadable\\); the other 1 "
                   f"run\\(s\\) have no scores yet$")
    assert not out.exists()
