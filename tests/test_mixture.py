import numpy as np
import pytest

from fif.data.samples.buffer import ReplayBuffer
from fif.data.samples.mixture import SOURCES, MixtureSampler, batch_split
from fif.errors import FifError

REFERENCE_SHARES = {"pretraining": 0.33, "update": 0.34, "buffer": 0.33}


def test_reference_split_rule():
    assert batch_split(512, REFERENCE_SHARES) == {"pretraining": 169, "update": 175, "buffer": 168}


def test_empty_buffer_hands_its_share_to_update_and_pretraining():
    counts = batch_split(512, REFERENCE_SHARES, buffer_empty=True)
    assert counts["buffer"] == 0
    assert sum(counts.values()) == 512
    assert counts["update"] > 175 and counts["pretraining"] > 169


@pytest.mark.parametrize("size", [1, 7, 128, 333, 512])
def test_counts_always_fill_the_batch(size):
    assert sum(batch_split(size, REFERENCE_SHARES).values()) == size


def test_update_only_mixture():
    assert batch_split(128, {"pretraining": 0, "update": 1, "buffer": 0}) == {"pretraining": 0, "update": 128, "buffer": 0}


def test_bad_shares_are_rejected():
    with pytest.raises(FifError, match="sum to 1"):
        batch_split(128, {"pretraining": 0.5, "update": 0.6, "buffer": 0})
    with pytest.raises(FifError, match="pretraining_pool"):
        batch_split(128, REFERENCE_SHARES, pool_available=False)


def test_sampler_walks_the_task_in_epochs_and_is_a_pure_function_of_the_step():
    task = list(range(100, 150))
    counts = {"update": 10, "buffer": 4, "pretraining": 0}
    sampler = MixtureSampler(seed=1, task=2, task_indices=task, buffer_indices=[1, 2, 3], counts=counts)
    first_epoch = [i for step in range(5) for i in sampler.plan(step).update]
    assert sorted(first_epoch) == task  # every task sample exactly once per epoch
    again = MixtureSampler(seed=1, task=2, task_indices=task, buffer_indices=[1, 2, 3], counts=counts)
    assert again.plan(7).update == sampler.plan(7).update
    assert again.plan(7).buffer == sampler.plan(7).buffer
    assert set(sampler.plan(3).buffer) <= {1, 2, 3} and len(sampler.plan(3).buffer) == 4
    other_seed = MixtureSampler(seed=2, task=2, task_indices=task, buffer_indices=[1, 2, 3], counts=counts)
    assert other_seed.plan(0).update != sampler.plan(0).update


# --- realised shares, budget and determinism with the replay buffer ---------------------------

SHARE_SETTINGS = [
    REFERENCE_SHARES,
    {"pretraining": 0.5, "update": 0.5, "buffer": 0.0},
    {"pretraining": 0.0, "update": 1.0, "buffer": 0.0},
    {"pretraining": 0.2, "update": 0.3, "buffer": 0.5},
    {"pretraining": 0.0, "update": 0.45, "buffer": 0.55},
    {"pretraining": 0.1, "update": 0.8, "buffer": 0.1},
]


