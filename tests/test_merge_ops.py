"""Merge operators, weighting schemes, LiNeS and the streaming driver, checked by their numbers."""

from __future__ import annotations

import math
import threading
import time
import weakref
from pathlib import Path

import pytest
import torch

from fif.errors import FifError
from fif.methods.merge_ops import (Lines, MergeRule, lines_factor, merge_tensor, scheme_weights, slerp,
                                   tower_depths)
from fif.methods.merge_stream import SafetensorsSource, StateSource, merge_states, save_state

ATOL = 1e-6


@pytest.fixture(scope="module")
def theta0() -> dict[str, torch.Tensor]:
    from fif.models.backbone import build_backbone

    return {k: v.clone() for k, v in build_backbone("mini_clip").model.state_dict().items()}


def finetuned(theta0: dict[str, torch.Tensor], seed: int, scale: float = 1e-2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: v + scale * torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()
            for k, v in theta0.items()}


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def rule(method: str, **kw) -> MergeRule:
    return MergeRule(method=method, **kw)


# ------------------------------------------------------------------ operators
def test_interpolation_weight_zero_or_one_returns_either_model_bit_identically(theta0):
    a, b = dict(theta0), finetuned(theta0, 1)
    a["visual.proj"] = a["visual.proj"].clone()
    a["visual.proj"][0, :4] = -0.0  # negative zeros must survive too
    for weights, expected in (([1.0, 0.0], a), ([0.0, 1.0], b)):
        merged = merge_states([a, b], rule("interpolation"), weights)
        assert all(torch.equal(bits(merged[k]), bits(expected[k])) for k in expected)
    half = merge_states([a, b], rule("interpolation"), [0.5, 0.5])
    assert torch.equal(half["text_projection"], (a["text_projection"] + b["text_projection"]) / 2)


def test_task_arithmetic_one_task_lambda_one_returns_the_finetuned_weights(theta0):
    theta1 = finetuned(theta0, 2)
    merged = merge_states([theta1], rule("task_arithmetic", scaling=1.0), base=theta0)
    assert max((merged[k] - theta1[k]).abs().max().item() for k in theta1) < ATOL
    doubled = merge_states([theta1], rule("task_arithmetic", scaling=2.0), base=theta0)
    k = "visual.conv1.weight"
    assert torch.allclose(doubled[k], theta0[k] + 2 * (theta1[k] - theta0[k]), atol=ATOL)


def test_ties_with_one_task_and_no_pruning_equals_task_arithmetic(theta0):
    theta1 = finetuned(theta0, 3)
    ties = merge_states([theta1], rule("ties", density=1.0), base=theta0)
    arithmetic = merge_states([theta1], rule("task_arithmetic"), base=theta0)
    assert all(torch.equal(ties[k], arithmetic[k]) for k in theta0)


def test_magmax_of_one_vector_is_that_vector(theta0):
    theta1 = finetuned(theta0, 4)
    merged = merge_states([theta1], rule("magmax"), base=theta0)
    assert all(torch.equal(merged[k], theta1[k]) for k in theta0)


def test_magmax_picks_the_largest_magnitude_entry():
    base = torch.zeros(4)
    a, b = torch.tensor([1.0, -3.0, 0.5, 0.0]), torch.tensor([-2.0, 1.0, 0.25, 0.0])
    assert merge_tensor(rule("magmax"), [a, b], [0.5, 0.5], base).tolist() == [-2.0, -3.0, 0.5, 0.0]


def test_slerp_endpoints_known_angle_and_parallel_fallback():
    a, b = torch.randn(5, 7), torch.randn(5, 7)
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    mid = slerp(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0]), 0.5)  # 90 degrees: sin(45)/sin(90) each
    assert torch.allclose(mid, torch.tensor([2 * math.sqrt(0.5), math.sqrt(0.5)]), atol=ATOL)
    third = slerp(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), 1 / 3)  # rotates by 30 degrees
    assert torch.allclose(third, torch.tensor([math.cos(math.pi / 6), math.sin(math.pi / 6)]), atol=ATOL)
    parallel = slerp(a, 3 * a, 0.25)
    assert torch.allclose(parallel, 0.75 * a + 0.25 * 3 * a, atol=ATOL)


