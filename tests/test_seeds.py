"""Seed aggregation in `fif results` and `fif report` on real short runs of the mini benchmark: the
mean and std equal statistics.fmean / stdev of the runs' results.json, runs of another learning rate
form their own group, a single seed has no std, unfinished runs are listed but not averaged."""

from __future__ import annotations

import copy
import csv
import io
import json
import shutil
from pathlib import Path
from statistics import fmean, stdev

import pytest

from conftest import read_results
from fif.report.record import RunRecord
from fif.report.runs import collect_runs, load_run
from fif.report.seeds import config_key, group_name, group_runs, seeds_section
from fif.utils.io import atomic_write_json

COLUMNS = {f"{part}_{short}": (part, key) for part in ("zero_shot", "final", "averaged")
           for key, short in (("A_KA", "A_KA"), ("A_ZS", "A_ZS"), ("geometric_mean", "GM"))}
SEEDED = ["lr2e-4_seed0", "lr2e-4_seed1", "lr2e-4_seed2"]  # one configuration, three seeds
OTHER_LR = "lr1e-3_seed0"
RUNS = {  # seed 1 and 2 also differ in keys that cannot change the numbers (prefetch, device, trackers' log.*)
    "lr2e-4_seed0": ["experiment.seed=0"],
    "lr2e-4_seed1": ["experiment.seed=1", "experiment.dataset.prefetch=4"],
    "lr2e-4_seed2": ["experiment.seed=2", "device=cpu", "log.keep_checkpoints=1"],
    OTHER_LR: ["experiment.seed=0", "experiment.optimizer.lr=1e-3"],
}


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory: pytest.TempPathFactory, registry: Path) -> Path:
    """Four real runs of two tasks with one optimizer step each, in one folder, on the 3-dataset registry
    cut from the mini benchmark (conftest): the aggregation reads results.json, whatever the datasets."""
    from fif.config import compose
    from fif.train.run import run_experiment

    folder = tmp_path_factory.mktemp("seed_runs")
    base = [f"experiment.dataset.registry={registry}", "experiment.dataset.sequence=null",
            "experiment.dataset.name=[SPRITES2D,COUNTING]", "experiment.dataset.pool_shards=1",
            "experiment.task.num=2", "experiment.task.n_samples=128", "log.progress=false",
            "log.keep_checkpoints=0", f"log.folder={folder}"]
    for name, overrides in RUNS.items():
        run_experiment(compose([*base, f"log.name={name}", *overrides]), echo=lambda *_: None)
    return folder


def _values(folder: Path, names: list[str]) -> dict[str, list[float]]:
    """Each headline column and numeric transfer key over the runs, read straight from results.json."""
    results = [read_results(folder / name) for name in names]
    values = {column: [r[part][key] for r in results] for column, (part, key) in COLUMNS.items()}
    first = results[0].get("transfer") or {}
    for key in first:
        numbers = [(r.get("transfer") or {}).get(key) for r in results]
        if all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers):
            values[f"transfer_{key}"] = numbers
    return values


def _groups(cli, *args: str) -> dict[str, dict]:
    code, out, err = cli("results", *args, "--seeds", "--json")
    assert code == 0, err
    return {group["group"]: group for group in json.loads(out)}


def test_seed_groups_json_are_fmean_and_stdev_of_results_files(seed_runs, cli):
    groups = _groups(cli, str(seed_runs))
    assert list(groups) == ["lr1e-3_seed0", "lr2e-4_seed*"]  # folder order: the other lr sorts first
    seeded = groups["lr2e-4_seed*"]
    assert (seeded["n"], seeded["seeds"], seeded["runs"], seeded["incomplete"]) == (3, [0, 1, 2], SEEDED, [])
    values = _values(seed_runs, SEEDED)
    assert "transfer_forgetting" in values and "transfer_task_masked_accuracy" in values
    assert set(seeded) - {"group", "runs", "seeds", "n", "incomplete"} == set(values)
    for column, numbers in values.items():
        assert seeded[column] == {"mean": fmean(numbers), "std": stdev(numbers)}, column
    assert seeded["zero_shot_GM"]["std"] == 0.0  # the same model before training, whatever the seed
    assert seeded["final_A_KA"]["std"] > 0.0  # the seeds drew different batches

    single = groups[OTHER_LR]
    assert (single["n"], single["seeds"], single["runs"]) == (1, [0], [OTHER_LR])
    for column, numbers in _values(seed_runs, [OTHER_LR]).items():
        assert single[column] == {"mean": numbers[0], "std": None}, column
    assert single["final_A_KA"]["mean"] != seeded["final_A_KA"]["mean"]


def test_default_output_is_per_run_and_the_table_adds_the_seed_groups(seed_runs, cli):
    code, out, _ = cli("results", str(seed_runs), "--json")
    assert code == 0 and [row["run"] for row in json.loads(out)] == [OTHER_LR, *SEEDED]

    code, out, _ = cli("results", str(seed_runs))
    assert code == 0 and "4 runs (4 complete, 0 failed, 0 unfinished)" in out
    after = out.split("4 runs (4 complete, 0 failed, 0 unfinished)")[1]
    assert "forgetting and transfer" in after and "mean ± std over seeds" in after
    table = after.split("mean ± std over seeds")[1]  # the seeds table (the transfer table lists the runs first)
    values = _values(seed_runs, SEEDED)
    line = next(line for line in table.splitlines() if "lr2e-4_seed*" in line)
    assert "3 seeds" in line and "0, 1, 2" in line
    for column in ("final_A_KA", "averaged_GM"):
        assert f"{fmean(values[column]):.2f} ± {stdev(values[column]):.2f}" in line
    single = next(line for line in table.splitlines() if OTHER_LR in line)
    assert "1 seed " in single and f"{read_results(seed_runs / OTHER_LR)['final']['A_KA']:.2f} ± -" in single

    code, out, _ = cli("results", str(seed_runs / OTHER_LR), str(seed_runs / SEEDED[0]))
    assert code == 0 and "over seeds" not in out  # no configuration repeated: no second table