def _buffer_after_one_task(policy: str = "all", size: int | None = None, seed: int = 0) -> ReplayBuffer:
    buffer = ReplayBuffer(policy, size, seed)
    buffer.add_task(np.arange(0, 700), np.arange(700) // 35)  # task 0: indices 0..699, 20 classes
    return buffer


def _realised_shares(sampler: MixtureSampler, steps: int, task: set[int], buffer: set[int]) -> dict[str, float]:
    """Count what was drawn, by where each drawn index actually comes from."""
    drawn = {"pretraining": 0, "update": 0, "buffer": 0}
    for step in range(steps):
        plan = sampler.plan(step)
        for index in plan.update + plan.buffer:
            source = "update" if index in task else "buffer" if index in buffer else None
            assert source is not None, index
            drawn[source] += 1
        drawn["pretraining"] += plan.pretraining
    total = sum(drawn.values())
    return {source: count / total for source, count in drawn.items()}


@pytest.mark.parametrize("shares", SHARE_SETTINGS)
@pytest.mark.parametrize("batch_size", [128, 512])
def test_realised_shares_over_1000_batches_match_the_configured_shares(shares, batch_size):
    buffer = _buffer_after_one_task()
    task = list(range(1000, 1900))
    counts = batch_split(batch_size, shares, buffer_empty=len(buffer) == 0)
    sampler = MixtureSampler(0, 1, task, buffer.indices(), counts)
    realised = _realised_shares(sampler, 1000, set(task), set(buffer.indices().tolist()))
    for source in SOURCES:
        assert abs(realised[source] - shares[source]) <= 0.01, (source, realised)
        if shares[source] == 0:
            assert realised[source] == 0


@pytest.mark.parametrize("shares", SHARE_SETTINGS)
def test_task_zero_realises_the_buffer_share_as_update_and_pretraining(shares):
    # Empty buffer: its share goes half to update, half to pretraining; all to update when the
    # mixture has no pretraining share (a run without a pool must not need one in task 0).
    task = list(range(1000, 1900))
    sampler = MixtureSampler(0, 0, task, ReplayBuffer().indices(), batch_split(256, shares, buffer_empty=True))
    realised = _realised_shares(sampler, 1000, set(task), set())
    with_pool = shares["pretraining"] > 0
    expected = {"buffer": 0.0,
                "pretraining": shares["pretraining"] + shares["buffer"] / 2 if with_pool else 0.0,
                "update": shares["update"] + (shares["buffer"] / 2 if with_pool else shares["buffer"])}
    for source in SOURCES:
        assert abs(realised[source] - expected[source]) <= 0.01, (source, realised)


@pytest.mark.parametrize("n_samples, batch_size", [(727_040, 512), (2560, 128), (1000, 96)])
def test_the_task_budget_counts_update_buffer_and_pretraining_samples_together(n_samples, batch_size):
    steps = n_samples // batch_size  # as loop.steps_per_task
    counts = batch_split(batch_size, REFERENCE_SHARES)
    sampler = MixtureSampler(0, 1, list(range(1000, 1900)), _buffer_after_one_task().indices(), counts)
    drawn = 0
    for step in range(min(steps, 50)):
        plan = sampler.plan(step)
        size = len(plan.update) + len(plan.buffer) + plan.pretraining
        assert size == batch_size
        drawn += size
    assert drawn == min(steps, 50) * batch_size
    assert n_samples - batch_size < steps * batch_size <= n_samples  # all three sources share one budget


@pytest.mark.parametrize("policy, size", [("all", None), ("reservoir", 200), ("class_balanced", 200)])
def test_buffer_draws_are_uniform_over_what_the_buffer_holds(policy, size):
    buffer = _buffer_after_one_task(policy, size, seed=1)
    held = buffer.indices()
    counts = batch_split(512, REFERENCE_SHARES)
    sampler = MixtureSampler(0, 1, list(range(1000, 1900)), held, counts)
    drawn = np.array([i for step in range(1000) for i in sampler.plan(step).buffer])
    assert len(drawn) == 168 * 1000 and set(drawn.tolist()) == set(held.tolist())
    frequency = np.bincount(np.searchsorted(np.sort(held), drawn), minlength=len(held))
    expected = len(drawn) / len(held)
    assert np.abs(frequency - expected).max() < 5 * np.sqrt(expected)  # 5 sd of a Poisson count


@pytest.mark.parametrize("policy, size", [("all", None), ("reservoir", 200), ("class_balanced", 200)])
def test_two_runs_with_the_same_seed_draw_the_same_samples(policy, size):
    def draws(seed: int) -> list[list[int]]:
        buffer = _buffer_after_one_task(policy, size, seed)
        sampler = MixtureSampler(seed, 1, list(range(1000, 1900)), buffer.indices(), batch_split(128, REFERENCE_SHARES))
        return [sampler.plan(step).update + sampler.plan(step).buffer for step in range(30)]

    assert draws(3) == draws(3)
    assert draws(3) != draws(4)
