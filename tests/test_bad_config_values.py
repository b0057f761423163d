"""Bad input, config values: every numeric key out of its range is one line naming the key, before
anything is read or written.

The table is driven by hypothesis: for each key it draws out-of-range values (negative, zero where
zero is invalid, nan, inf, huge) and checks them through the run's real check path
(``fif.train.components.check_config``, which ``fif run`` calls before any data is read). Types
(a string where a number belongs) are compose()'s job and tests/test_config.py's. A few cases go
through the ``fif`` entry point end to end and must leave nothing behind.
"""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from bad_input_helpers import SHORT_RUN, nothing_left, one_line_error
from fif.config.settings import RunSettings
from fif.config import compose
from fif.errors import FifError
from fif.methods import build_method
from fif.models.backbone import build_backbone
from fif.config.blocks import MAX_SEED
from fif.train.components import check_config

pytestmark = pytest.mark.usefixtures("mini_root")  # the mini benchmark, built once per session
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
NEGATIVE = st.floats(max_value=-1e-12, allow_nan=False) | NON_FINITE  # < 0 or not finite
NOT_POSITIVE = st.floats(max_value=0.0, allow_nan=False) | NON_FINITE  # <= 0 (also -0.0) or not finite
BELOW_ONE = st.integers(max_value=0)  # whole numbers that must be >= 1
BELOW_ZERO = st.integers(max_value=-1)  # whole numbers that must be >= 0

# key -> (out-of-range values, overrides the key needs to be read at all)
TABLE: dict[str, tuple[st.SearchStrategy, tuple[str, ...]]] = {
    "experiment.optimizer.lr": (NOT_POSITIVE, ()),
    "experiment.optimizer.weight_decay": (NEGATIVE, ()),
    "experiment.optimizer.clip_grad_norm": (NEGATIVE, ()),
    "experiment.scheduler.warmup": (NEGATIVE, ()),
    "experiment.scheduler.cooldown": (NEGATIVE, ()),
    "experiment.scheduler.min_lr_ratio": (NEGATIVE | st.floats(min_value=1.0, exclude_min=True), ()),
    "experiment.scheduler.wsd.decay": (NEGATIVE, ()),
    "experiment.task.batch_size": (BELOW_ONE, ()),
    "experiment.task.n_samples": (BELOW_ONE, ()),
    "experiment.task.num": (BELOW_ONE, ()),
    "experiment.task.budget.amount": (NOT_POSITIVE, ("experiment.task.budget.unit=fullft_steps", "experiment.task.budget.amount=2")),
    "experiment.dataset.num_workers": (BELOW_ZERO, ()),
    "experiment.dataset.train_workers": (BELOW_ZERO, ()),
    "experiment.dataset.prefetch": (BELOW_ONE, ()),
    "experiment.dataset.pool_shuffle_buffer": (BELOW_ONE, ()),
    "experiment.dataset.pool_shards": (BELOW_ONE, ()),
    "experiment.dataset.data_mixture.update": (NEGATIVE, ()),
    "experiment.dataset.data_mixture.pretraining": (NEGATIVE, ()),
    "experiment.seed": (BELOW_ZERO | st.integers(min_value=MAX_SEED + 1), ()),
    "evaluation.batch_size": (BELOW_ONE, ()),
    "evaluation.every_n_samples": (BELOW_ONE, ()),
    "evaluation.validate_on_subset": (NOT_POSITIVE | st.floats(min_value=1.0, exclude_min=True), ()),
    "log.keep_checkpoints": (BELOW_ZERO, ()),
    "log.checkpoint_every_steps": (BELOW_ZERO, ()),
}


@pytest.fixture(scope="module")
def bases() -> dict[tuple[str, ...], object]:
    """The composed default config (and the few variants the table needs), composed once."""
    return {needs: compose(list(needs)) for needs in {needs for _, needs in TABLE.values()}}


def _with(base, key: str, value: object):
    cfg = copy.deepcopy(base)
    OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def test_the_defaults_pass_the_checks(bases):
    for base in bases.values():
        check_config(base)


