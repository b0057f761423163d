"""End-to-end runs of `fif run` on the mini benchmark, checked by their numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import read_results, run_cli
from fif.config import compose
from fif.train.run import run_experiment

SHORT = ["experiment.task.num=2", "experiment.task.n_samples=256", "log.progress=false"]


def _run(tmp_path: Path, name: str, *overrides: str) -> dict:
    cfg = compose([f"log.folder={tmp_path}", f"log.name={name}", "log.progress=false", *overrides])
    return run_experiment(cfg, echo=lambda *_: None).results


@pytest.fixture(scope="module")
def default_and_no_replay(tmp_path_factory, mini_root):
    folder = tmp_path_factory.mktemp("runs")
    default = _run(folder, "default")
    no_replay = _run(folder, "no_replay", "experiment.dataset.data_mixture.update=1.0",
                     "experiment.dataset.data_mixture.buffer=0.0", "experiment.dataset.data_mixture.pretraining=0.0")
    print(f"\nzero-shot A_KA {default['zero_shot']['A_KA']:.2f} A_ZS {default['zero_shot']['A_ZS']:.2f}; "
          f"default final A_KA {default['final']['A_KA']:.2f} A_ZS {default['final']['A_ZS']:.2f}; "
          f"no-replay final A_KA {no_replay['final']['A_KA']:.2f} A_ZS {no_replay['final']['A_ZS']:.2f}")
    return default, no_replay


def test_finetuning_accumulates_knowledge(default_and_no_replay):
    default, _ = default_and_no_replay
    assert default["final"]["A_KA"] >= default["zero_shot"]["A_KA"] + 10.0


def test_without_replay_zero_shot_retention_drops(default_and_no_replay):
    _, no_replay = default_and_no_replay
    assert no_replay["final"]["A_ZS"] <= no_replay["zero_shot"]["A_ZS"] - 3.0


def test_replay_loses_less_zero_shot_skill(default_and_no_replay):
    default, no_replay = default_and_no_replay
    assert default["zero_shot"]["A_ZS"] == pytest.approx(no_replay["zero_shot"]["A_ZS"])
    assert default["final"]["A_ZS"] > no_replay["final"]["A_ZS"]


def test_results_have_the_design_shape(default_and_no_replay):
    default, _ = default_and_no_replay
    cfg = compose([])
    assert default["status"] == "complete"
    assert len(default["tasks"]) == cfg.experiment.task.num
    steps = cfg.experiment.task.n_samples // cfg.experiment.task.batch_size
    for position, task in enumerate(default["tasks"], start=1):
        assert task["task"] == position
        assert task["samples_seen"] == position * steps * cfg.experiment.task.batch_size
        assert task["gflops"] > 0
        assert len(task["per_dataset"]) == 14
        assert task["geometric_mean"] == pytest.approx((task["A_KA"] * task["A_ZS"]) ** 0.5)
    for key in ("zero_shot", "final", "averaged"):
        assert {"A_KA", "A_ZS", "geometric_mean"} <= set(default[key])
    assert default["averaged"]["A_KA"] == pytest.approx(sum(t["A_KA"] for t in default["tasks"]) / len(default["tasks"]))
    assert default["final"]["per_dataset"] == default["tasks"][-1]["per_dataset"]
    assert default["config"]["continual"]["method"] == "finetune"


def test_same_seed_gives_the_same_scores(tmp_path, small):
    first = _run(tmp_path, "a", *SHORT, *small)
    second = _run(tmp_path, "b", *SHORT, *small)
    assert [t["per_dataset"] for t in first["tasks"]] == [t["per_dataset"] for t in second["tasks"]]
    assert first["final"] == second["final"]
    other = _run(tmp_path, "c", *SHORT, *small, "experiment.seed=1")
    assert other["final"]["per_dataset"] != first["final"]["per_dataset"]


def test_cli_run_prints_progress_table_and_results_path(tmp_path, small):
    result = run_cli("run", *SHORT, *small, f"log.folder={tmp_path}", "log.name=cli", "log.checkpoint=true")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "zero-shot" in out and "task   2/2" in out and "averaged over tasks" in out
    assert f"results: {tmp_path / 'cli' / 'results.json'}" in out
    results = read_results(tmp_path / "cli")
    assert results["status"] == "complete"
    events = [json.loads(line)["event"] for line in (tmp_path / "cli" / "events.jsonl").read_text().splitlines()]
    assert events[0] == "start" and events[-1] == "end" and events.count("eval") == 3
    assert (tmp_path / "cli" / "final_model.pt").is_file()
    assert not list((tmp_path / "cli").glob("*.tmp"))


def _stream_file(tmp_path: Path, entries: list[str]) -> str:
    path = tmp_path / "stream.json"
    path.write_text(json.dumps(entries))
    return str(path)


@pytest.mark.parametrize("make_overrides, culprit", [
    (lambda p: ["experiment.task.nmu=3"], "experiment.task.nmu"),
    (lambda p: ["continual.method=magic"], "magic"),
    (lambda p: ["experiment.task.n_samples=100"], "experiment.task.n_samples=100"),
    (lambda p: [f"experiment.dataset.sequence={_stream_file(p, ['NOSUCHSET+++cat'])}"], "NOSUCHSET"),
    (lambda p: [f"experiment.dataset.sequence={_stream_file(p, ['SWATCHES+++chartreuse'])}"],
     "stream.json, entry 0 (SWATCHES+++chartreuse)"),
    (lambda p: [f"experiment.dataset.sequence={_stream_file(p, ['PRIMSHAPES+++circle'])}"], "evaluation-only"),
    (lambda p: ["experiment.dataset.data_mixture.update=0.9"], "sum to 1"),
])
def test_bad_input_is_one_line_naming_the_culprit(tmp_path, mini_root, cli, make_overrides, culprit):
    code, _, err = cli("run", "experiment.task.num=1", f"log.folder={tmp_path}", *make_overrides(tmp_path))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert culprit in lines[0]
    assert not list(tmp_path.rglob("results.json"))


def test_cfg_flag_prints_the_resolved_config(cli):
    code, out, _ = cli("run", "--cfg", "experiment.task.num=4")
    assert code == 0
    assert "num: 4" in out and "mini_clip" in out
