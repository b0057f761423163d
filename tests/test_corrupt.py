"""Corrupt samples: a one-line error naming the file by default, skipped (and counted) on request."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from bad_input_helpers import private_mini_root, truncate_file
from fif.config import compose
from fif.data.samples.batches import BatchBuilder
from fif.data.samples.catalogue import TrainingCatalogue
from fif.data.format.fif_format import EVALUATION, load_registry
from fif.data.samples.mixture import BatchPlan, MixtureSampler
from fif.data.samples.pool import PoolStream
from fif.data.format.streams import chunk_into_tasks, read_stream, resolve_stream
from fif.errors import CorruptSampleError, FifError
from fif.models.backbone import build_backbone
from fif.train.run import run_experiment

RUN = ["experiment.task.num=2", "experiment.task.n_samples=256", "log.progress=false"]  # 2 steps of 128 per task


def _stream_tasks(root: Path) -> tuple[TrainingCatalogue, list]:
    entries = read_stream(resolve_stream("mini_random_1"))
    return TrainingCatalogue(root, load_registry(root / "datasets.json"), entries), chunk_into_tasks(entries, 2)


def _path_of(catalogue: TrainingCatalogue, index: int) -> Path:
    split, local = catalogue._locate(index)
    return Path(split.where(local))


def _first_drawn(catalogue: TrainingCatalogue, classes: list, task: int) -> int:
    """The sample a seed-0 run draws first in ``task`` (the FLOP probe and step 0 both take it)."""
    plan = MixtureSampler(0, task, catalogue.task_indices(classes), [], {"update": 1, "buffer": 0, "pretraining": 0})
    return plan.plan(0).update[0]


def _first_test_image(root: Path) -> tuple[str, Path, int]:
    """(dataset name, file, test-set size) of a held-out classification dataset's first test image."""
    registry = load_registry(root / "datasets.json")
    name, spec = next((n, s) for n, s in registry.items() if s.role == EVALUATION and s.kind == "classification")
    info = json.loads((root / "00_info" / f"{spec.folder}_test.json").read_text())
    return name, root / spec.folder / next(iter(info)), len(info)


def _run(tmp_path: Path, root: Path, mini_root: Path, *overrides: str, echo=lambda *_: None) -> dict:
    cfg = compose([f"log.folder={tmp_path / 'runs'}", "log.name=run", *RUN, f"experiment.dataset.root={root}",
                   f"experiment.dataset.pretraining_pool={mini_root / 'pool'}", "experiment.dataset.pool_shards=4",
                   *overrides])
    return run_experiment(cfg, echo=echo).results


@pytest.fixture()
def corrupt_train(tmp_path, mini_root) -> tuple[Path, Path]:
    root = private_mini_root(mini_root, tmp_path / "root")
    catalogue, tasks = _stream_tasks(root)
    path = _path_of(catalogue, _first_drawn(catalogue, tasks[0], 0))
    truncate_file(path)
    return root, path


@pytest.mark.parametrize("preload", ["true", "false"])
def test_a_corrupt_training_image_stops_the_run_with_one_line_naming_it(tmp_path, mini_root, corrupt_train, preload):
    root, path = corrupt_train
    with pytest.raises(CorruptSampleError) as error:
        _run(tmp_path, root, mini_root, f"experiment.dataset.preload={preload}")
    message = str(error.value)
    assert str(path) in message and "\n" not in message


@pytest.mark.parametrize("preload, workers", [("true", 0), ("false", 1)])
def test_a_corrupt_test_image_stops_the_run_with_one_line_naming_it(tmp_path, mini_root, preload, workers):
    root = private_mini_root(mini_root, tmp_path / "root")
    _, path, _ = _first_test_image(root)
    truncate_file(path)
    with pytest.raises(CorruptSampleError) as error:
        _run(tmp_path, root, mini_root, f"experiment.dataset.preload={preload}",
             f"experiment.dataset.num_workers={workers}")
    message = str(error.value)
    assert str(path) in message and "\n" not in message


@pytest.mark.parametrize("preload, workers", [("true", 0), ("false", 1)])
def test_with_skip_corrupt_the_run_completes_and_reports_what_it_skipped(tmp_path, mini_root, corrupt_train,
                                                                          preload, workers):
    root, train_path = corrupt_train
    dataset, test_path, test_size = _first_test_image(root)
    truncate_file(test_path)
    lines: list[str] = []
    results = _run(tmp_path, root, mini_root, "experiment.dataset.skip_corrupt=true",
                   f"experiment.dataset.preload={preload}",
                   f"experiment.dataset.num_workers={workers}", echo=lines.append)
    assert results["status"] == "complete"
    files = results["skipped_corrupt_files"]
    assert str(train_path) in files and str(test_path) in files
    assert files[str(train_path)] >= 1  # step 0 of task 1 drew it (the FLOP probe now uses synthetic inputs)
    assert files[str(test_path)] == 1  # a test image is left out once, not once per evaluation
    assert results["skipped_corrupt"] == sum(files.values()) >= 2
    assert any(line.startswith(f"skipped {results['skipped_corrupt']} corrupt samples in 2 files") for line in lines)
    for position, task in enumerate(results["tasks"], start=1):
        assert task["samples_seen"] == position * 2 * 128  # replaced samples keep every batch full
    # The held-out set is scored over its readable images: accuracy is a multiple of 100 / (size - 1).
    for point in [results["zero_shot"], *results["tasks"]]:
        correct = point["per_dataset"][dataset] * (test_size - 1) / 100
        assert abs(correct - round(correct)) < 1e-3  # float32 accuracy; over all images it would be off by >= 1/size