def _with_cosine(base: torch.Tensor, n: int) -> list[torch.Tensor]:
    """n models whose task vectors e_0 + e_i have pairwise cosine exactly 1/2."""
    models = []
    for i in range(1, n + 1):
        tau = torch.zeros_like(base)
        tau[0], tau[i] = 1.0, 1.0
        models.append(base + 0.3 * tau)
    return models


@pytest.mark.parametrize("n, ratio", [(2, 2 * 0.5 / (1 + 0.5)), (3, 3 * 0.5 / (1 + 2 * 0.5))])
def test_model_stock_ratio_from_the_angle_between_task_vectors(n, ratio):
    base = torch.randn(8, dtype=torch.float64)
    models = _with_cosine(base, n)
    merged = merge_tensor(rule("model_stock"), models, [1 / n] * n, base)
    expected = ratio * sum(models) / n + (1 - ratio) * base
    assert ratio == pytest.approx(2 / 3 if n == 2 else 0.75)
    assert torch.allclose(merged, expected, atol=1e-12)


def test_random_picks_each_entry_from_one_model_with_the_given_probabilities():
    base = torch.zeros(200, 100)
    a, b = torch.full_like(base, 1.0), torch.full_like(base, 2.0)
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    merged = merge_tensor(rule("random"), [a, b], [0.25, 0.75], base, g())
    assert set(merged.unique().tolist()) == {1.0, 2.0}
    assert (merged == 2.0).float().mean().item() == pytest.approx(0.75, abs=0.01)
    assert torch.equal(merged, merge_tensor(rule("random"), [a, b], [0.25, 0.75], base, g()))
    assert torch.equal(merge_tensor(rule("random"), [a, b], [0.0, 1.0], base, g()), b)


def test_breadcrumbs_drops_the_largest_and_smallest_magnitudes():
    base = torch.zeros(100)
    tau = torch.arange(1, 101, dtype=torch.float32) * torch.where(torch.arange(100) % 2 == 0, 1.0, -1.0)
    merged = merge_tensor(rule("breadcrumbs_ties", top_drop=0.1, bottom_drop=0.5), [tau], [1.0], base)
    kept = merged.nonzero().flatten()
    assert kept.tolist() == list(range(50, 90))  # magnitudes 51..90 survive
    assert torch.equal(merged[kept], tau[kept])


def test_ties_elects_the_sign_and_averages_only_agreeing_entries():
    base = torch.zeros(3)
    t1, t2, t3 = torch.tensor([1.0, 2.0, -1.0]), torch.tensor([3.0, -1.0, -3.0]), torch.tensor([-1.0, -4.0, 2.0])
    merged = merge_tensor(rule("ties", density=1.0), [t1, t2, t3], [1 / 3] * 3, base)
    # entry 0: sum 3 > 0 -> mean(1, 3) = 2; entry 1: sum -3 -> mean(-1, -4); entry 2: sum -2 -> mean(-1, -3)
    assert merged.tolist() == [2.0, -2.5, -2.0]


# ------------------------------------------------------------------ the reference's semantics as options
def test_task_arithmetic_aggregate_sum_is_lambda_times_the_plain_sum_of_three_task_vectors():
    base = torch.tensor([1.0, -1.0])
    models = [base + torch.tensor([1.0, 0.0]), base + torch.tensor([2.0, 3.0]), base + torch.tensor([4.0, -6.0])]
    # taus sum to (7, -3); mean (ours): lambda * (7, -3) / 3; sum (reference): lambda * (7, -3)
    for aggregate, expected in (("mean", [1 + 0.5 * 7 / 3, -1 - 0.5 * 3 / 3]), ("sum", [1 + 3.5, -1 - 1.5])):
        r = rule("task_arithmetic", scaling=0.5, aggregate=aggregate)
        assert merge_tensor(r, models, [1 / 3] * 3, base).tolist() == pytest.approx(expected, abs=ATOL)
        streamed = merge_states([{"p": m} for m in models], r, base={"p": base})  # the one-model-at-a-time path
        assert streamed["p"].tolist() == pytest.approx(expected, abs=ATOL)


