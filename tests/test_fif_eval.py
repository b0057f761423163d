"""`fif eval`: zero-shot scores of any model, checked against the scores a real run recorded.

One tiny real run (offline_merge over theta_0 and theta_1, so the scored model is a merge the
method keeps apart from its training weights; 1 task of 2 steps on a 2-dataset registry cut from
the mini benchmark, fixed subsets on) gives results.json's zero-shot, zero-shot-subset and final
points, its final_model.pt and (kept aside before the run removes them) its task-end resume
checkpoint. `fif eval` of each form of the model must give the same numbers, to the last digit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import read_results
from fif.cli.main import main
from fif.config import compose
from fif.config.layered import eval_config
from fif.tools.evaluate_model import CHECKPOINT, FINAL, resolve_model
from fif.train.checkpoint import list_checkpoints
from fif.train.run import Run

HEADLINE = ("A_KA", "A_ZS", "geometric_mean")


@pytest.fixture(scope="module")
def mini_datasets(isolated_cache: Path) -> Path:
    """The mini benchmark's datasets without the pool shards conftest's ``mini_root`` adds (no run
    here trains on the pool; building the shards would triple this file's time when run alone)."""
    from fif.data.mini.build import build_datasets, default_root

    return build_datasets(default_root(0))


@pytest.fixture(scope="module")
def registry(mini_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One adaptation and one evaluation dataset of the mini benchmark: scoring is cheap (660 test
    images), and outlines' 480 make its fixed subset (300) a real subset."""
    full = json.loads((mini_datasets / "datasets.json").read_text())
    path = tmp_path_factory.mktemp("registry") / "datasets.json"
    path.write_text(json.dumps({k: full[k] for k in ("counting", "outlines")}))
    return path


@pytest.fixture(scope="module")
def overrides(registry: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("runs")
    return [f"experiment.dataset.registry={registry}", "experiment.dataset.sequence=null",
            "experiment.dataset.name=[COUNTING]", "experiment.task.num=1", "experiment.task.batch_size=32",
            "experiment.task.n_samples=64", "experiment.dataset.data_mixture.update=1.0",
            "experiment.dataset.data_mixture.buffer=0.0", "experiment.dataset.data_mixture.pretraining=0.0",
            "evaluation.validate_on_subset=0.1",
            "continual.method=offline_merge", "continual.offline_merge.include_zero_shot=true",
            "log.progress=false", "log.checkpoint=true", f"log.folder={folder}", "log.name=run"]


@pytest.fixture(scope="module")
def run(overrides: list[str]) -> tuple[Path, Path]:
    """The run's folder (complete, with final_model.pt) and a copy of it taken before ``finish``
    removed the resume checkpoints (no final_model.pt: its newest file is the task-end checkpoint)."""
    with Run(compose(overrides), echo=lambda *_, **__: None) as phases:
        phases.build()
        phases.zero_shot()
        for t in phases.remaining_tasks():
            seconds = phases.train_task(t)
            phases.record(t, phases.evaluate(t), seconds)
        kept = phases.run_dir.parent / "kept"
        shutil.copytree(phases.run_dir, kept)
        phases.finish()
    return phases.run_dir, kept


def fif_eval(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """``fif eval ARGS`` through the real entry point, in this process (saves a torch import per call)."""
    capsys.readouterr()
    code = main(["eval", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def scored(capsys: pytest.CaptureFixture, tmp_path: Path, *args: str) -> tuple[dict, str]:
    """The JSON ``--out`` wrote, and the table printed."""
    out = tmp_path / "scores.json"
    code, stdout, stderr = fif_eval(capsys, "--out", str(out), *args)
    assert code == 0, stderr
    assert stdout.endswith(f"wrote {out}\n") and not list(tmp_path.glob(".*.tmp"))
    return json.loads(out.read_text()), stdout


def assert_same_point(report: dict, point: dict) -> None:
    """Per-dataset scores and A_KA / A_ZS / GM identical (==, not approx) to a results.json point."""
    assert report["point"]["per_dataset"] == point["per_dataset"]
    for key in HEADLINE:
        assert report["point"][key] == point[key], key
    assert {row["name"]: row["score"] for row in report["datasets"]} == point["per_dataset"]


def test_default_model_equals_the_runs_zero_shot_point(run, overrides, capsys, tmp_path):
    zero_shot = read_results(run[0])["zero_shot"]
    report, table = scored(capsys, tmp_path, *overrides)
    assert_same_point(report, zero_shot)
    assert report["model"] == {"argument": None, "kind": "config", "backbone": "mini_clip", "weights": None}
    assert [(r["name"], r["role"], r["metric"]) for r in report["datasets"]] == [
        ("counting", "KA", "top1"), ("outlines", "ZS", "top1")]
    assert report["absent"] == [] and report["subset"] is False
    assert report["config"]["experiment"]["dataset"]["registry"] == overrides[0].split("=", 1)[1]
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in table.splitlines() if "│" in line]
    assert rows == [[name, role, "top1", f"{zero_shot['per_dataset'][name]:.2f}"]
                    for name, role in (("counting", "KA"), ("outlines", "ZS"))]
    assert f"A_KA  {zero_shot['A_KA']:6.2f}  (1 adaptation dataset)" in table
    assert f"A_ZS  {zero_shot['A_ZS']:6.2f}  (1 evaluation dataset)" in table
    assert f"GM    {zero_shot['geometric_mean']:6.2f}" in table


def test_subset_equals_the_runs_zero_shot_subset_point(run, overrides, capsys):
    results = read_results(run[0])
    code, stdout, stderr = fif_eval(capsys, "--subset", "--json", *overrides)
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["subset"] is True
    assert_same_point(report, results["zero_shot_subset"])
    assert report["point"]["per_dataset"]["outlines"] != results["zero_shot"]["per_dataset"]["outlines"]
    assert results["evaluation_subsets"]["sizes"]["outlines"] == {"subset": 300, "full": 480}


@pytest.mark.parametrize("form", ["final_model.pt", "run folder", "resume checkpoint"])
def test_every_form_of_the_trained_model_equals_the_runs_final_point(run, capsys, tmp_path, form):
    run_dir, kept = run
    results = read_results(run_dir)
    checkpoint = list_checkpoints(kept / "checkpoints")[-1]
    model = {"final_model.pt": run_dir / "final_model.pt", "run folder": run_dir,
             "resume checkpoint": checkpoint}[form]
    report, _ = scored(capsys, tmp_path, "--model", str(model), "log.progress=false")  # data settings: the run's
    assert_same_point(report, results["final"])
    assert_same_point(report, results["tasks"][0])
    assert report["model"]["kind"] == (CHECKPOINT if form == "resume checkpoint" else FINAL)
    assert report["model"]["backbone"] == "mini_clip"
    assert report["point"]["per_dataset"] != results["zero_shot"]["per_dataset"]


def test_a_run_folder_without_final_model_is_scored_from_its_newest_checkpoint(run):
    import torch

    _, kept = run
    source = resolve_model(str(kept))
    assert source.kind == CHECKPOINT and source.path == list_checkpoints(kept / "checkpoints")[-1]
    assert source.state["position"] == {"task": 1, "step": 0, "global_step": 2}
    # offline_merge evaluates a merge it keeps apart from its training weights: scoring the checkpoint's
    # plain model weights would not give the run's numbers, the rebuilt method's eval_model() does.
    held = source.state["method"]
    assert held["merging"]["eval"] is not None
    differs = [k for k, v in held["model"].items() if not torch.equal(v, held["merging"]["eval"][k])]
    assert len(differs) > 10


def test_a_runs_config_is_the_base_and_the_command_line_goes_on_top(run):
    source = resolve_model(str(run[0]))
    assert source.kind == FINAL and source.run_config["experiment"]["task"]["num"] == 1
    cfg = eval_config(["experiment.evaluation.batch_size=64"], source.run_config)  # the reference's name for the key
    assert cfg.evaluation.batch_size == 64
    assert (cfg.experiment.task.num, cfg.continual.method) == (1, "offline_merge")  # the run's, not the defaults
    assert cfg.experiment.dataset.registry == source.run_config["experiment"]["dataset"]["registry"]
    preset = eval_config(["experiment=fif", "experiment.dataset.root=/data/fif"], source.run_config)
    assert (preset.experiment.backbone.name, preset.experiment.task.num) == ("openclip_vit_b16", 20)  # what fif sets
    assert preset.experiment.dataset.pretraining_pool == "/data/fif/laion400m/shards"
    assert preset.experiment.dataset.registry == cfg.experiment.dataset.registry  # fif leaves it: still the run's
    assert eval_config([], resolve_model(None).run_config, subset=True).evaluation.validate_on_subset == 0.1


@pytest.fixture(scope="module")
def partial_root(mini_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FiF-layout root with 2 of the mini benchmark's 14 dataset folders (and its full registry)."""
    root = tmp_path_factory.mktemp("partial")
    for item in ("datasets.json", "00_info", "00_classnames", "COUNTING", "OUTLINES"):
        (root / item).symlink_to(mini_datasets / item)
    return root


def test_partial_root_scores_what_is_there_and_names_the_rest(run, partial_root, capsys):
    code, stdout, stderr = fif_eval(capsys, "--json", f"experiment.dataset.root={partial_root}", "log.progress=false")
    assert code == 0, stderr
    report = json.loads(stdout)  # --json: stdout is the JSON and nothing else
    assert [(r["name"], r["role"]) for r in report["datasets"]] == [("counting", "KA"), ("outlines", "ZS")]
    assert len(report["absent"]) == 12 and "digits" in report["absent"] and "counting" not in report["absent"]
    assert stderr.strip().splitlines() == [
        f"not in {partial_root}: 12 datasets ({', '.join(report['absent'][:10])}, ...)"]
    # the same model on the same images (the other registry, the other root): the run's zero-shot point
    assert_same_point(report, read_results(run[0])["zero_shot"])


@pytest.mark.parametrize("args, culprit", [
    (["evaluation.datasets=[digitz]"], "'digitz' is not in the dataset registry (close matches: digits)"),
    (["evaluation.datasets=[nosuchthing]"], "known: captions, combos, counting, digits"),
    (["evaluation.datasets=[locations]", "PARTIAL"],
     "evaluation.datasets: dataset folder PARTIAL/LOCATIONS does not exist"),
    (["evaluation.datasets=7"], "evaluation.datasets=7 is not valid"),
    (["--model", "/no/such/final_model.pt"], "--model /no/such/final_model.pt: does not exist"),
    (["--model", "RESULTS"], "is neither a run's final_model.pt"),
    (["--model", "EMPTY"], "neither an open_clip folder"),
])
def test_bad_input_is_one_line_and_exit_2(run, partial_root, capsys, tmp_path, args, culprit):
    values = {"PARTIAL": str(partial_root), "RESULTS": str(run[0] / "results.json"), "EMPTY": str(tmp_path)}
    args = [f"experiment.dataset.root={partial_root}" if a == "PARTIAL" else values.get(a, a) for a in args]
    culprit = culprit.replace("PARTIAL", str(partial_root))
    out = tmp_path / "never.json"
    code, stdout, stderr = fif_eval(capsys, "--out", str(out), "log.progress=false", *args)
    assert code == 2 and stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and culprit in lines[0], stderr
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))
