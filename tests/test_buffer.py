"""The replay buffer: the reference's keep-everything default and the bounded policies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fif.data.samples.buffer import ReplayBuffer, balanced_quotas
from fif.errors import FifError


def _tasks(seed: int, count: int, classes_per_task: tuple[int, int] = (2, 6),
           class_size: tuple[int, int] = (5, 80)) -> list[tuple[np.ndarray, np.ndarray]]:
    """A stream of tasks: (global indices, class labels), consecutive indices, fresh classes per task."""
    rng = np.random.default_rng(seed)
    tasks, next_index, next_class = [], 0, 0
    for _ in range(count):
        sizes = rng.integers(*class_size, size=rng.integers(*classes_per_task))
        labels = np.repeat(np.arange(next_class, next_class + len(sizes)), sizes)
        tasks.append((np.arange(next_index, next_index + len(labels)), labels))
        next_index, next_class = next_index + len(labels), next_class + len(sizes)
    return tasks


def test_default_policy_holds_exactly_all_previous_tasks_samples():
    buffer = ReplayBuffer()  # policy all, unbounded: the reference
    assert len(buffer) == 0 and len(buffer.indices()) == 0
    stream = _tasks(0, 12)
    for position, (indices, labels) in enumerate(stream):
        shuffled = np.random.default_rng(position).permutation(indices)
        buffer.add_task(shuffled, labels)
        expected = np.concatenate([np.random.default_rng(p).permutation(i)
                                   for p, (i, _) in enumerate(stream[:position + 1])])
        assert np.array_equal(buffer.indices(), expected)  # every sample, once, in task order
        assert len(buffer) == len(expected) == buffer.seen
    assert buffer.indices().dtype == np.int64


def test_default_policy_stores_millions_of_samples_compactly():
    buffer = ReplayBuffer()
    for task in range(20):
        buffer.add_task(np.arange(task * 126_000, (task + 1) * 126_000))
    assert len(buffer) == 2_520_000
    assert buffer.indices().nbytes == 2_520_000 * 8  # 20 MB for the full FoMo-in-Flux stream


@pytest.mark.parametrize("policy", ["reservoir", "class_balanced"])
def test_bounded_buffer_never_exceeds_its_size_over_a_long_stream(policy):
    buffer = ReplayBuffer(policy, size=500, seed=3)
    seen: set[int] = set()
    for indices, labels in _tasks(1, 300):
        buffer.add_task(indices, labels)
        seen |= set(indices.tolist())
        assert len(buffer) == min(500, len(seen))
        held = buffer.indices()
        assert len(np.unique(held)) == len(held)  # no sample twice
        assert set(held.tolist()) <= seen
    assert buffer.seen == len(seen) > 30_000


def test_class_balanced_holds_per_class_counts_within_one():
    buffer = ReplayBuffer("class_balanced", size=300, seed=0)
    class_of: dict[int, int] = {}
    seen_per_class: dict[int, int] = {}
    for indices, labels in _tasks(2, 60, class_size=(40, 90)):
        buffer.add_task(indices, labels)
        class_of.update(zip(indices.tolist(), labels.tolist()))
        for label in labels.tolist():
            seen_per_class[label] = seen_per_class.get(label, 0) + 1
        held_labels = buffer.labels()
        assert [class_of[i] for i in buffer.indices().tolist()] == held_labels.tolist()
        counts = np.bincount(held_labels, minlength=len(seen_per_class))
        if len(buffer) == 300:  # full: every seen class has a slot, and they differ by at most one
            assert counts.min() >= 1 and counts.max() - counts.min() <= 1, counts
    assert len(seen_per_class) > 200  # late in the stream: 300 slots over > 200 classes


def test_class_balanced_gives_a_small_class_all_it_has_and_splits_the_rest():
    assert balanced_quotas(np.array([2, 50, 50, 50]), 32).tolist() == [2, 10, 10, 10]
    assert balanced_quotas(np.array([2, 50, 50, 50]), 33).tolist() == [2, 11, 10, 10]
    assert balanced_quotas(np.array([3, 4]), 100).tolist() == [3, 4]  # room for everything
    buffer = ReplayBuffer("class_balanced", size=32, seed=0)
    buffer.add_task(np.arange(152), np.repeat([0, 1, 2, 3], [2, 50, 50, 50]))
    assert np.bincount(buffer.labels()).tolist() == [2, 10, 10, 10]


def test_reservoir_keeps_every_seen_sample_with_equal_probability():
    # 100 samples over 5 tasks of unequal sizes into 20 slots: every sample is held with p = 0.2,
    # wherever it came in the stream. 2,000 seeds: the count of one sample is Binomial(2000, 0.2),
    # sd 17.9, so 5 sd is a frequency tolerance of 0.045; a task's mean frequency has sd <= 0.0028.
    sizes, runs = [10, 30, 5, 40, 15], 2000
    starts = np.cumsum([0] + sizes)
    held = np.zeros(100)
    for seed in range(runs):
        buffer = ReplayBuffer("reservoir", size=20, seed=seed)
        for start, size in zip(starts, sizes):
            buffer.add_task(np.arange(start, start + size), np.zeros(size, dtype=int))
        held[buffer.indices()] += 1
    frequency = held / runs
    assert np.abs(frequency - 0.2).max() < 0.045, frequency
    for start, size in zip(starts, sizes):
        assert abs(frequency[start:start + size].mean() - 0.2) < 0.015


def test_class_balanced_keeps_a_uniform_subset_within_each_class():
    # One class of 40 samples arriving in two tasks (20 + 20) beside a large class; the class gets
    # 10 slots, so each of its 40 samples is held with p = 0.25 (1,000 seeds: sd 0.014).
    held = np.zeros(40)
    for seed in range(1000):
        buffer = ReplayBuffer("class_balanced", size=20, seed=seed)
        buffer.add_task(np.arange(0, 20), np.zeros(20, dtype=int))
        buffer.add_task(np.arange(20, 140), np.array([0] * 20 + [1] * 100))
        labels, indices = buffer.labels(), buffer.indices()
        assert (labels == 0).sum() == 10
        held[indices[labels == 0]] += 1
    assert np.abs(held / 1000 - 0.25).max() < 0.07
    assert abs(held[:20].mean() - held[20:].mean()) / 1000 < 0.02


@pytest.mark.parametrize("policy, size", [("all", None), ("reservoir", 300), ("class_balanced", 300)])
def test_same_seed_same_buffer_different_seed_different_buffer(policy, size):
    def fill(seed: int) -> np.ndarray:
        buffer = ReplayBuffer(policy, size, seed)
        for indices, labels in _tasks(5, 40):
            buffer.add_task(indices, labels)
        return buffer.indices()

    assert np.array_equal(fill(1), fill(1))
    if policy == "all":
        assert np.array_equal(fill(1), fill(2))  # keeps everything: nothing to choose
    else:
        assert not np.array_equal(fill(1), fill(2))


@pytest.mark.parametrize("policy, size", [("all", None), ("reservoir", 200), ("class_balanced", 200)])
def test_state_dict_round_trip_continues_exactly(policy, size, tmp_path):
    stream = _tasks(7, 30)
    straight = ReplayBuffer(policy, size, seed=4)
    for indices, labels in stream:
        straight.add_task(indices, labels)
    first = ReplayBuffer(policy, size, seed=4)
    for indices, labels in stream[:13]:
        first.add_task(indices, labels)
    torch.save(first.state_dict(), tmp_path / "buffer.pt")
    resumed = ReplayBuffer(policy, size, seed=4)
    resumed.load_state_dict(torch.load(tmp_path / "buffer.pt", weights_only=True))
    assert np.array_equal(resumed.indices(), first.indices())
    for indices, labels in stream[13:]:
        resumed.add_task(indices, labels)
    assert np.array_equal(resumed.indices(), straight.indices())
    assert np.array_equal(resumed.labels(), straight.labels())
    assert (resumed.seen, resumed.tasks_added) == (straight.seen, straight.tasks_added)


@pytest.mark.parametrize("kwargs, culprit", [
    ({"policy": "fifo"}, "policy='fifo'"),
    ({"policy": "reservoir", "size": 0}, "size=0"),
    ({"policy": "class_balanced", "size": -5}, "size=-5"),
    ({"policy": "reservoir", "size": "many"}, "size=many"),
    ({"policy": "reservoir"}, "needs experiment.dataset.buffer.size"),
    ({"policy": "all", "size": 10}, "policy 'all' keeps every sample"),
])
def test_bad_buffer_settings_are_one_line_errors(kwargs, culprit):
    with pytest.raises(FifError) as error:
        ReplayBuffer(**kwargs)
    message = str(error.value)
    assert culprit in message and "\n" not in message


def test_resuming_with_another_policy_is_refused():
    saved = ReplayBuffer("reservoir", 10, seed=0)
    saved.add_task(np.arange(50), np.zeros(50, dtype=int))
    with pytest.raises(FifError, match="policy='reservoir'"):
        ReplayBuffer("class_balanced", 10, seed=0).load_state_dict(saved.state_dict())
    with pytest.raises(FifError, match="experiment.seed=1"):
        ReplayBuffer("reservoir", 10, seed=1).load_state_dict(saved.state_dict())


@pytest.mark.parametrize("override, culprit", [
    ("experiment.dataset.buffer.policy=fifo", "experiment.dataset.buffer.policy='fifo'"),
    ("experiment.dataset.buffer.size=0", "experiment.dataset.buffer.size=0"),
])
def test_cli_rejects_a_bad_buffer_config_in_one_line(tmp_path, override, culprit, in_process):
    extra = ["experiment.dataset.buffer.policy=reservoir"] if "size" in override else []
    result = in_process("run", f"log.folder={tmp_path}", *extra, override)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and culprit in lines[0]
    assert not list(tmp_path.rglob("results.json"))


@pytest.mark.parametrize("policy, size", [("all", None), ("class_balanced", 150)])
def test_a_run_fills_its_buffer_after_each_task_under_the_policy(tmp_path, mini_root, policy, size):
    from fif.config import compose
    from fif.data.samples.catalogue import TrainingCatalogue
    from fif.data.format.fif_format import load_registry
    from fif.data.format.streams import chunk_into_tasks, read_stream, resolve_stream
    from fif.train.run import run_experiment

    # No pretraining share: task 0 then gives the buffer's share to update (no pool needed).
    cfg = compose([f"log.folder={tmp_path}", "log.name=run", "log.progress=false", "experiment.task.num=3",
                   "experiment.task.n_samples=256", f"experiment.dataset.buffer.policy={policy}",
                   f"experiment.dataset.buffer.size={'null' if size is None else size}",
                   "experiment.dataset.data_mixture.pretraining=0", "experiment.dataset.data_mixture.update=0.5",
                   "experiment.dataset.data_mixture.buffer=0.5"])
    results = run_experiment(cfg, echo=lambda *_: None).results
    entries = read_stream(resolve_stream("mini_random_1"))
    catalogue = TrainingCatalogue(mini_root, load_registry(mini_root / "datasets.json"), entries)
    seen = np.cumsum([len(catalogue.task_indices(task)) for task in chunk_into_tasks(entries, 3)])
    expected = seen if size is None else np.minimum(seen, size)
    assert [task["buffer_samples"] for task in results["tasks"]] == expected.tolist()
    assert [task["samples_seen"] for task in results["tasks"]] == [256, 512, 768]
