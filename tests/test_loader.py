"""The parallel training input path: the batch of a step is the same tensors with 0, 1 or N workers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fif.config import compose
from fif.data.format.fif_format import load_registry
from fif.data.format.streams import chunk_into_tasks, read_stream, resolve_stream
from fif.data.samples.batches import Batch, BatchBuilder
from fif.data.samples.catalogue import TrainingCatalogue
from fif.data.samples.loader import LoaderSettings, resolve_workers, step_batches
from fif.data.samples.mixture import MixtureSampler
from fif.data.samples.pixels import split_transform
from fif.data.samples.pool import PoolStream
from fif.errors import CorruptSampleError, FifError
from fif.models.backbone import build_backbone
from fif.train.resume import without_timing
from fif.train.run import run_experiment

COUNTS = {"update": 6, "buffer": 4, "pretraining": 5}
STEPS = 5


def _root_with_corrupt_files(mini_root: Path, dest: Path) -> tuple[Path, TrainingCatalogue, list]:
    """A hard-linked copy of the mini benchmark whose first update and buffer images of step 0 are truncated."""
    shutil.copytree(mini_root, dest, ignore=shutil.ignore_patterns("pool"), copy_function=os.link)
    entries = read_stream(resolve_stream("mini_random_1"))
    catalogue = TrainingCatalogue(dest, load_registry(dest / "datasets.json"), entries)
    tasks = chunk_into_tasks(entries, 10)
    first = MixtureSampler(0, 1, catalogue.task_indices(tasks[1]), catalogue.task_indices(tasks[0]), COUNTS).plan(0)
    for index in (first.update[0], first.buffer[0]):  # step 0 draws both
        split, local = catalogue._locate(index)
        path = Path(split.where(local))
        data = path.read_bytes()
        path.unlink()
        path.write_bytes(data[: len(data) // 3])
    return dest, catalogue, tasks


def _mini_stream(mini_root: Path) -> tuple[TrainingCatalogue, list, list[Path]]:
    """The mini benchmark's training catalogue, its stream in 10 tasks, and one pool shard."""
    entries = read_stream(resolve_stream("mini_random_1"))
    catalogue = TrainingCatalogue(mini_root, load_registry(mini_root / "datasets.json"), entries)
    return catalogue, chunk_into_tasks(entries, 10), sorted((mini_root / "pool").glob("*.tar"))[:1]


def _batches(catalogue, tasks, shards, workers: int, skip_corrupt: bool = False, slots=None,
             uint8: bool = False) -> tuple[list[Batch], BatchBuilder]:
    backbone = build_backbone("mini_clip")
    pool = PoolStream(shards, seed=0, shuffle_buffer=50)
    builder = BatchBuilder(catalogue, pool, backbone.train_transform, backbone.tokenizer, seed=0,
                           skip_corrupt=skip_corrupt)
    if uint8:
        assert builder.normalise_on_device()
    task, buffer = catalogue.task_indices(tasks[1]), catalogue.task_indices(tasks[0])
    sampler = MixtureSampler(0, 1, task, buffer, COUNTS)
    plans = ((step, sampler.plan(step)) for step in range(STEPS))
    batches = list(step_batches(builder, plans, 1, {"update": task, "buffer": buffer},
                                LoaderSettings(workers=workers, prefetch=2), slots=slots))
    return batches, builder


def _same(a: list[Batch], b: list[Batch]) -> None:
    assert len(a) == len(b) == STEPS
    for x, y in zip(a, b):
        assert torch.equal(x.images, y.images) and x.images.dtype == y.images.dtype
        assert torch.equal(x.texts, y.texts)
        assert (x.indices, x.sources, x.skipped, x.pool_state) == (y.indices, y.sources, y.skipped, y.pool_state)


def test_batches_are_bit_identical_with_0_1_and_2_workers_including_replacements(mini_root, tmp_path):
    root, catalogue, tasks = _root_with_corrupt_files(mini_root, tmp_path / "root")
    shards = sorted((mini_root / "pool").glob("*.tar"))[:2]
    serial, builder0 = _batches(catalogue, tasks, shards, workers=0, skip_corrupt=True)
    assert serial[0].images.shape == (15, 3, 32, 32) and serial[0].sources == COUNTS
    assert sum(builder0.skipped.values()) >= 2  # both truncated images were drawn and replaced
    for workers in (1, 2):
        parallel, builder = _batches(catalogue, tasks, shards, workers=workers, skip_corrupt=True)
        _same(serial, parallel)
        assert builder.skipped == builder0.skipped  # counted in the main process, as batches are used
        assert builder.pool.state_dict() == builder0.pool.state_dict()


