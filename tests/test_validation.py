"""Validation mode (validation splits carved from train splits) and subset evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fif.config import compose
from fif.data.samples.catalogue import TrainingCatalogue
from fif.data.format.fif_format import ADAPTATION, EVALUATION, read_split
from fif.data.format.registry import resolve_registry
from fif.data.format.validation import build_validation, carve, subset_split
from fif.eval.subset import balanced_counts, balanced_subset, subset_size
from fif.train.run import run_experiment

SHORT = ["experiment.task.num=2", "experiment.task.n_samples=128", "log.progress=false",
         "experiment.dataset.data_mixture.update=1.0", "experiment.dataset.data_mixture.buffer=0.0",
         "experiment.dataset.data_mixture.pretraining=0.0"]


def _targets(sizes: list[int]) -> np.ndarray:
    return np.concatenate([np.full(n, c) for c, n in enumerate(sizes)])


# ----------------------------------------------------------------------------- carving
def test_carve_is_disjoint_per_class_and_deterministic():
    targets = np.random.default_rng(5).permutation(_targets([10, 7, 1, 25, 3]))
    first = carve(targets, 0.8, seed=0, name="cars")
    assert np.intersect1d(first.train, first.validation).size == 0
    assert np.array_equal(np.sort(np.concatenate([first.train, first.validation])), np.arange(len(targets)))
    for c, n in enumerate([10, 7, 1, 25, 3]):  # int(n * 0.8) per class train, at least one
        assert int(np.sum(targets[first.train] == c)) == max(int(n * 0.8), 1)
    again = carve(targets, 0.8, seed=0, name="cars")
    assert np.array_equal(again.train, first.train) and np.array_equal(again.validation, first.validation)
    assert not np.array_equal(carve(targets, 0.8, seed=1, name="cars").validation, first.validation)
    assert not np.array_equal(carve(targets, 0.8, seed=0, name="pets").validation, first.validation)


def test_carve_without_classes_splits_the_items():
    items = np.arange(50)  # retrieval: every item its own target
    carved = carve(items, 0.8, seed=0, name="coco")
    assert len(carved.train) == 40 and len(carved.validation) == 10
    assert np.intersect1d(carved.train, carved.validation).size == 0


def test_subset_split_keeps_the_chosen_samples(mini_root):
    registry = resolve_registry(None, mini_root)
    train = read_split(mini_root, registry["digits"], "train")
    chosen = [3, 17, 400, 999]
    part = subset_split(train, chosen, "train[x]")
    assert len(part) == 4 and list(part.targets) == [int(train.targets[i]) for i in chosen]
    assert list(part.keys) == [train.keys[i] for i in chosen]
    assert [part.captions[j] for j in range(4)] == [train.captions[i] for i in chosen]
    assert part.classnames == train.classnames
    assert np.array_equal(np.asarray(part.image(1)), np.asarray(train.image(17)))


def test_validation_plan_on_the_mini_benchmark(mini_root):
    registry = resolve_registry(None, mini_root)
    specs = [s for s in registry.values() if s.role in (ADAPTATION, EVALUATION)]
    plan = build_validation(mini_root, specs, 0.8, seed=0)
    adaptation = [s.name for s in specs if s.role == ADAPTATION]
    evaluation = [s.name for s in specs if s.role == EVALUATION]
    assert sorted(plan.eval_splits) == sorted(adaptation)
    assert plan.excluded == evaluation and plan.test_kept == []  # no train split to carve: left out
    assert [s.name for s in plan.keep(specs)] == adaptation
    for name in adaptation:
        train = read_split(mini_root, registry[name], "train")
        validation_keys = set(plan.eval_splits[name].keys)
        train_keys = set(plan.train_part(train).keys)
        assert not validation_keys & train_keys and validation_keys | train_keys == set(train.keys)
        assert len(validation_keys) == sum(n - int(n * 0.8) for n in np.bincount(train.targets))
    record = plan.record()
    assert record["sizes"]["digits"] == {"train": 960, "validation": 240}
    kept = build_validation(mini_root, specs, 0.8, seed=0, fallback="test")
    assert kept.test_kept == evaluation and kept.excluded == [] and "TEST split" in kept.warnings()[-1]


def test_training_side_never_holds_validation_samples(mini_root):
    registry = resolve_registry(None, mini_root)
    specs = [s for s in registry.values() if s.role == ADAPTATION]
    plan = build_validation(mini_root, specs, 0.8, seed=0)
    entries = [(s.folder, c) for s in specs for c in read_split(mini_root, s, "train").classnames]
    catalogue = TrainingCatalogue(mini_root, registry, entries, train_part=plan.train_part)
    streamed = {(split.spec.name, key) for split in catalogue.splits for key in split.keys}
    held_out = {(name, key) for name, split in plan.eval_splits.items() for key in split.keys}
    assert len(streamed) == len(catalogue) == sum(r["train"] for r in plan.record()["sizes"].values())
    assert not streamed & held_out
    every_class = catalogue.task_indices(entries)  # every class still has training samples
    assert len(every_class) == len(catalogue)


# ----------------------------------------------------------------------------- subsets
@pytest.mark.parametrize("samples, classes, fraction, expected", [
    (10_000, 100, 0.1, 1000),   # floor(f N)
    (10_000, 100, 0.01, 300),   # at least 300
    (10_000, 1000, 0.01, 2000),  # at least 2 per class
    (250, 10, 0.5, 250),        # never more than N
])
def test_subset_size_formula(samples, classes, fraction, expected):
    assert subset_size(samples, classes, fraction) == expected == min(
        samples, max(2 * classes, 300, math.floor(fraction * samples)))


def test_subsets_are_class_balanced_and_fixed_by_seed():
    sizes = [200, 150, 5, 90, 300, 40]
    targets = np.random.default_rng(1).permutation(_targets(sizes))
    chosen = balanced_subset(targets, 0.1, seed=0, name="food")
    assert len(chosen) == subset_size(len(targets), len(sizes), 0.1) == 300
    assert len(set(chosen.tolist())) == len(chosen)
    per_class = np.bincount(targets[chosen], minlength=len(sizes))
    assert per_class[2] == 5  # a small class gives all it has ...
    full = [c for c, n in enumerate(sizes) if per_class[c] < n]
    assert max(per_class[full]) - min(per_class[full]) <= 1  # ... the rest are spread evenly
    assert np.array_equal(balanced_subset(targets, 0.1, seed=0, name="food"), chosen)
    assert not np.array_equal(balanced_subset(targets, 0.1, seed=1, name="food"), chosen)
    assert np.array_equal(balanced_subset(np.arange(500), 0.1, 0, "coco"), np.arange(500))  # retrieval: full
    assert balanced_counts([3, 3], 10, np.random.default_rng(0)) == [3, 3]


# ----------------------------------------------------------------------------- runs
def _run(tmp_path, name, *overrides):
    cfg = compose([f"log.folder={tmp_path}", f"log.name={name}", *SHORT, *overrides])
    lines: list[str] = []
    return run_experiment(cfg, echo=lines.append).results, lines


def test_validation_mode_run_end_to_end(tmp_path, mini_root):
    results, lines = _run(tmp_path, "val", "experiment.dataset.validation_mode=true")
    assert results["status"] == "complete" and results["validation_mode"] is True
    assert results["evaluation_split"] == "validation"
    assert lines[0].startswith("VALIDATION MODE") and "left out of A_ZS" in lines[1]
    record = results["validation"]
    assert record["train_val_split"] == 0.8 and record["sizes"]["digits"] == {"train": 960, "validation": 240}
    assert record["fallback"] == "exclude" and len(record["excluded"]) == 6 and record["test_split_used"] == []
    assert sorted(results["final"]["per_dataset"]) == sorted(record["sizes"])  # the 8 carved datasets only
    assert math.isnan(results["final"]["A_ZS"]) and math.isfinite(results["final"]["A_KA"])
    assert any(f"{sum(v['train'] for v in record['sizes'].values())} training samples" in line for line in lines)


@pytest.fixture(scope="module")
def subset_run(tmp_path_factory, mini_root):
    folder = tmp_path_factory.mktemp("subset_runs")
    return folder, _run(folder, "subset", "evaluation.validate_on_subset=0.1")[0]


def test_subset_evaluation_run_end_to_end(subset_run):
    _, results = subset_run
    assert results["status"] == "complete"
    assert [t["subset_evaluation"] for t in results["tasks"]] == [True, False]  # the last task: full sets
    sizes = results["evaluation_subsets"]["sizes"]
    assert sizes["digits"] == {"subset": 300, "full": 500}  # max(2*10, 300, 50) of 500 test images
    assert sizes["captions"]["subset"] == sizes["captions"]["full"]  # retrieval: always full
    assert all(v["subset"] == min(v["full"], 300) for k, v in sizes.items() if k != "captions")  # f N < 300 here
    assert results["validation_mode"] is False and results["evaluation_split"] == "test"
    for point in (results["zero_shot_subset"], results["tasks"][0]):  # digits: k of 300 images right
        assert point["per_dataset"]["digits"] * 3 == pytest.approx(round(point["per_dataset"]["digits"] * 3), abs=1e-4)


@pytest.mark.slow
def test_subset_run_scores_zero_shot_and_last_task_in_full(subset_run):
    folder, results = subset_run
    full, _ = _run(folder, "full")
    assert results["zero_shot"] == full["zero_shot"]  # zero-shot: full sets
    assert results["final"] == full["final"]  # and after the last task
    first = results["tasks"][0]["per_dataset"]
    assert first["captions"] == full["tasks"][0]["per_dataset"]["captions"]  # full set, same model


def test_subset_scores_equal_scoring_the_subset_alone(mini_root):
    import torch

    from fif.eval.suite import EvalSuite
    from fif.models.backbone import build_backbone

    registry = resolve_registry(None, mini_root)
    backbone, spec, device = build_backbone("mini_clip"), registry["primshapes"], torch.device("cpu")
    test = read_split(mini_root, spec, "test")
    chosen = balanced_subset(test.targets, 0.1, 0, spec.name)
    assert len(chosen) == 300 < len(test)
    for preload in (True, False):
        suite = EvalSuite(mini_root, [spec], backbone.eval_transform, preload=preload)
        on_subset = suite.evaluate(backbone.model, backbone.tokenizer, device, {spec.name: chosen})[spec.name]
        alone = EvalSuite(mini_root, [spec], backbone.eval_transform, preload=preload,
                          splits={spec.name: subset_split(test, chosen, "test[subset]")})
        assert on_subset == alone.evaluate(backbone.model, backbone.tokenizer, device)[spec.name]
        assert on_subset.score * 3 == pytest.approx(round(on_subset.score * 3), abs=1e-4)  # k of 300 right
        assert on_subset != suite.evaluate(backbone.model, backbone.tokenizer, device)[spec.name]


@pytest.mark.parametrize("override, culprit", [
    ("experiment.dataset.train_val_split=1.5", "experiment.dataset.train_val_split=1.5"),
    ("experiment.dataset.validation_fallback=maybe", "experiment.dataset.validation_fallback='maybe'"),
    ("evaluation.validate_on_subset=0", "evaluation.validate_on_subset=0"),
    ("experiment.scheduler.name=cosine", "experiment.scheduler.name='cosine'"),
])
def test_bad_validation_or_subset_input_is_one_line(tmp_path, capsys, override, culprit):
    from fif.cli import main

    code = main(["run", f"log.folder={tmp_path}", "experiment.dataset.validation_mode=true", override])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and culprit in err[0]
    assert not list(tmp_path.rglob("results.json"))
