"""The built-in FoMo-in-Flux registry against the reference's datasets.json, and registry resolution."""

from __future__ import annotations

import json
import shutil

import pytest

from fif.data.format.fif_format import load_registry
from fif.data.format.registry import BUILTIN, builtin_registry, find_dataset, resolve_registry
from fif.errors import FifError


def test_builtin_registry_matches_every_benchmark_dataset_of_the_reference(reference_dir):
    reference = json.loads((reference_dir / "datasets.json").read_text())
    ours = builtin_registry()
    benchmark = {n: e for n, e in reference.items() if e["role_in_default_benchmark"] != "not_in_benchmark"}
    assert len(benchmark) == 63
    assert sum(s.role == "adaptation" for s in ours.values()) == 41
    assert sum(s.role == "evaluation" for s in ours.values()) == 22
    for name, entry in reference.items():
        spec = ours[name]
        # datasets.json has folder null for imagenet; the reference's loader reads ROOT/IMAGENET
        assert spec.folder == (entry["folder"] or "IMAGENET"), name
        assert (spec.kind, spec.role, spec.primer) == (entry["type"], entry["role_in_default_benchmark"],
                                                       entry["primer"]), name
    assert set(ours) == set(reference)  # 63 + the 4 not_in_benchmark modules, marked as such
    assert {n for n, s in ours.items() if s.role == "not_in_benchmark"} == {
        "medmnist_derma", "medmnist_organc", "medmnist_organs", "retinopathy"}


def test_every_classification_folder_has_the_reference_classnames_file(reference_dir):
    files = {p.name for p in (reference_dir / "classnames").glob("*_classnames.json")}
    for spec in builtin_registry().values():
        if spec.kind == "classification" or spec.name == "fscoco":
            assert f"{spec.folder}_classnames.json" in files, spec.name


def test_splits_follow_the_reference_loaders():
    ours = builtin_registry()
    assert all(s.splits == ("train", "test") for s in ours.values() if s.role == "adaptation")
    assert all(s.splits == ("test",) for s in ours.values() if s.role == "evaluation")
    assert ours["mscoco"].splits == ("test",) and ours["cifar100"].splits == ("train", "test")


def test_null_registry_uses_the_root_file_when_there_is_one(mini_root, tmp_path):
    from_root = resolve_registry(None, mini_root)
    assert len(from_root) == 14 and "sprites2d" in from_root  # the mini benchmark's own datasets.json
    assert resolve_registry(None, tmp_path) == builtin_registry()  # no datasets.json: the FiF registry
    assert resolve_registry(BUILTIN, mini_root) == builtin_registry()  # 'fif' wins over ROOT/datasets.json
    assert len(resolve_registry(str(mini_root / "datasets.json"), tmp_path)) == 14


def test_a_missing_registry_file_is_a_one_line_error(tmp_path):
    with pytest.raises(FifError, match="no_such.json: no such file"):
        resolve_registry(str(tmp_path / "no_such.json"), tmp_path)


def test_reference_datasets_json_loads_with_imagenet_folder_filled_in(reference_dir, tmp_path):
    shutil.copy(reference_dir / "datasets.json", tmp_path / "datasets.json")
    registry = resolve_registry(None, tmp_path)
    assert registry["imagenet"].folder == "IMAGENET"
    assert registry == builtin_registry()
    (tmp_path / "other.json").write_text(json.dumps({"mystery": {"folder": None, "primer": "{}",
                                                                 "type": "classification",
                                                                 "role_in_default_benchmark": "evaluation"}}))
    with pytest.raises(FifError, match="'mystery' has no 'folder'"):
        load_registry(tmp_path / "other.json")


def test_find_dataset_by_handle_folder_or_case_variant():
    registry = builtin_registry()
    assert find_dataset(registry, "cifar100").folder == "CIFAR100"
    assert find_dataset(registry, "CIFAR100").name == "cifar100"
    assert find_dataset(registry, "EUROSAT").folder == "EuroSAT"  # the reference's stream alias
    assert find_dataset(registry, "FOOD101").folder == "Food101"
    assert find_dataset(registry, "snake_clef").folder == "SNAKECLEF"
    with pytest.raises(FifError, match="'NOPE' is not in the dataset registry"):
        find_dataset(registry, "NOPE")
