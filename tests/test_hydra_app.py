"""``fif-hydra``: Hydra's own multirun with a real launcher plugin (joblib: parallel local processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import read_results
from fif.cli.hydra_app import job_name

SHORT = ["experiment.task.num=1", "experiment.task.n_samples=128", "log.progress=false"]


def _fif_hydra(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "fif.cli.hydra_app", *args], capture_output=True, text=True,
                          env=env, timeout=900)


def test_job_names_leave_out_log_keys_and_slashes():
    assert job_name(3, ["log.folder=/a/b", "continual.method=lora", "experiment.dataset.root=/d"]) == \
        "3_continual.method=lora,experiment.dataset.root=_d"
    assert job_name(0, ["log.name=x"]) == "0"


def test_joblib_launcher_runs_the_sweep_as_parallel_jobs(tmp_path: Path, mini_root):
    result = _fif_hydra("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "continual.method=finetune,bitfit",
                        *SHORT, f"log.folder={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {p.name: read_results(p) for p in tmp_path.iterdir() if (p / "results.json").exists()}
    assert sorted(runs) == ["0_continual.method=finetune,experiment.task.n_samples=128,experiment.task.num=1",
                            "1_continual.method=bitfit,experiment.task.n_samples=128,experiment.task.num=1"]
    methods = {r["config"]["continual"]["method"]: r for r in runs.values()}
    assert set(methods) == {"finetune", "bitfit"}
    assert all(r["status"] == "complete" for r in runs.values())
    # the two jobs really trained differently (and both started from the same zero-shot model)
    assert methods["finetune"]["zero_shot"]["A_KA"] == methods["bitfit"]["zero_shot"]["A_KA"]
    assert methods["finetune"]["final"]["per_dataset"] != methods["bitfit"]["final"]["per_dataset"]
    assert list((tmp_path / "hydra").glob("*/multirun.yaml"))  # Hydra's provenance beside the runs


def test_bad_value_is_one_line(tmp_path: Path):
    result = _fif_hydra("experiment.task.num=abc", f"log.folder={tmp_path}")
    assert result.returncode == 2
    assert "experiment.task.num='abc' is not valid: expected an integer" in result.stderr
