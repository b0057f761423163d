import json
from pathlib import Path

import numpy as np
import pytest

from fif.config.blocks import check_run_options
from fif.config import compose
from fif.data.format.registry import builtin_registry, resolve_registry
from fif.data.format.streams import (check_stream, chunk_into_tasks, make_tasks, read_stream, reshuffle, resolve_stream,
                              shipped_streams, tasks_per_dataset, write_stream)
from fif.errors import FifError


def test_chunking_gives_the_first_remainder_tasks_one_more_class():
    entries = [("D", str(i)) for i in range(23)]
    tasks = chunk_into_tasks(entries, 5)
    assert [len(t) for t in tasks] == [5, 5, 5, 4, 4]
    assert [e for t in tasks for e in t] == entries  # contiguous, order kept


def test_chunking_rejects_more_tasks_than_classes():
    with pytest.raises(FifError, match="experiment.task.num=11"):
        chunk_into_tasks([("D", "a")] * 10, 11)


def test_every_reference_stream_parses(reference_dir):
    streams = sorted((reference_dir / "streams").glob("*.json"))
    assert streams
    for path in streams:
        entries = read_stream(path)
        assert entries and all(folder and classname for folder, classname in entries)
    main = read_stream(reference_dir / "streams" / "random_sequence_1.json")
    assert len(main) == 18381
    assert len({folder for folder, _ in main}) == 41


def test_round_trip_and_malformed_entries(tmp_path):
    entries = [("SWATCHES", "teal"), ("GLYPHS", "k")]
    write_stream(tmp_path / "s.json", entries)
    assert read_stream(tmp_path / "s.json") == entries
    (tmp_path / "bad.json").write_text(json.dumps(["SWATCHES+++teal", "no separator"]))
    with pytest.raises(FifError, match="entry 1"):
        read_stream(tmp_path / "bad.json")


def test_shipped_default_stream_covers_every_adaptation_class_once():
    from fif.data.mini.worlds import DATASETS

    entries = read_stream(resolve_stream("mini_random_1"))
    expected = {(d.folder, c) for d in DATASETS if d.role == "adaptation" for c in d.classnames}
    assert len(entries) == len(expected) == len(set(entries))
    assert set(entries) == expected
    assert "mini_dataset_incremental" in shipped_streams()


def test_unknown_stream_name_is_a_clear_error():
    with pytest.raises(FifError, match="no_such_stream"):
        resolve_stream("no_such_stream")


# --- streams against the registry, and the task-making of a run -------------------------------


def test_random_sequence_1_is_18381_classes_of_the_41_adaptation_datasets(reference_dir):
    registry = builtin_registry()
    entries = check_stream(read_stream(reference_dir / "streams" / "random_sequence_1.json"), registry, "rs1")
    adaptation = {s.folder for s in registry.values() if s.role == "adaptation"}
    assert len(entries) == len(set(entries)) == 18381
    assert {folder for folder, _ in entries} == adaptation and len(adaptation) == 41


def test_every_reference_stream_checks_against_the_registry(reference_dir):
    registry = builtin_registry()
    adaptation = {s.folder for s in registry.values() if s.role == "adaptation"}
    for path in sorted((reference_dir / "streams").glob("*.json")):
        entries = check_stream(read_stream(path), registry, str(path))
        assert {folder for folder, _ in entries} <= adaptation


def test_per_dataset_streams_map_handles_to_folders_and_reject_held_out_datasets(reference_dir):
    registry = builtin_registry()
    accepted, rejected = [], []
    for path in sorted((reference_dir / "streams" / "datasets").glob("*.json")):
        entries = read_stream(path)  # every one parses
        spec = registry[path.stem]
        if spec.role == "adaptation":
            checked = check_stream(entries, registry, str(path))
            assert {folder for folder, _ in checked} == {spec.folder}  # cifar100+++x -> CIFAR100+++x
            assert [c for _, c in checked] == [c for _, c in entries]
            accepted.append(path.stem)
        else:
            with pytest.raises(FifError, match=f"entry 0 .*{spec.folder} is (an evaluation-only|not an adaptation)"):
                check_stream(entries, registry, str(path))
            rejected.append(path.stem)
    assert len(accepted) == 41 and len(rejected) == 24  # 20 held-out classification sets + 4 extra modules


def test_held_out_and_repeated_entries_are_rejected_naming_the_entry(tmp_path):
    registry = builtin_registry()
    (tmp_path / "s.json").write_text(json.dumps(["CIFAR100+++apple", "imagenet+++tench"]))
    with pytest.raises(FifError, match=r"s.json, entry 1 \(imagenet\+\+\+tench\): IMAGENET is an evaluation-only"):
        check_stream(read_stream(tmp_path / "s.json"), registry, str(tmp_path / "s.json"))
    with pytest.raises(FifError, match=r"entry 2 \(CIFAR100\+\+\+apple\) repeats entry 0"):
        check_stream([("CIFAR100", "apple"), ("DTD", "banded"), ("cifar100", "apple")], registry, "x")


