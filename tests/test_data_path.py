import random

import torch

from fif.data.samples.batches import BatchBuilder
from fif.data.samples.catalogue import TrainingCatalogue
from fif.data.format.fif_format import load_registry
from fif.data.samples.mixture import MixtureSampler
from fif.data.samples.pool import PoolStream
from fif.data.format.streams import chunk_into_tasks, read_stream, resolve_stream
from fif.models.backbone import build_backbone


def test_catalogue_indexes_each_task_by_class(mini_root):
    registry = load_registry(mini_root / "datasets.json")
    entries = read_stream(resolve_stream("mini_random_1"))
    catalogue = TrainingCatalogue(mini_root, registry, entries)
    tasks = chunk_into_tasks(entries, 10)
    seen = set()
    for task in tasks:
        indices = catalogue.task_indices(task)
        assert not seen & set(indices)
        seen |= set(indices)
    assert len(seen) == len(catalogue)  # the stream covers every training sample exactly once
    folder, classname = tasks[0][0]
    index = catalogue.task_indices([tasks[0][0]])[0]
    assert classname in catalogue.caption(index, random.Random(0))


def test_pool_stream_is_deterministic_and_cycles(mini_root):
    shards = sorted((mini_root / "pool").glob("*.tar"))[:1]
    a, b = PoolStream(shards, seed=3, shuffle_buffer=100), PoolStream(shards, seed=3, shuffle_buffer=100)
    first = [record.decode()[1] for record in a.take(50)]
    assert first == [record.decode()[1] for record in b.take(50)]
    assert first != [record.decode()[1] for record in PoolStream(shards, seed=4, shuffle_buffer=100).take(50)]
    a.take(5000)  # crosses into the second epoch
    assert a.epoch == 1 and a.consumed == 5050


def test_batches_mix_sources_and_repeat_exactly(mini_root):
    registry = load_registry(mini_root / "datasets.json")
    entries = read_stream(resolve_stream("mini_random_1"))
    catalogue = TrainingCatalogue(mini_root, registry, entries)
    backbone = build_backbone("mini_clip")
    tasks = chunk_into_tasks(entries, 10)
    counts = {"update": 5, "buffer": 3, "pretraining": 4}
    shards = sorted((mini_root / "pool").glob("*.tar"))[:1]
    batches = []
    for _ in range(2):
        pool = PoolStream(shards, seed=0, shuffle_buffer=100)
        builder = BatchBuilder(catalogue, pool, backbone.train_transform, backbone.tokenizer, seed=0)
        sampler = MixtureSampler(0, 1, catalogue.task_indices(tasks[1]), catalogue.task_indices(tasks[0]), counts)
        batches.append(builder.build(sampler.plan(0), 1, 0))
    assert batches[0].images.shape == (12, 3, 32, 32)
    assert batches[0].sources == counts
    assert torch.equal(batches[0].images, batches[1].images)
    assert torch.equal(batches[0].texts, batches[1].texts)
