"""`fif study`: grid files expand into runs, findings are judged by their numbers, a killed study resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fif.errors import FifError
from fif.studies.findings import Finding, judge, metric_value
from fif.studies.grid import load_grid, shipped_grids

ARMS = ["a", "b", "c"]


def _grid(tmp_path: Path, **fields) -> Path:
    data = {"study": "toy", "description": "a toy study", "base": ["experiment.task.num=2"], "seeds": [0, 1],
            "arms": {"a": ["continual.method=finetune"], "b": ["continual.method=bitfit"]},
            "quick": {"seeds": [0], "base": ["experiment.task.num=1"]}, **fields}
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))  # arms keep their order
    return path


def test_a_grid_expands_arms_then_seeds_with_base_arm_and_seed_overrides_in_order(tmp_path):
    grid = load_grid(str(_grid(tmp_path)))
    runs = grid.runs()
    assert [r.name for r in runs] == ["a_seed-0", "a_seed-1", "b_seed-0", "b_seed-1"]
    assert runs[3].overrides == ("experiment.task.num=2", "continual.method=bitfit", "experiment.seed=1")
    quick = grid.runs(quick=True)
    assert [r.name for r in quick] == ["a_seed-0", "b_seed-0"]
    assert quick[0].overrides == ("experiment.task.num=2", "experiment.task.num=1", "continual.method=finetune",
                                  "experiment.seed=0")  # the quick base comes last: its values win


def test_every_shipped_grid_loads_and_its_runs_are_valid_settings(tmp_path):
    from fif.config import compose
    from fif.config.settings import RunSettings

    assert {"methods", "mixtures", "schedules", "compute-scaling"} <= set(shipped_grids())
    defaults = RunSettings.from_config(compose([]))
    for name in shipped_grids():
        grid = load_grid(name)
        assert grid.findings, name
        for run in grid.runs(quick=True):
            defaults.with_overrides(run.overrides, what=f"{name} grid")  # every key real, every value valid


@pytest.mark.parametrize("fields, message", [
    ({"seeds": [0, 0]}, "seeds: expected a non-empty list of distinct seeds"),
    ({"arms": {"a b": []}}, "arms.a b: an arm name is letters"),
    ({"arms": {"a": "continual.method=lora"}}, "arms.a: expected a list of key=value overrides"),
    ({"colour": 1}, "colour is not a field of a grid file"),
    ({"findings": [{"id": "x", "claim": "c", "metric": "final.A_KA", "best": "zz"}]},
     "findings[0].best: expected arm names of this grid (a, b)"),
    ({"findings": [{"id": "x", "claim": "c", "metric": "last.A_KA", "best": "a"}]}, "findings[0].metric='last.A_KA'"),
    ({"findings": [{"id": "x", "claim": "c", "metric": "final.A_KA", "best": "a", "less": ["a", "b"]}]},
     "compares in exactly one way"),
])
def test_a_bad_grid_is_one_line_naming_the_file_and_field(tmp_path, fields, message):
    path = _grid(tmp_path, **fields)
    with pytest.raises(FifError) as error:
        load_grid(str(path))
    assert message in str(error.value) and str(path) in str(error.value) and "\n" not in str(error.value)


def test_an_unknown_study_names_the_shipped_ones():
    with pytest.raises(FifError, match="not a shipped study .*methods"):
        load_grid("no_such_study")


def _finding(**fields) -> Finding:
    return Finding.from_dict({"id": "x", "claim": "claim", "metric": "final.A_KA", **fields}, "f", ARMS)


def test_a_finding_holds_when_the_effect_exceeds_the_summed_spread():
    greater = _finding(greater=["a", "b"])
    verdict = judge(greater, {"a": [10.0, 12.0], "b": [7.0, 7.0]})  # means 11 vs 7, sd 1.414 + 0
    assert verdict.effect == pytest.approx(4.0) and verdict.spread == pytest.approx(2 ** 0.5)
    assert verdict.holds and verdict.seeds == 2
    close = judge(greater, {"a": [8.0, 12.0], "b": [7.0, 9.0]})  # 10 vs 8: effect 2 < 2.83 + 1.41
    assert close.effect == pytest.approx(2.0) and not close.holds
    assert not judge(_finding(less=["a", "b"]), {"a": [10.0, 12.0], "b": [7.0, 7.0]}).holds
    assert judge(greater, {"a": [10.0], "b": []}) is None  # an arm without a finished run: no verdict


def test_best_is_judged_against_the_closest_arm_and_thresholds_against_the_number():
    best = judge(_finding(best="a"), {"a": [20.0, 20.0], "b": [19.0, 19.0], "c": [5.0, 5.0]})
    assert best.effect == pytest.approx(1.0) and best.holds and "closest: b" in best.detail
    worst = judge(_finding(worst="c", among=["a", "c"]), {"a": [20.0, 21.0], "c": [5.0, 5.0]})
    assert worst.finding.arms == ("c", "a") and worst.effect == pytest.approx(15.5) and worst.holds
    below = judge(_finding(arm="a", below=0, metric="delta.A_ZS"), {"a": [-2.0, -4.0]})
    assert below.effect == pytest.approx(3.0) and below.spread == pytest.approx(2 ** 0.5) and below.holds
    one_seed = judge(_finding(arm="a", above=50), {"a": [50.5]})
    assert one_seed.spread == 0 and one_seed.holds and one_seed.seeds == 1


def test_metrics_are_read_from_results_json_points():
    results = {"zero_shot": {"A_KA": 10.0, "A_ZS": 80.0}, "final": {"A_KA": 30.0, "A_ZS": 75.0},
               "averaged": {"A_KA": 20.0}}
    assert metric_value(results, "final.A_KA") == 30.0
    assert metric_value(results, "delta.A_ZS") == -5.0
    assert metric_value(results, "averaged.A_KA") == 20.0


def _wait_for(predicate, process: subprocess.Popen, seconds: float = 300) -> None:
    end = time.time() + seconds
    while time.time() < end and process.poll() is None:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"condition not met (study exit status {process.poll()})")


def _complete(folder: Path) -> list[str]:
    try:
        runs = json.loads((folder / "study.json").read_text())["runs"]
    except (OSError, json.JSONDecodeError):
        return []
    return [r["name"] for r in runs if r["status"] == "complete"]


def test_a_killed_study_keeps_its_finished_runs_and_runs_only_the_rest(tmp_path, small):
    """Two tiny runs one at a time; the study is killed once the first is complete, then run again."""
    grid = _grid(tmp_path, base=[*small, "experiment.task.num=1", "experiment.task.n_samples=128",
                                 "experiment.dataset.pool_shards=1", "log.keep_checkpoints=0"], seeds=[0],
                 arms={"ft": ["continual.method=finetune"],
                       "hot": ["continual.method=finetune", "experiment.optimizer.lr=1e-3"]},
                 findings=[{"id": "h", "claim": "a hotter lr accumulates more", "metric": "final.A_KA",
                            "greater": ["hot", "ft"]}])
    folder = tmp_path / "study"
    command = [sys.executable, "-m", "fif.cli", "study", str(grid), "--out", str(folder)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(lambda: _complete(folder), first)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the study and the run it has started
        first.wait()
    done = _complete(folder)
    assert done == ["ft_seed-0"]
    kept = (folder / "runs" / "ft_seed-0" / "results.json").stat().st_mtime_ns
    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert "1 already complete, 1 to run" in second.stdout
    assert (folder / "runs" / "ft_seed-0" / "results.json").stat().st_mtime_ns == kept  # not rerun
    assert _complete(folder) == ["ft_seed-0", "hot_seed-0"]
    findings = (folder / "findings.md").read_text()
    assert "| h | a hotter lr accumulates more | final.A_KA |" in findings
    page = (folder / "report.html").read_text()
    assert "<h2>Findings</h2>" in page and "KA-ZS plane" in page


TUNE = {"key": "experiment.optimizer.lr", "values": [1.0e-4, 1.0e-3], "metric": "final.geometric_mean",
        "seeds": [0, 1], "arms": ["b"]}


def test_a_tuned_value_comes_before_the_arms_own_overrides_and_tuning_runs_in_validation_mode(tmp_path):
    grid = load_grid(str(_grid(tmp_path, tune=TUNE, tuned={"b": 0.001})))
    runs = {r.name: r.overrides for r in grid.runs()}
    assert runs["b_seed-0"] == ("experiment.task.num=2", "experiment.optimizer.lr=0.001", "continual.method=bitfit",
                                "experiment.seed=0")
    assert "experiment.optimizer.lr" not in " ".join(runs["a_seed-0"])  # untuned arm: the preset's lr
    assert {r.name: r.overrides[1] for r in grid.runs(tuned={"b": 0.01})}["b_seed-1"] == "experiment.optimizer.lr=0.01"
    tuning = grid.tune.runs(grid)
    assert [run.name for run, _ in tuning] == ["b_lr-0.0001_seed-0", "b_lr-0.0001_seed-1", "b_lr-0.001_seed-0",
                                                "b_lr-0.001_seed-1"]
    assert all(run.overrides[-2:-1] == ("experiment.dataset.validation_mode=true",) for run, _ in tuning)


@pytest.mark.parametrize("fields, message", [
    ({"tune": {**TUNE, "values": [1e-3]}}, "tune.values: expected at least two distinct values"),
    ({"tune": {**TUNE, "arms": ["zz"]}}, "tune.arms: expected arm names of this grid"),
    ({"tune": {**TUNE, "metric": "final.loss"}}, "tune.metric='final.loss' is not valid"),
    ({"tuned": {"b": 1e-3}}, "tuned: expected a mapping of arm name -> value of the tune block's key"),
])
def test_a_bad_tune_block_is_one_line(tmp_path, fields, message):
    with pytest.raises(FifError) as error:
        load_grid(str(_grid(tmp_path, **fields)))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_tuning_chooses_each_arms_best_mean_and_the_study_folder_remembers_it(tmp_path):
    """Finished tuning runs are never redone, so results.json files written here are what tune() judges."""
    from fif.studies.runner import read_tuned, tune

    grid = load_grid(str(_grid(tmp_path, tune=TUNE)))
    folder = tmp_path / "study"
    gm = {("0.0001", 0): 40.0, ("0.0001", 1): 44.0, ("0.001", 0): 41.0, ("0.001", 1): 45.0}  # 42 vs 43
    for (value, seed), score in gm.items():
        run = folder / "tuning" / f"b_lr-{value}_seed-{seed}"
        run.mkdir(parents=True)
        (run / "results.json").write_text(json.dumps({"status": "complete", "final": {"geometric_mean": score}}))
    lines: list[str] = []
    assert tune(grid, folder, echo=lines.append) == {"b": 0.001}
    assert "4 already complete, 0 to run" in lines[0] and "b: experiment.optimizer.lr=0.001" in lines[-1]
    assert read_tuned(folder) == {"b": 0.001}
    saved = yaml.safe_load((folder / "tuned.yaml").read_text())
    assert saved["means"]["b"] == {"0.0001": 42.0, "0.001": 43.0} and saved["metric"] == "final.geometric_mean"