def test_reshuffle_is_the_reference_numpy_shuffle(reference_dir):
    entries = read_stream(reference_dir / "streams" / "debug_sequence.json")
    strings = [f"{d}+++{c}" for d, c in entries]
    np.random.seed(3)
    np.random.shuffle(strings)  # what the reference does with sequence_reshuffle
    assert [f"{d}+++{c}" for d, c in reshuffle(entries, 3)] == strings
    assert reshuffle(entries, 3) != entries and sorted(reshuffle(entries, 3)) == sorted(entries)


def test_tasks_per_dataset_in_order_of_first_appearance():
    entries = [("B", "1"), ("A", "1"), ("B", "2"), ("C", "1"), ("A", "2")]
    assert tasks_per_dataset(entries) == [[("B", "1"), ("B", "2")], [("A", "1"), ("A", "2")], [("C", "1")]]


def _tasks(root: Path, *overrides: str):
    cfg = compose(list(overrides))
    return make_tasks(check_run_options(cfg).experiment, root, resolve_registry(cfg.experiment.dataset.registry, root))


def test_make_tasks_from_the_default_sequence(mini_root):
    entries, tasks = _tasks(mini_root, "experiment.task.num=7")
    assert len(entries) == 100 and [len(t) for t in tasks] == [15] * 2 + [14] * 5
    assert [e for t in tasks for e in t] == entries


def test_dataset_incremental_gives_one_task_per_dataset(mini_root):
    entries, tasks = _tasks(mini_root, "experiment.task.dataset_incremental=true", "experiment.task.num=3")
    first_seen = list(dict.fromkeys(folder for folder, _ in entries))
    assert len(tasks) == 8 and [t[0][0] for t in tasks] == first_seen
    assert all(len({folder for folder, _ in t}) == 1 for t in tasks)
    assert sorted(e for t in tasks for e in t) == sorted(entries)


def test_streaming_over_dataset_names_takes_classes_from_the_data(mini_root):
    from fif.data.mini.worlds import DATASETS

    swatches = next(d for d in DATASETS if d.folder == "SWATCHES")
    glyphs = next(d for d in DATASETS if d.folder == "GLYPHS")
    base = ["experiment.dataset.sequence=null", "experiment.dataset.name=[SWATCHES,glyphs]"]
    entries, tasks = _tasks(mini_root, *base, "experiment.task.dataset_incremental=true")
    assert entries == [("SWATCHES", c) for c in swatches.classnames] + [("GLYPHS", c) for c in glyphs.classnames]
    assert [len(t) for t in tasks] == [14, 20]
    shuffled, _ = _tasks(mini_root, *base, "experiment.dataset.sequence_reshuffle=true", "experiment.task.num=4")
    again, _ = _tasks(mini_root, *base, "experiment.dataset.sequence_reshuffle=true", "experiment.task.num=4")
    other, _ = _tasks(mini_root, *base, "experiment.dataset.sequence_reshuffle=true", "experiment.seed=1")
    assert shuffled == again != entries and sorted(shuffled) == sorted(entries) and other != shuffled


def test_held_out_datasets_cannot_be_streamed_by_name(mini_root):
    with pytest.raises(FifError, match="experiment.dataset.name: PRIMSHAPES is an evaluation-only dataset"):
        _tasks(mini_root, "experiment.dataset.sequence=null", "experiment.dataset.name=[SWATCHES,PRIMSHAPES]")
    with pytest.raises(FifError, match="'NOPE' is not in the dataset registry"):
        _tasks(mini_root, "experiment.dataset.sequence=null", "experiment.dataset.name=NOPE")


def test_a_stream_needs_exactly_one_source(mini_root):
    with pytest.raises(FifError, match="no stream: set experiment.dataset.sequence"):
        _tasks(mini_root, "experiment.dataset.sequence=null")
    with pytest.raises(FifError, match="are both set"):
        _tasks(mini_root, "experiment.dataset.name=[SWATCHES]")


def test_a_run_streams_dataset_incrementally_over_named_datasets(mini_root, tmp_path):
    from fif.train.run import run_experiment

    cfg = compose([f"log.folder={tmp_path}", "log.name=di", "log.progress=false", "experiment.dataset.sequence=null",
                   "experiment.dataset.name=[SWATCHES,GLYPHS]", "experiment.task.dataset_incremental=true",
                   "experiment.task.n_samples=256"])
    results = run_experiment(cfg, echo=lambda *_: None).results
    assert [t["classes"] for t in results["tasks"]] == [14, 20]
    assert results["status"] == "complete"
