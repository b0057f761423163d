"""Evaluations inside tasks (the stability gap), forgetting / backward transfer, task-masked accuracy and
which datasets A_KA averages over, on real tiny runs of the mini benchmark (3-dataset registry)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch

from fif.config import compose
from fif.errors import FifError
from fif.config.blocks import EvaluationOptions
from fif.eval.within_task import within_task_steps
from fif.eval.zero_shot import task_masked_accuracy
from fif.results import RunResults
from fif.tracking.scalars import ScalarMapper
from fif.train.resume import without_timing
from fif.train.run import run_experiment
from fif.eval.transfer import transfer_metrics
from test_resume import fif_run, killed, results_of


def tiny(registry: Path, folder: Path, name: str, *extra: str) -> list[str]:
    """2 tasks x 6 steps of 32 over SPRITES2D and COUNTING; primshapes is held out."""
    return [f"experiment.dataset.registry={registry}", "experiment.dataset.sequence=null",
            "experiment.dataset.name=[SPRITES2D,COUNTING]", "experiment.task.num=2", "experiment.task.batch_size=32",
            "experiment.task.n_samples=192", "experiment.dataset.pool_shards=1",
            "experiment.dataset.pool_shuffle_buffer=200", "log.progress=false", f"log.folder={folder}",
            f"log.name={name}", *extra]


def run(registry: Path, folder: Path, name: str, *extra: str) -> dict:
    return run_experiment(compose(tiny(registry, folder, name, *extra), echo=lambda *_: None),
                          echo=lambda *_: None).results


GAP = ("evaluation.every_n_samples=64", "evaluation.validate_on_subset=0.5")


@pytest.fixture(scope="module")
def runs(registry: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("runs")
    return {"plain": run(registry, folder, "plain", "evaluation.validate_on_subset=0.5"),
            "gap": run(registry, folder, "gap", *GAP), "folder": folder}


# ---------------------------------------------------------------------------- where the points go
def test_within_task_steps_follow_the_sample_counts():
    assert within_task_steps(64, (), 32, 6) == {2, 4}  # 64, 128 samples; 192 is the task end
    assert within_task_steps(50, (), 32, 6) == {2, 4, 5}  # after 64 (>50), 128 (>100), 160 (>150) samples
    assert within_task_steps(None, (1, 65, 192), 32, 6) == {1, 3}  # ceil(x / 32); 6 = the task end
    assert within_task_steps(None, (), 32, 6) == frozenset()
    assert within_task_steps(727040, (), 512, 1420) == frozenset()  # the reference presets: = task length


@pytest.mark.parametrize("key, value, message", [
    ("every_n_samples", 0, r"evaluation.every_n_samples=0 is not valid: expected null \(evaluate at task ends only\)"),
    ("every_n_samples", "10", r"evaluation.every_n_samples='10' is not valid"),
    ("gap_samples", [100, -5], r"evaluation.gap_samples=\[100, -5\] is not valid: .*not -5"),
])
def test_bad_within_task_keys_are_one_line_errors(key, value, message):
    with pytest.raises(FifError, match=message):
        EvaluationOptions.from_block({key: value}, "evaluation")


def test_a_bad_key_fails_before_any_data_is_read(registry, tmp_path):
    with pytest.raises(FifError, match="evaluation.ka_datasets='all' is not valid"):
        run(registry, tmp_path, "bad", "evaluation.ka_datasets=all")
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------------------- the stability gap
def test_points_inside_tasks_are_recorded_and_change_nothing_else(runs):
    gap, plain = runs["gap"], runs["plain"]
    within = gap["within_task"]
    assert [(w["task"], w["step"], w["samples_in_task"], w["samples_seen"]) for w in within] == [
        (1, 2, 64, 64), (1, 4, 128, 128), (2, 2, 64, 256), (2, 4, 128, 320)]
    assert all(w["subset_evaluation"] and w["seconds"] > 0 for w in within)
    assert set(within[0]["per_dataset"]) == {"sprites2d", "counting", "primshapes"}
    for w in within:  # A_KA over the streamed datasets, A_ZS over the held-out one
        assert w["A_KA"] == statistics.fmean([w["per_dataset"]["sprites2d"], w["per_dataset"]["counting"]])
        assert w["A_ZS"] == w["per_dataset"]["primshapes"]
    for task in gap["tasks"]:
        assert task["within_eval_seconds"] == pytest.approx(sum(w["seconds"] for w in within
                                                                if w["task"] == task["task"]))
    # evaluating inside a task draws no random number and changes no weight: the same run without them
    assert without_timing({k: v for k, v in gap.items() if k not in ("within_task", "config")}) == \
        without_timing({k: v for k, v in plain.items() if k != "config"})
    assert "within_task" not in plain


def test_points_inside_tasks_reach_the_event_log_and_the_trackers(runs):
    events = [json.loads(line) for line in (runs["folder"] / "gap" / "events.jsonl").read_text().splitlines()]
    within = [e for e in events if e["event"] == "within"]
    assert [(e["task"], e["step"], e["samples_seen"]) for e in within] == [(1, 2, 64), (1, 4, 128), (2, 2, 256),
                                                                          (2, 4, 320)]
    assert [e["A_KA"] for e in within] == [w["A_KA"] for w in runs["gap"]["within_task"]]
    scalars = {s.tag: (s.value, s.step) for s in ScalarMapper().map("within", within[2])}
    assert scalars["within/A_KA"] == (within[2]["A_KA"], 256)
    assert scalars["within/dataset/primshapes"] == (within[2]["per_dataset"]["primshapes"], 256)
    assert scalars["train/samples_seen"] == (256.0, 256)


def test_a_kill_between_two_points_inside_a_task_resumes_bit_identically(registry, runs, tmp_path):
    """Checkpoints after every step; killed after step 3 of task 1 (after its first inner point, before
    the second), then after step 2 of task 2 (its first inner point is in that checkpoint)."""
    overrides = tiny(registry, tmp_path, "gap", *GAP, "log.checkpoint_every_steps=1")
    assert killed(first := fif_run(overrides, kill_at=3)), first.stderr
    assert [w["step"] for w in RunResults.read(tmp_path / "gap").within_task] == [2]
    assert killed(second := fif_run(overrides + ["log.resume=true"], kill_at=8)), second.stderr
    result = fif_run(overrides + ["log.resume=true"])
    assert result.returncode == 0, result.stderr
    resumed = results_of(tmp_path / "gap")
    assert without_timing({k: v for k, v in resumed.items() if k != "config"}) == \
        without_timing({k: v for k, v in runs["gap"].items() if k != "config"})


# ---------------------------------------------------------------------------- forgetting, transfer, masks
def test_transfer_metrics_follow_their_formulas():
    zero = {"a": 10.0, "b": 20.0, "z": 70.0}
    tasks = [{"a": 40.0, "b": 25.0, "z": 72.0}, {"a": 35.0, "b": 50.0, "z": 60.0}, {"a": 30.0, "b": 45.0, "z": 65.0}]
    out = transfer_metrics(zero, tasks, [["a"], ["b", "a"], ["b"]], held_out=["z"])
    # a: brought by tasks 1-2, best before the end 40 (task 1), final 30; BWT = 30 - a after task 2 (35)
    assert out["per_dataset"]["a"] == {"first_task": 1, "last_task": 2, "forgetting": 10.0, "backward_transfer": -5.0}
    # b: tasks 2-3; brought by the last task: no backward transfer; forgetting = 50 - 45
    assert out["per_dataset"]["b"] == {"first_task": 2, "last_task": 3, "forgetting": 5.0, "backward_transfer": None}
    assert out["per_dataset"]["z"] == {"forgetting": 72.0 - 65.0}  # best of zero-shot, tasks 1..2
    assert out["forgetting"] == 7.5 and out["backward_transfer"] == -5.0 and out["forgetting_zs"] == 7.0


def test_results_hold_forgetting_and_backward_transfer_of_the_run(runs):
    gap = runs["gap"]
    assert gap["task_datasets"] == [["sprites2d"], ["sprites2d", "counting"]]
    scores = [t["per_dataset"] for t in gap["tasks"]]
    transfer = gap["transfer"]
    sprites = transfer["per_dataset"]["sprites2d"]
    assert sprites["forgetting"] == scores[0]["sprites2d"] - scores[1]["sprites2d"]  # only task 1 is before the end
    assert sprites["backward_transfer"] is None  # the last task brings sprites2d too
    assert transfer["per_dataset"]["counting"]["forgetting"] is None  # only the last task brings it
    held = max(gap["zero_shot"]["per_dataset"]["primshapes"], scores[0]["primshapes"]) - scores[1]["primshapes"]
    assert transfer["forgetting_zs"] == transfer["per_dataset"]["primshapes"]["forgetting"] == held


def test_task_masked_accuracy_scores_each_image_among_its_tasks_classes():
    classes = torch.eye(4)  # class c's embedding is the unit vector e_c
    images = torch.tensor([[0.1, 0.0, 0.9, 0.0],   # class 0 (task 0), looks most like class 2 (task 1)
                           [0.0, 0.8, 0.0, 0.2],   # class 1 (task 0), right anyway
                           [0.0, 0.0, 0.3, 0.7],   # class 2 (task 1), confused with class 3 (same task)
                           [0.5, 0.0, 0.0, 0.4]])  # class 3 (task 1), looks like class 0 (task 0)
    targets = torch.tensor([0, 1, 2, 3])
    assert (images @ classes.T).argmax(-1).tolist() == [2, 1, 3, 0]  # plain top-1: 1 of 4
    assert task_masked_accuracy(images, classes, targets, [0, 0, 1, 1]) == 75.0  # only the class-2 image stays wrong
    # classes 2 and 3 brought by no task: their images are left out, the other two are right among classes 0-1
    assert task_masked_accuracy(images, classes, targets, [0, 0, None, None]) == 100.0
    assert task_masked_accuracy(images, classes, targets, [None] * 4) is None


def test_runs_record_task_masked_accuracy_of_the_streamed_classification_sets(runs):
    final = runs["gap"]["final"]
    details = final["details"]
    assert "task_masked_top1" not in details["primshapes"]  # held out: no task brought its classes
    for name in ("sprites2d", "counting"):  # masking can only turn wrong answers right (top1 is a float32 mean)
        assert details[name]["task_masked_top1"] >= details[name]["top1"] - 1e-4
    assert final["A_KA_task_masked"] == statistics.fmean(details[n]["task_masked_top1"] for n in ("sprites2d",
                                                                                                 "counting"))
    assert runs["gap"]["transfer"]["task_masked_accuracy"] == final["A_KA_task_masked"]


# ---------------------------------------------------------------------------- which datasets A_KA averages
def test_a_ka_averages_over_the_streamed_datasets_unless_told_the_registry(registry, tmp_path):
    one = ("experiment.dataset.name=[SPRITES2D]", "experiment.task.num=1", "experiment.task.n_samples=64")
    stream = run(registry, tmp_path, "stream", *one)
    whole = run(registry, tmp_path, "registry", *one, "evaluation.ka_datasets=registry")
    assert stream["knowledge_datasets"] == ["sprites2d"] and stream["ka_datasets"] == "stream"
    assert whole["knowledge_datasets"] == ["sprites2d", "counting"]
    for point in ("zero_shot", "final"):
        scores = stream[point]["per_dataset"]
        assert scores == whole[point]["per_dataset"]  # the same model and the same sets: only the average differs
        assert stream[point]["A_KA"] == scores["sprites2d"]
        assert whole[point]["A_KA"] == statistics.fmean([scores["sprites2d"], scores["counting"]])
        assert stream[point]["A_ZS"] == whole[point]["A_ZS"] == scores["primshapes"]


def test_fif_results_shows_the_transfer_numbers(runs, capsys):
    from fif.cli import main

    assert main(["results", str(runs["folder"] / "gap"), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    transfer = runs["gap"]["transfer"]
    assert [row[k] for k in ("forgetting", "forgetting_zs", "task_masked_accuracy")] == \
        [transfer[k] for k in ("forgetting", "forgetting_zs", "task_masked_accuracy")]
    assert row["backward_transfer"] is None  # no dataset has a task after its last one
    assert main(["results", str(runs["folder"] / "gap")]) == 0
    table = capsys.readouterr().out
    assert "forgetting and transfer" in table and f"{transfer['forgetting']:.2f}" in table