def _one_task_vector() -> tuple[dict, dict]:
    """theta_0 = 0 and one task vector over two tensors: a = 1..4, b = 10..40."""
    base = {"a": torch.zeros(4), "b": torch.zeros(4)}
    return base, {"a": torch.tensor([1.0, 2.0, 3.0, 4.0]), "b": torch.tensor([10.0, 20.0, 30.0, 40.0])}


@pytest.mark.parametrize("scope, prune_rule, a, b", [
    ("tensor", "top_k", [0, 0, 3, 4], [0, 0, 30, 40]),  # int(0.5 * 4) = 2 largest of each tensor
    ("model", "top_k", [0, 0, 0, 0], [10, 20, 30, 40]),  # int(0.5 * 8) = 4 largest of all 8
    ("tensor", "kth_value", [0, 2, 3, 4], [0, 20, 30, 40]),  # >= the int(4 * 0.5) = 2nd smallest of each
    ("model", "kth_value", [0, 0, 0, 4], [10, 20, 30, 40]),  # >= the 4th smallest of all 8: 5 kept (reference)
])
def test_ties_pruning_per_tensor_or_over_the_whole_model(scope, prune_rule, a, b):
    base, tau = _one_task_vector()
    r = rule("ties", density=0.5, prune_scope=scope, prune_rule=prune_rule)
    merged = merge_states([tau], r, base=base)
    assert merged["a"].tolist() == a and merged["b"].tolist() == b


def test_model_scope_ranks_only_the_merged_part():
    base, tau = _one_task_vector()
    r = rule("ties", density=0.5, prune_scope="model", prune_rule="kth_value")
    alone = merge_states([tau], r, base=base, keys=["a"])  # the part is a alone: >= its 2nd smallest
    assert list(alone) == ["a"] and alone["a"].tolist() == [0, 2, 3, 4]


def test_kth_value_converts_the_reference_prune_percentile_exactly():
    base, tau = torch.zeros(10), torch.arange(1.0, 11.0)
    # reference prune_percentile 0.2 on 10 entries: k = int(10 * 0.2) = 2, keep >= the 2nd smallest (9 entries);
    # density = 1 - 0.2 = 0.8 and 1 - 0.8 = 0.19999999999999996 would give k = 1 (all 10) without the rounding
    merged = merge_tensor(rule("ties", density=0.8, prune_rule="kth_value"), [base + tau], [1.0], base)
    assert merged.tolist() == [0.0] + list(range(2, 11))