def test_replacements_come_from_the_same_source_and_repeat_exactly(tmp_path, mini_root):
    root = private_mini_root(mini_root, tmp_path / "root")
    catalogue, tasks = _stream_tasks(root)
    update, buffer = catalogue.task_indices(tasks[1]), catalogue.task_indices(tasks[0])
    bad_update, bad_buffer = update[5], buffer[7]
    for index in (bad_update, bad_buffer):
        truncate_file(_path_of(catalogue, index))
    plan = BatchPlan([bad_update, update[0]], [bad_buffer, buffer[0], bad_buffer], 0,
                     {"update": update, "buffer": buffer})
    backbone = build_backbone("mini_clip")
    batches, builders = [], []
    for _ in range(2):
        builders.append(BatchBuilder(catalogue, None, backbone.train_transform, backbone.tokenizer, seed=0,
                                     skip_corrupt=True))
        batches.append(builders[-1].build(plan, task=1, step=3))
    first, second = batches
    assert len(first) == 5 and first.sources == {"update": 2, "buffer": 3, "pretraining": 0}
    assert first.indices[0] in update and first.indices[0] != bad_update
    assert all(i in buffer and i != bad_buffer for i in (first.indices[2], first.indices[4]))
    assert first.indices[1] == update[0] and first.indices[3] == buffer[0]
    assert first.indices == second.indices
    assert torch.equal(first.images, second.images) and torch.equal(first.texts, second.texts)
    assert builders[0].skipped == {str(_path_of(catalogue, bad_update)): 1, str(_path_of(catalogue, bad_buffer)): 2}
    strict = BatchBuilder(catalogue, None, backbone.train_transform, backbone.tokenizer, seed=0)
    with pytest.raises(CorruptSampleError, match=str(_path_of(catalogue, bad_update))):
        strict.build(plan, task=1, step=3)


def _png(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _shard(path: Path, images: list[bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for key, data in enumerate(images):
            for ext, payload in (("png", data), ("txt", f"caption {key}".encode())):
                info = tarfile.TarInfo(f"{key:04d}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return path


def _pool_builder(shard: Path, skip_corrupt: bool) -> BatchBuilder:
    backbone = build_backbone("mini_clip")
    pool = PoolStream([shard], seed=0, shuffle_buffer=1)
    return BatchBuilder(None, pool, backbone.train_transform, backbone.tokenizer, seed=0, skip_corrupt=skip_corrupt)


def test_a_corrupt_pool_sample_is_a_one_line_error_or_skipped(tmp_path):
    good = [_png(c) for c in ("red", "green", "blue", "white")]
    shard = _shard(tmp_path / "shard-0.tar", [good[0], good[1][:40], good[2], good[3]])
    records = PoolStream([shard], seed=0, shuffle_buffer=1).take(4)  # the stream hands out undecoded records
    with pytest.raises(CorruptSampleError) as error:
        records[1].decode()
    assert f"{shard}:0001.png" in str(error.value) and "\n" not in str(error.value)
    assert [records[i].decode()[1] for i in (0, 2, 3)] == ["caption 0", "caption 2", "caption 3"]
    with pytest.raises(CorruptSampleError, match=f"{shard}:0001.png"):
        _pool_builder(shard, skip_corrupt=False).build(BatchPlan([], [], 4), task=0, step=0)
    # skip_corrupt: the corrupt slot gets another pool sample of the same batch (seeded by task/step/slot)
    builder = _pool_builder(shard, skip_corrupt=True)
    batch = builder.build(BatchPlan([], [], 4), task=0, step=0)
    again = _pool_builder(shard, skip_corrupt=True).build(BatchPlan([], [], 4), task=0, step=0)
    assert len(batch) == 4 and batch.sources["pretraining"] == 4
    assert torch.equal(batch.images, again.images) and torch.equal(batch.texts, again.texts)
    assert builder.skipped == {f"{shard}:0001.png": 1}
    assert builder.pool.state_dict()["consumed"] == 4  # the stream moved on by the batch, corrupt sample included
    broken = _shard(tmp_path / "shard-1.tar", [good[0][:40], good[1][:40]])
    with pytest.raises(FifError, match="no readable replacement for a corrupt pretraining pool sample of task 0"):
        _pool_builder(broken, skip_corrupt=True).build(BatchPlan([], [], 2), task=0, step=0)


def test_a_pool_sample_without_a_caption_is_named(tmp_path):
    shard = tmp_path / "shard-0.tar"
    with tarfile.open(shard, "w") as tar:
        info = tarfile.TarInfo("0000.png")
        data = _png("red")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(CorruptSampleError) as error:
        PoolStream([shard], seed=0).take(1)[0].decode()
    assert str(error.value) == (f"pretraining pool sample {shard}:0000 has no caption "
                                f"(expected a .txt/.caption/.json member)")
