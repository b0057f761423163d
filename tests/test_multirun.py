"""`fif run -m`: Hydra-style sweeps expanded by Hydra's parser, run in turn, one table at the end."""

from __future__ import annotations

import json
import re

import pytest

from conftest import read_results, run_cli
from fif.errors import FifError
from fif.train.sweep import expand, plan, run_names

SHORT = ["experiment.task.num=2", "experiment.task.n_samples=256", "log.progress=false"]


def test_expand_is_the_cartesian_product_in_order():
    configs = expand(["continual.method=finetune,bitfit", "experiment.task.num=2", "experiment.seed=0,1"])
    assert [texts for texts, _ in configs] == [
        ["continual.method=finetune", "experiment.task.num=2", "experiment.seed=0"],
        ["continual.method=finetune", "experiment.task.num=2", "experiment.seed=1"],
        ["continual.method=bitfit", "experiment.task.num=2", "experiment.seed=0"],
        ["continual.method=bitfit", "experiment.task.num=2", "experiment.seed=1"],
    ]
    assert configs[3][1] == {"continual.method": "bitfit", "experiment.seed": "1"}
    names = run_names(configs, ["finetune", "finetune", "bitfit", "bitfit"])
    assert names == ["0_finetune_seed-0", "1_finetune_seed-1", "2_bitfit_seed-0", "3_bitfit_seed-1"]


def test_expand_understands_hydra_sweep_syntax():
    configs = expand(["experiment.seed=range(0,3)", "continual.method=choice(ewc,si)", "experiment.seed=5,6",
                      "experiment.dataset.name=[A,B]"])
    # a later override of a key replaces the earlier one (as Hydra's basic sweeper does)
    assert len(configs) == 4
    assert {c[1]["experiment.seed"] for c in configs} == {"5", "6"}
    assert all("experiment.dataset.name=[A,B]" in texts for texts, _ in configs)  # a list, not a sweep


@pytest.mark.parametrize("overrides, culprit", [
    (["continual.method=glob(*)"], "continual.method=glob(*)"),
    (["experiment.optimizer.lr=interval(0,1)"], "interval"),
    (["log.folder=a,b"], "log.folder cannot be swept"),
    (["continual.method=finetune,bitfit", "experiment.task.nmu=3"], "experiment.task.nmu"),
    (["continual.method=="], "bad override"),
])
def test_bad_sweeps_are_one_line_errors_before_any_run(overrides, culprit):
    with pytest.raises(FifError) as error:
        plan(overrides)
    assert culprit in str(error.value) and "\n" not in str(error.value)


def test_two_methods_give_two_run_folders_and_one_table(tmp_path, small):
    result = run_cli("run", "-m", "continual.method=finetune,bitfit", *SHORT, *small, f"log.folder={tmp_path}", "log.name=sw")
    assert result.returncode == 0, result.stderr
    sweep = tmp_path / "sw"
    runs = {p.name: read_results(p) for p in sweep.iterdir() if p.is_dir()}
    assert set(runs) == {"0_finetune", "1_bitfit"}
    assert [r["config"]["continual"]["method"] for _, r in sorted(runs.items())] == ["finetune", "bitfit"]
    assert all(r["status"] == "complete" and len(r["tasks"]) == 2 for r in runs.values())
    out = result.stdout
    assert out.count("FoMo-in-Flux sweep") == 1
    table = out.split("FoMo-in-Flux sweep")[1].splitlines()
    for name, results in runs.items():
        row = next(line for line in table if line.startswith(f"│ {name} "))
        numbers = [float(x) for x in re.findall(r"\d+\.\d\d", row)]
        expected = [results[part][k] for part in ("final", "averaged") for k in ("A_KA", "A_ZS", "geometric_mean")]
        assert numbers == pytest.approx(expected, abs=0.006)
    summary = json.loads((sweep / "sweep.json").read_text())
    assert summary["status"] == "complete" and summary["failed"] == 0
    assert [r["name"] for r in summary["runs"]] == ["0_finetune", "1_bitfit"]
    assert summary["runs"][1]["final"]["A_KA"] == runs["1_bitfit"]["final"]["A_KA"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_failing_run_is_a_row_and_the_sweep_goes_on(tmp_path, in_process):
    result = in_process("run", "-m", "continual.method=magic,finetune", "experiment.task.n_samples=100",
                     f"log.folder={tmp_path}", "log.name=bad")
    assert result.returncode == 1
    summary = json.loads((tmp_path / "bad" / "sweep.json").read_text())
    assert [r["status"] for r in summary["runs"]] == ["failed", "failed"]  # the second ran after the first failed
    assert "magic" in summary["runs"][0]["error"] and "n_samples=100" in summary["runs"][1]["error"]
    assert "0_magic" in result.stdout and "1_finetune" in result.stdout and "failed" in result.stdout
    assert "(0 complete, 2 failed)" in result.stdout


def test_cfg_lists_the_runs_without_running(tmp_path, in_process):
    result = in_process("run", "-m", "--cfg", "continual.method=ewc,si", "continual.si.c=1,10", f"log.folder={tmp_path}",
                     "log.name=dry")
    assert result.returncode == 0, result.stderr
    assert "4 runs" in result.stdout and "3_si_c-10" in result.stdout
    assert not (tmp_path / "dry").exists()


def test_comma_values_without_multirun_point_to_it(tmp_path, in_process):
    result = in_process("run", "continual.method=finetune,bitfit", f"log.folder={tmp_path}")
    assert result.returncode == 2 and "fif run -m" in result.stderr
