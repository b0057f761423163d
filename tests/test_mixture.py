import pytest

from fif.data.mixture import MixtureSampler, batch_split
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