def test_breadcrumbs_kth_value_keeps_equal_magnitudes_at_the_threshold():
    base = torch.zeros(10)
    tau = torch.tensor([1.0, 2.0, -2.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    r = dict(top_drop=0.1, bottom_drop=0.2)  # drop int(1) largest, int(2) smallest
    exact = merge_tensor(rule("breadcrumbs_ties", **r), [tau], [1.0], base)
    assert int((exact != 0).sum()) == 7 and exact[9] == 0 and exact[0] == 0  # one of the three 2s goes
    reference = merge_tensor(rule("breadcrumbs_ties", prune_rule="kth_value", **r), [tau], [1.0], base)
    assert reference.tolist() == [0.0, 2.0, -2.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 0.0]  # [3rd smallest, 9th smallest]


@pytest.mark.parametrize("aggregate, expected", [("mean", [2.0, -2.5, -2.0]), ("sum", [4.0, -5.0, -4.0]),
                                                 ("max", [3.0, -4.0, -3.0])])
def test_ties_aggregates_the_agreeing_entries(aggregate, expected):
    base = torch.zeros(3)
    t1, t2, t3 = torch.tensor([1.0, 2.0, -1.0]), torch.tensor([3.0, -1.0, -3.0]), torch.tensor([-1.0, -4.0, 2.0])
    merged = merge_tensor(rule("ties", density=1.0, aggregate=aggregate), [t1, t2, t3], [1 / 3] * 3, base)
    assert merged.tolist() == expected


@pytest.mark.parametrize("sign_tie, scope, b", [
    ("positive", "tensor", [1.0, 5.0]),  # entry b[1] votes 5 - 5 = 0 -> +: the +5
    ("majority", "tensor", [1.0, 5.0]),  # in b alone the elected signs are (+, 0): majority +
    ("majority", "model", [1.0, -5.0]),  # over a and b: (-, -, -, +, 0): majority - (the reference)
])
def test_a_zero_vote_takes_the_tie_sign(sign_tie, scope, b):
    base = {"a": torch.zeros(3), "b": torch.zeros(2)}
    tau1 = {"a": torch.tensor([-1.0, -2.0, -3.0]), "b": torch.tensor([1.0, 5.0])}
    tau2 = {"a": torch.tensor([-1.0, -2.0, -3.0]), "b": torch.tensor([1.0, -5.0])}
    r = rule("ties", density=1.0, sign_tie=sign_tie, prune_scope=scope)
    merged = merge_states([tau1, tau2], r, base=base)
    assert merged["a"].tolist() == [-1.0, -2.0, -3.0] and merged["b"].tolist() == b


def test_model_stock_reference_options_negative_cosine_and_eps():
    base = torch.zeros(2, dtype=torch.float64)
    a, b = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([-1.0, 1.0], dtype=torch.float64)
    assert torch.equal(merge_tensor(rule("model_stock"), [a, b], [0.5, 0.5], base), base)  # cos < 0 -> theta_0
    raw = merge_tensor(rule("model_stock", stock_clamp=False, stock_eps=1e-8), [a, b], [0.5, 0.5], base)
    t = -2 * (math.sqrt(2) + 1)  # 2 cos / (1 + cos), cos = -1/sqrt(2): away from the task models
    assert raw.tolist() == pytest.approx([0.0, t * 0.5], rel=1e-6)
    tiny = [torch.tensor([1e-4, 0.0], dtype=torch.float64)] * 2  # |a| |b| = 1e-8 = eps: cos 1/2, t = 2/3
    merged = merge_tensor(rule("model_stock", stock_eps=1e-8), tiny, [0.5, 0.5], base)
    assert merged.tolist() == pytest.approx([1e-4 * 2 / 3, 0.0], rel=1e-6)
    assert merge_tensor(rule("model_stock"), tiny, [0.5, 0.5], base).tolist() == pytest.approx([1e-4, 0.0])


def _reference_flat(kind: str, taus: list[dict], keys: list[str], lam: float, p: float = 0.0,
                    top: float = 0.0) -> dict:
    """The reference's formulas restated on task vectors flattened over ``keys`` (N x P), from docs/merging.md."""
    flat = torch.stack([torch.cat([t[k].reshape(-1) for k in keys]) for t in taus])
    size = flat.shape[1]
    if kind == "task_arithmetic":
        merged = flat.sum(0)
    else:
        mags = flat.abs()
        ranked = mags.sort(dim=1).values  # ascending; column r holds each model's (r + 1)-th smallest
        k = int(size * p)
        if kind == "ties":  # keep >= the k-th smallest
            keep = mags >= ranked[:, k - 1:k]
        else:  # keep between the (k + 1)-th smallest and the (int(size * top) + 1)-th largest
            high = size - int(size * top) - 1
            keep = (mags >= ranked[:, k:k + 1]) & (mags <= ranked[:, high:high + 1])
        kept = flat * keep
        signs = torch.sign(kept.sum(0))
        signs[signs == 0] = 1.0 if signs.sum() > 0 else -1.0
        chosen = kept * torch.where(signs > 0, kept > 0, kept < 0)
        merged = chosen.sum(0) / (chosen != 0).sum(0).clamp(min=1)
    out, offset = {}, 0
    for k in keys:
        out[k] = lam * merged[offset:offset + taus[0][k].numel()].reshape(taus[0][k].shape)
        offset += taus[0][k].numel()
    return out


@pytest.mark.parametrize("kind, options, ref", [
    ("ties", dict(density=0.3, scaling=0.8), dict(p=0.7, lam=0.8)),
    ("breadcrumbs_ties", dict(top_drop=0.01, bottom_drop=0.7), dict(p=0.7, top=0.01, lam=1.0)),
    ("task_arithmetic", dict(scaling=0.3, aggregate="sum"), dict(lam=0.3)),
])
def test_reference_options_reproduce_the_reference_formulas_on_a_whole_part(theta0, kind, options, ref):
    models = [finetuned(theta0, 40 + i) for i in range(3)]
    keys = [k for k in theta0 if k.startswith("visual.")]  # the reference's backbone part
    reference = {} if kind == "task_arithmetic" else dict(prune_scope="model", prune_rule="kth_value",
                                                          sign_tie="majority")
    merged = merge_states(models, rule(kind, **options, **reference), base=theta0, keys=keys)
    taus = [{k: m[k] - theta0[k] for k in keys} for m in models]
    expected = _reference_flat(kind, taus, keys, **ref)
    assert list(merged) == keys
    for k in keys:
        assert torch.allclose(merged[k], theta0[k] + expected[k], atol=1e-6), k
    if kind == "ties":  # the per-tensor default keeps other entries
        ours = merge_states(models, rule(kind, **options), base=theta0, keys=keys)
        assert any(not torch.allclose(ours[k], merged[k], atol=1e-6) for k in keys)


# ------------------------------------------------------------------ peft cross-checks
@pytest.fixture(scope="module")
def peft_merge():
    return pytest.importorskip("peft.utils.merge_utils")


def _tensors(n: int = 3, shape=(32, 48)):
    g = torch.Generator().manual_seed(11)
    base = torch.randn(shape, generator=g)
    return base, [base + 0.05 * torch.randn(shape, generator=g) for _ in range(n)]


def test_task_arithmetic_matches_peft(peft_merge):
    base, models = _tensors()
    w = [0.2, 0.3, 0.5]
    ref = base + peft_merge.task_arithmetic([m - base for m in models], torch.tensor(w))
    assert torch.allclose(merge_tensor(rule("task_arithmetic"), models, w, base), ref, atol=ATOL)


@pytest.mark.parametrize("sign", ["total", "frequency"])
@pytest.mark.parametrize("w", [[1 / 3] * 3, [0.2, 0.3, 0.5]])
def test_ties_matches_peft(peft_merge, sign, w):
    base, models = _tensors()
    peft_weights = torch.tensor([x * len(w) for x in w])  # ours are normalised; peft's uniform case is all ones
    ref = base + peft_merge.ties([m - base for m in models], peft_weights, 0.3, sign)
    assert torch.allclose(merge_tensor(rule("ties", density=0.3, sign=sign), models, w, base), ref, atol=ATOL)


def test_dare_ties_matches_peft_with_the_same_seed(peft_merge):
    base, models = _tensors()
    w = [0.2, 0.3, 0.5]
    torch.manual_seed(5)
    ref = base + peft_merge.dare_ties([m - base for m in models], torch.tensor([x * 3 for x in w]), 0.4)
    ours = merge_tensor(rule("dare_ties", density=0.4), models, w, base, torch.Generator().manual_seed(5))
    assert torch.allclose(ours, ref, atol=ATOL)
    other = merge_tensor(rule("dare_ties", density=0.4), models, w, base, torch.Generator().manual_seed(6))
    assert not torch.allclose(other, ref, atol=ATOL)


# ------------------------------------------------------------------ weights and LiNeS
def test_weighting_schemes_follow_their_formulas():
    assert scheme_weights("uniform", 4) == pytest.approx([0.25] * 4)
    assert scheme_weights("linear", 4) == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert scheme_weights("sqrt", 3) == pytest.approx([1 / (1 + 2 ** .5 + 3 ** .5), 2 ** .5 / (1 + 2 ** .5 + 3 ** .5),
                                                       3 ** .5 / (1 + 2 ** .5 + 3 ** .5)])
    assert scheme_weights("quadratic", 3) == pytest.approx([1 / 14, 4 / 14, 9 / 14])
    assert scheme_weights("exponential", 3) == pytest.approx([1 / 7, 2 / 7, 4 / 7])
    assert scheme_weights("exponential", 3, exp_base=3.0) == pytest.approx([1 / 13, 3 / 13, 9 / 13])
    logs = [math.log(2), math.log(3)]
    assert scheme_weights("log", 2) == pytest.approx([v / sum(logs) for v in logs])
    assert scheme_weights("cubic", 2) == pytest.approx([1 / 9, 8 / 9])
    assert scheme_weights("fifth", 2) == pytest.approx([1 / 33, 32 / 33])
    assert scheme_weights("tenth", 2) == pytest.approx([1 / 1025, 1024 / 1025])
    assert scheme_weights("reverse_linear", 3) == pytest.approx([3 / 6, 2 / 6, 1 / 6])
    assert scheme_weights("reverse_exponential", 3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])


def test_lines_scales_block_l_update_by_the_documented_factor(theta0):
    theta1 = finetuned(theta0, 5)
    lines = Lines(enabled=True, alpha=0.2, beta=0.6, power=2.0, non_block="alpha")
    merged = merge_states([theta1], MergeRule(method="interpolation", lines=lines), [1.0], base=theta0)
    depths = tower_depths(list(theta0))
    assert depths == {"visual.transformer.": 4, "transformer.": 4}
    checked = 0
    for key in theta0:
        update, expected = merged[key] - theta0[key], theta1[key] - theta0[key]
        if ".resblocks." in key:
            block = int(key.split(".resblocks.")[1].split(".")[0])
            factor = 0.2 + 0.6 * (block / 3) ** 2
            checked += 1
        else:
            factor = 0.2
        assert lines_factor(key, lines, depths) == pytest.approx(factor)
        assert torch.allclose(update, factor * expected, atol=ATOL), key
    assert checked == 2 * 4 * 12  # both towers, 4 blocks, 12 tensors per block
    head_last = Lines(enabled=True, alpha=0.2, beta=0.6, power=2.0, non_block="head_last")
    assert lines_factor("visual.proj", head_last, depths) == pytest.approx(0.8)
    assert lines_factor("ln_final.weight", head_last, depths) == pytest.approx(0.8)
    assert lines_factor("visual.conv1.weight", head_last, depths) == pytest.approx(0.2)


# ------------------------------------------------------------------ config errors
@pytest.mark.parametrize("node, culprit", [
    ({"method": "average"}, "backbone_merge.method='average'"),
    ({"density": 0.0}, "backbone_merge.density=0.0"),
    ({"weighting": "cube"}, "backbone_merge.weighting='cube'"),
    ({"weight": 1.5}, "backbone_merge.weight=1.5"),
    ({"top_drop": 0.5, "bottom_drop": 0.6}, "backbone_merge.top_drop"),
    ({"lambda": 1.0}, "backbone_merge.lambda"),
    ({"scaling": "big"}, "backbone_merge.scaling='big'"),
    ({"lines": {"enabled": True, "non_block": "all"}}, "backbone_merge.lines.non_block='all'"),
    ({"method": "task_arithmetic", "aggregate": "max"}, "backbone_merge.aggregate='max'"),
    ({"prune_scope": "global"}, "backbone_merge.prune_scope='global'"),
    ({"prune_rule": "percentile"}, "backbone_merge.prune_rule='percentile'"),
    ({"sign_tie": "zero"}, "backbone_merge.sign_tie='zero'"),
    ({"stock_clamp": "maybe"}, "backbone_merge.stock_clamp='maybe'"),
    ({"stock_eps": -1e-8}, "backbone_merge.stock_eps=-1e-08"),
])
def test_bad_rule_is_one_line_naming_the_key(node, culprit):
    with pytest.raises(FifError) as error:
        MergeRule.from_config(node, "continual.ema_paint.backbone_merge")
    assert culprit in str(error.value) and "\n" not in str(error.value)


# ------------------------------------------------------------------ streaming
class Metered(StateSource):
    """Counts the bytes of the tensors it has handed out that are still alive, and open sources."""

    live = peak = open_now = peak_open = 0

    def __init__(self, inner: StateSource) -> None:
        self.inner, self.name = inner, inner.name

    @classmethod
    def reset(cls) -> None:
        cls.live = cls.peak = cls.open_now = cls.peak_open = 0

    @classmethod
    def _free(cls, n: int) -> None:
        cls.live -= n

    def open(self) -> Metered:
        if getattr(self.inner, "_file", None) is None:
            Metered.open_now += 1
            Metered.peak_open = max(Metered.peak_open, Metered.open_now)
        self.inner.open()
        return self

    def close(self) -> None:
        if getattr(self.inner, "_file", None) is not None:
            Metered.open_now -= 1
        self.inner.close()

    def keys(self) -> list[str]:
        return self.inner.keys()

    def get(self, key: str) -> torch.Tensor:
        tensor = self.inner.get(key)
        Metered.live += tensor.nbytes
        Metered.peak = max(Metered.peak, Metered.live)
        weakref.finalize(tensor, Metered._free, tensor.nbytes)
        return tensor


def _rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def _peak_rss_anon(work) -> tuple[object, int, float]:
    """Run ``work`` while sampling the process's anonymous memory; (result, peak growth, seconds)."""
    start, peak, done = _rss_anon(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_anon() - start)
            time.sleep(0.002)

    thread = threading.Thread(target=sample)
    thread.start()
    t0 = time.perf_counter()
    try:
        result = work()
    finally:
        seconds = time.perf_counter() - t0
        done.set()
        thread.join()
    return result, peak[0], seconds


@pytest.fixture(scope="module")
def thirty_checkpoints(theta0, tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("ckpts")
    return [save_state(folder / f"task_{i:04d}.safetensors", finetuned(theta0, 100 + i)) for i in range(30)]


@pytest.mark.parametrize("method", ["interpolation", "task_arithmetic", "ties", "magmax"])
def test_streaming_merge_of_30_checkpoints_holds_o1_models(theta0, thirty_checkpoints, method):
    model_bytes = sum(v.nbytes for v in theta0.values())
    largest = max(v.nbytes for v in theta0.values())
    n = len(thirty_checkpoints)
    weights = scheme_weights("linear", n)
    Metered.reset()
    sources = [Metered(SafetensorsSource(p)) for p in thirty_checkpoints]
    merge = lambda: merge_states(sources, rule(method, density=0.5), weights, base=theta0)  # noqa: E731
    merged, rss, seconds = _peak_rss_anon(merge)
    print(f"\n{method}: {n} checkpoints of {model_bytes / 2**20:.1f} MiB merged in {seconds:.2f}s; "
          f"peak live loaded {Metered.peak / 2**20:.2f} MiB ({Metered.peak / model_bytes:.2f} models), "
          f"{Metered.peak_open} sources open at once, anonymous memory +{rss / 2**20:.1f} MiB "
          f"({rss / model_bytes:.2f} models; holding all {n} would be {n * model_bytes / 2**20:.0f} MiB)")
    if method in ("interpolation", "task_arithmetic"):
        assert Metered.peak_open == 1 and Metered.peak <= largest  # one file, one tensor at a time
    else:  # all files open, but each model's tensor of a key is read when needed and dropped
        assert Metered.peak_open == n and Metered.peak <= 2 * largest
    assert Metered.live == 0
    assert rss < 3 * model_bytes  # the result + a few tensors (+ what the allocator keeps), not N models
    # the streamed merge is the merge of the models held in memory
    from safetensors.torch import load_file

    key = "transformer.resblocks.2.mlp.c_fc.weight"
    stacked = torch.stack([load_file(str(p))[key] for p in thirty_checkpoints])
    if method == "interpolation":
        expected = (stacked * torch.tensor(weights).view(-1, 1, 1)).sum(0)
    elif method == "task_arithmetic":
        expected = theta0[key] + ((stacked - theta0[key]) * torch.tensor(weights).view(-1, 1, 1)).sum(0)
    else:
        expected = merge_tensor(rule(method, density=0.5), list(stacked), weights, theta0[key])
    assert torch.allclose(merged[key], expected, atol=1e-5)


def test_streaming_names_a_missing_checkpoint_or_key(theta0, tmp_path, thirty_checkpoints):
    with pytest.raises(FifError, match="nothing.safetensors does not exist"):
        merge_states([tmp_path / "nothing.safetensors"], rule("interpolation"))
    partial = save_state(tmp_path / "partial.safetensors", {k: v for k, v in theta0.items() if k != "logit_scale"})
    with pytest.raises(FifError, match="partial.safetensors: it has no tensor 'logit_scale'"):
        merge_states([thirty_checkpoints[0], partial], rule("ties"), base=theta0)
    with pytest.raises(FifError, match="needs the base model"):
        merge_states([theta0], rule("ties"))