def test_seeds_csv_has_mean_and_std_columns(seed_runs, cli):
    code, out, _ = cli("results", str(seed_runs), "--seeds", "--csv")
    assert code == 0
    rows = {row["group"]: row for row in csv.DictReader(io.StringIO(out))}
    values = _values(seed_runs, SEEDED)
    seeded = rows["lr2e-4_seed*"]
    assert (seeded["n"], seeded["seeds"], seeded["runs"]) == ("3", "0;1;2", ";".join(SEEDED))
    for column, numbers in values.items():
        assert float(seeded[f"{column}_mean"]) == fmean(numbers)
        assert float(seeded[f"{column}_std"]) == stdev(numbers)
    assert rows[OTHER_LR]["final_GM_std"] == "" and rows[OTHER_LR]["n"] == "1"


def _copy(source: Path, target: Path) -> dict:
    shutil.copytree(source, target)
    return read_results(target)


def test_unfinished_runs_are_listed_not_averaged_and_names_are_escaped(seed_runs, tmp_path, cli):
    for index, name in enumerate(SEEDED):
        _copy(seed_runs / name, tmp_path / f"a&b_seed{index}")
    killed = _copy(seed_runs / SEEDED[2], tmp_path / "a&b_killed")
    atomic_write_json(tmp_path / "a&b_killed" / "results.json",  # as the loop leaves it after task 1
                      {"config": killed["config"], "status": "running", "zero_shot": killed["zero_shot"],
                       "tasks": killed["tasks"][:1]})
    groups = _groups(cli, str(tmp_path))
    assert list(groups) == ["a&b_seed*"]  # named after the runs it averages
    group = groups["a&b_seed*"]
    assert (group["n"], group["incomplete"], group["runs"]) == (3, ["a&b_killed"], [f"a&b_seed{i}" for i in range(3)])
    values = _values(seed_runs, SEEDED)
    assert group["averaged_GM"] == {"mean": fmean(values["averaged_GM"]), "std": stdev(values["averaged_GM"])}
    code, out, _ = cli("results", str(tmp_path), "--seeds")
    assert code == 0 and "3 seeds (+1 not complete)" in out and "1 groups of 4 runs" in out

    section = seeds_section(collect_runs([str(tmp_path)]))
    assert "a&amp;b_seed*" in section and "a&b_" not in section


def test_transfer_is_skipped_when_a_run_has_none(seed_runs, tmp_path, cli):
    for name in SEEDED:
        _copy(seed_runs / name, tmp_path / name)
    results = read_results(tmp_path / SEEDED[1])
    results.pop("transfer", None)
    atomic_write_json(tmp_path / SEEDED[1] / "results.json", results)
    group = _groups(cli, str(tmp_path))["lr2e-4_seed*"]
    assert not [key for key in group if key.startswith("transfer_")]
    assert group["final_GM"]["mean"] == fmean(_values(seed_runs, SEEDED)["final_GM"])


def test_html_section_holds_the_numbers(seed_runs):
    records = collect_runs([str(seed_runs)])
    section = seeds_section(records)
    assert section.startswith("<h2>") and section.count("<tr") == 3  # header + two groups
    values = _values(seed_runs, SEEDED)
    for column in ("zero_shot_A_KA", "final_A_ZS", "averaged_GM", "transfer_forgetting"):
        assert f"<td>{fmean(values[column]):.2f} ± {stdev(values[column]):.2f}</td>" in section
    assert "<td class='text'>3 seeds</td><td class='text'>0, 1, 2</td>" in section
    assert seeds_section([r for r in records if r.name != SEEDED[0] and r.name != SEEDED[1]]) == ""


def test_only_bookkeeping_keys_and_the_seed_may_differ_within_a_group(seed_runs):
    record = load_run(seed_runs / SEEDED[0])

    def variant(**changes: object) -> RunRecord:
        results = copy.deepcopy(record.results)
        for dotted, value in changes.items():
            node = results["config"]
            *parents, last = dotted.split("__")
            for part in parents:
                node = node[part]
            node[last] = value
        return RunRecord("variant", "complete", None, "", results)

    same = config_key(record)
    assert config_key(variant(experiment__seed=7, log__name="x", log__use=True, device="cuda:1",
                              experiment__compute__tf32=False, experiment__dataset__train_workers=3,
                              continual__lora__rank=64)) == same  # lora's block is unused by finetune
    for changed in ({"experiment__optimizer__lr": 1e-3}, {"continual__method": "lora"},
                    {"experiment__dataset__sequence_reshuffle": True}, {"evaluation__validate_on_subset": 0.5}):
        assert config_key(variant(**changed)) != same, changed
    assert len(group_runs([record, variant(experiment__seed=5), variant(experiment__optimizer__lr=1.0)])) == 2


@pytest.mark.parametrize("names, expected", [
    (["lr1e-3_seed0", "lr1e-3_seed1"], "lr1e-3_seed*"),
    (["sweep/0_finetune_seed-0", "sweep/1_finetune_seed-1", "sweep/2_finetune_seed-2"], "sweep/*_finetune_seed-*"),
    (["run_seedA", "run_seedB"], "run_seed*"),
    (["seed10_x", "seed9_x"], "seed*_x"),
    (["only"], "only"),
    (["alpha", "beta"], "alpha (+1 more)"),
])
def test_group_names_star_the_differing_parts(names, expected):
    assert group_name(names) == expected