@settings(max_examples=12, deadline=None, database=None,  # database=None: no .hypothesis/ folder
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
@pytest.mark.parametrize("key", sorted(TABLE))
def test_an_out_of_range_value_is_one_line_naming_the_key(bases, key, data):
    values, needs = TABLE[key]
    value = data.draw(values, label=key)
    with pytest.raises(FifError) as error:
        check_config(_with(bases[needs], key, value))
    message = str(error.value)
    assert "\n" not in message
    assert re.match(rf"{re.escape(key)}=", message), message


# continual.<method>.<key> -> out-of-range values; checked when the method is built on the model
# (mini_clip: every adapted layer is 128 wide), before the run folder is made.
METHOD_TABLE: dict[str, st.SearchStrategy] = {
    "continual.lora.rank": BELOW_ONE | st.integers(min_value=129, max_value=10**6),
    "continual.lora.scale": NON_FINITE,
    "continual.lora.dropout": NEGATIVE | st.floats(min_value=1.0) | NON_FINITE,
    "continual.dora.rank": BELOW_ONE | st.integers(min_value=129, max_value=10**6),
    "continual.vera.rank": BELOW_ONE,
    "continual.vera.d_initial": NON_FINITE | st.just(0.0),
    "continual.ewc.e_lambda": st.floats(max_value=-1e-12, allow_nan=False, allow_infinity=False) | st.just(math.nan),
    "continual.si.xi": st.floats(max_value=0.0, allow_nan=False, allow_infinity=False) | st.just(math.nan),
}


@pytest.fixture(scope="module")
def mini_model() -> torch.nn.Module:
    return build_backbone("mini_clip").model


@pytest.fixture(scope="module")
def method_bases() -> dict[str, object]:
    """The default config with each method of METHOD_TABLE, composed once."""
    return {m: compose([f"continual.method={m}"]) for m in {key.split(".")[1] for key in METHOD_TABLE}}


@settings(max_examples=8, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
@pytest.mark.parametrize("key", sorted(METHOD_TABLE))
def test_an_out_of_range_method_option_is_one_line_naming_the_key(mini_model, method_bases, key, data):
    value = data.draw(METHOD_TABLE[key], label=key)
    with pytest.raises(FifError) as error:
        build_method(RunSettings.from_config(_with(method_bases[key.split(".")[1]], key, value)), copy.deepcopy(mini_model),
                     torch.device("cpu"))
    message = str(error.value)
    assert "\n" not in message
    assert re.match(rf"{re.escape(key)}=", message), message


@pytest.mark.parametrize("override, message", [
    ("experiment.optimizer.weight_decay=-0.1",
     "experiment.optimizer.weight_decay=-0.1 is not valid: expected a finite number >= 0"),
    ("experiment.optimizer.lr=nan", "experiment.optimizer.lr=nan is not valid: expected a finite number > 0"),
    ("experiment.optimizer.lr=inf", "experiment.optimizer.lr=inf is not valid: expected a finite number > 0"),
    ("experiment.optimizer.lr=-1e-4", r"experiment.optimizer.lr=-0.0001 is not valid: expected a finite number > 0"),
    ("experiment.optimizer.clip_grad_norm=-1",
     "experiment.optimizer.clip_grad_norm=-1 is not valid: expected null or a finite number >= 0"),
    ("experiment.dataset.pool_shards=0",
     "experiment.dataset.pool_shards=0 is not valid: expected null \\(all shards\\) or a whole number >= 1"),
    ("experiment.task.num=0", "experiment.task.num=0 is not valid: expected a whole number >= 1"),
    ("continual.lora.rank=1000", "continual.lora.rank=1000 is not valid: expected at most 128"),
])
def test_through_the_cli_one_exact_line_and_nothing_written(capsys, tmp_path, override, message):
    runs = tmp_path / "runs"
    one_line_error(capsys, ["run", *SHORT_RUN, f"log.folder={runs}", "continual.method=lora", override],
                   f"^error: {message}")
    nothing_left(runs)


@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_a_rank_above_the_smallest_adapted_width_is_refused(kind):
    """mini_clip is 128 wide: rank 128 is the most a LoRA/DoRA of it can use."""
    backbone = build_backbone("mini_clip")
    with pytest.raises(FifError) as error:
        build_method(RunSettings.from_config(compose([f"continual.method={kind}", f"continual.{kind}.rank=129"])), backbone.model,
                     torch.device("cpu"))
    assert str(error.value) == (f"continual.{kind}.rank=129 is not valid: expected at most 128, the smallest width of "
                                f"an adapted layer (128 x 128); a higher rank adds compute but no rank")
    method = build_method(RunSettings.from_config(compose([f"continual.method={kind}", f"continual.{kind}.rank=128"])),
                          build_backbone("mini_clip").model, torch.device("cpu"))
    assert all(p.shape[0] == 128 or p.shape[1] == 128 for p in method.trainable_parameters() if p.ndim == 2)


def test_vera_may_use_a_rank_above_the_width():
    """VeRA's rank sizes the shared random projections; only d (rank) and b (out) train, so more rank
    than width still adds trainable scalings (the VeRA paper uses ranks up to the width and beyond)."""
    method = build_method(RunSettings.from_config(compose(["continual.method=vera", "continual.vera.rank=256"])),
                          build_backbone("mini_clip").model, torch.device("cpu"))
    assert tuple(method.model.vera_projections.A.shape) == (256, 512)  # rank x the widest input (mlp.c_proj)
    assert {tuple(p.shape) for p in method.trainable_parameters()} >= {(256,), (128,)}  # d, b