def test_a_ranks_slice_built_by_workers_is_its_slice_of_the_one_process_batch(mini_root):
    catalogue, tasks, shards = _mini_stream(mini_root)
    whole, _ = _batches(catalogue, tasks, shards, workers=0)
    part, _ = _batches(catalogue, tasks, shards, workers=2, slots=range(8, 15))
    for full, mine in zip(whole, part):
        assert torch.equal(full.images[8:15], mine.images) and torch.equal(full.texts[8:15], mine.texts)


def test_uint8_crops_normalised_by_to_equal_the_whole_transform_bit_for_bit(mini_root):
    catalogue, tasks, shards = _mini_stream(mini_root)
    floats, _ = _batches(catalogue, tasks, shards, workers=0)
    crops, _ = _batches(catalogue, tasks, shards, workers=2, uint8=True)
    assert crops[0].images.dtype == torch.uint8  # 4x fewer bytes through shared and pinned memory
    for a, b in zip(floats, crops):
        assert torch.equal(a.images, b.to(torch.device("cpu")).images)
    # the ViT-B/16 transform too, on a photo-sized image
    transform = build_backbone("openclip_vit_b16", pretrained=False).train_transform
    to_uint8, finish = split_transform(transform)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8))
    torch.manual_seed(3)
    whole = transform(image)
    torch.manual_seed(3)
    assert torch.equal(whole, finish(to_uint8(image).unsqueeze(0))[0])


def test_a_worker_error_reaches_the_run_as_the_same_one_line_error(mini_root, tmp_path):
    root, catalogue, tasks = _root_with_corrupt_files(mini_root, tmp_path / "root")
    shards = sorted((mini_root / "pool").glob("*.tar"))[:1]
    messages = []
    for workers in (0, 2):
        with pytest.raises(CorruptSampleError) as error:
            _batches(catalogue, tasks, shards, workers=workers)
        messages.append(str(error.value))
    assert messages[0] == messages[1] and "\n" not in messages[1] and str(root) in messages[1]


def test_train_workers_values(mini_root):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_workers("auto", cpu) == 0  # on the CPU the training step uses every core
    assert 1 <= resolve_workers("auto", cuda) <= 8
    assert resolve_workers(3, cpu) == 3
    for bad in (-1, "many", 1.5):
        with pytest.raises(FifError, match=r"experiment.dataset.train_workers=.*expected auto or an integer >= 0"):
            resolve_workers(bad, cpu)
    with pytest.raises(FifError, match="experiment.dataset.prefetch=0 is not valid: expected a whole number >= 1"):
        run_experiment(compose(["experiment.dataset.prefetch=0"]), echo=lambda *_: None)


def test_a_run_with_workers_equals_the_run_without(small, tmp_path):
    base = ["experiment.task.num=2", "experiment.task.n_samples=256", "continual.method=ewc",
            "continual.ewc.max_fim_samples=128", "log.progress=false", f"log.folder={tmp_path}", *small]
    serial = run_experiment(compose([*base, "log.name=serial", "experiment.dataset.train_workers=0"]),
                            echo=lambda *_: None).results
    parallel = run_experiment(compose([*base, "log.name=parallel", "experiment.dataset.train_workers=2"]),
                              echo=lambda *_: None).results
    for results in (serial, parallel):
        results["config"]["experiment"]["dataset"].pop("train_workers")
        results["config"]["log"].pop("name")
    assert without_timing(serial) == without_timing(parallel)
    assert all(task["data_wait_seconds"] >= 0 for task in parallel["tasks"])


def test_evaluation_with_workers_and_uint8_crops_scores_what_one_process_scores(mini_root):
    from fif.eval.suite import EvalSuite

    backbone = build_backbone("mini_clip")
    registry = load_registry(mini_root / "datasets.json")
    specs = [registry[name] for name in list(registry)[:2]]

    def scores(workers: int, uint8: bool) -> dict:
        suite = EvalSuite(mini_root, specs, backbone.eval_transform, preload=False, batch_size=64, num_workers=workers)
        if uint8:
            assert suite.normalise_on_device()
        return suite.evaluate(backbone.model, backbone.tokenizer, torch.device("cpu"))

    serial = scores(0, False)
    assert scores(2, True) == serial
