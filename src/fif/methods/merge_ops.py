"""Merge operators on single tensors, the weighting schemes of offline merging, and LiNeS.

Every operator works on one parameter at a time: it reads that parameter's tensor of model i
(oldest first) through ``load(i)`` when it needs it, gets the normalised weights w (sum 1) and,
for task-vector operators, the base tensor theta_0. Task vectors are tau_i = theta_i - theta_0.
Operators keep running sums instead of stacking the N tensors (the ties family reads each model
twice: sign votes, then the disjoint mean), so memory does not grow with N. The streaming driver
in ``fif.methods.merge_stream`` reads the tensors from checkpoint files.

Operators (``MergeRule.method``):
  interpolation     sum_i w_i theta_i; a weight of exactly 0 drops the model, so weights (0, 1)
                    return the second model bit-identically.
  slerp             two models a, b, t = w_b: spherical interpolation of the raw weights per
                    tensor; |cos(a, b)| > slerp_threshold (near-parallel) or a zero tensor: lerp.
  task_arithmetic   aggregate=mean: theta_0 + lambda * sum_i w_i tau_i (uniform w: lambda times the
                    mean task vector); aggregate=sum: theta_0 + lambda * N sum_i w_i tau_i (uniform
                    w: lambda times the plain sum, the reference's TaskArithmetic).
  ties              TIES (Yadav et al. 2023): prune each tau_i to its large magnitudes (below),
                    elect a sign per entry (``sign``: total = sign of the sum, frequency = majority
                    count; a vote of exactly 0 gets ``sign_tie``), then combine the entries that
                    agree with it, m_i = [sign(tau_i) = elected]: aggregate=mean (disjoint mean)
                    theta_0 + lambda * sum_i m_i N w_i tau_i / max(sum_i m_i, 1); aggregate=sum
                    theta_0 + lambda * sum_i m_i N w_i tau_i; aggregate=max theta_0 + lambda *
                    elected * max_i |m_i N w_i tau_i|. Uniform weights: N w_i = 1 (the paper's
                    disjoint mean); otherwise peft's weighted form.
  dare_ties         DARE (Yu et al. 2024): keep each entry with probability ``density`` and
                    rescale by 1/density (seeded, per entry), then sign election + aggregate as ties.
  breadcrumbs_ties  Model Breadcrumbs (Davari & Belilovsky 2023): drop each tau_i's
                    ``top_drop`` largest and ``bottom_drop`` smallest magnitudes, then as ties.
  magmax            MagMax (Marczak et al. 2024): per entry the tau_i of largest magnitude:
                    theta_0 + lambda * tau_argmax (lambda = 1 returns that model's value).
  random            per entry one model chosen at random (probabilities w, seeded):
                    theta_0 + lambda * tau_pick (lambda = 1 returns that model's value).
  model_stock       Model Stock (Jang et al. 2024): cos = mean pairwise cosine of the tau_i,
                    cos_ij = <tau_i, tau_j> / (|tau_i| |tau_j| + stock_eps), clamped to [0, 1]
                    (``stock_clamp``; false: [-1, 1], the reference), t = N cos / (1 + (N - 1) cos
                    + stock_eps), merge = t * mean_i theta_i + (1 - t) theta_0 (weights unused; a
                    zero task vector counts as cosine 0 with every other).
Non-floating tensors (integer buffers) are copied from the newest model.

Pruning of the ties family (``prune_scope`` x ``prune_rule``), n = the entries ranked together:
  prune_scope=tensor  each parameter tensor of each tau_i is ranked on its own (peft, ours);
  prune_scope=model   each tau_i is ranked over all parameters merged together (the backbone or
                      the head part), as the reference's flattened task vectors (merge_stream
                      does the extra pass; ``sign_tie=majority`` then also counts over the part).
  prune_rule=top_k      ties keeps exactly int(density n) largest magnitudes (per tensor: exact
                        even among equal magnitudes; per model: every entry >= the k-th largest);
                        breadcrumbs drops exactly int(top_drop n) largest, int(bottom_drop n) smallest.
  prune_rule=kth_value  the reference's thresholds: ties keeps every entry >= the k-th smallest
                        magnitude, k = int(n (1 - density)) (so n - k + 1 entries; k = 0 keeps all);
                        breadcrumbs keeps the magnitudes between the (int(bottom_drop n) + 1)-th
                        smallest and the (int(top_drop n) + 1)-th largest, equal ones included.
  dare_ties draws each entry on its own, so neither applies to its pruning.

Weighting schemes for N-model merges, model i = 1..N oldest first, normalised to sum 1:
  uniform 1; linear i; sqrt sqrt(i); quadratic i^2; cubic i^3; fifth i^5; tenth i^10;
  exponential exp_base^(i-1); log ln(i + 1); reverse_<scheme>: that scheme's weights, newest first.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from fif.config.options import Options, block, option
from fif.errors import FifError

OPERATORS = ("interpolation", "slerp", "task_arithmetic", "ties", "dare_ties", "breadcrumbs_ties",
             "magmax", "random", "model_stock")
NEEDS_BASE = frozenset(OPERATORS) - {"interpolation", "slerp"}
LINEAR = frozenset({"interpolation", "task_arithmetic"})  # merged by accumulation, one model at a time
TIES_FAMILY = frozenset({"ties", "dare_ties", "breadcrumbs_ties"})
BASE_WEIGHTINGS = ("uniform", "linear", "sqrt", "quadratic", "cubic", "fifth", "tenth", "exponential", "log")
WEIGHTINGS = BASE_WEIGHTINGS + tuple(f"reverse_{s}" for s in BASE_WEIGHTINGS[1:])
SIGN_METHODS = ("total", "frequency")
SIGN_TIES = ("positive", "majority")
AGGREGATES = ("mean", "sum", "max")
PRUNE_SCOPES = ("tensor", "model")
PRUNE_RULES = ("top_k", "kth_value")
NON_BLOCK_RULES = ("alpha", "head_last")

# The "head": projections into the joint space and the temperature; everything else is "backbone".
HEAD_NAMES = frozenset({"visual.proj", "text_projection", "logit_scale", "logit_bias"})
HEAD_PREFIXES = ("visual.head.", "text_projection.", "text.proj.")
OUTPUT_SIDE = ("ln_post.", "ln_final.")
Loader = Callable[[int], torch.Tensor]  # model i's tensor of one parameter
Bounds = tuple[float, float]  # the magnitudes [low, high] a pruned task vector keeps
_BLOCK = re.compile(r"^(?P<tower>.*?)(?:resblocks|blocks|layers|layer)\.(?P<index>\d+)\.")


def is_head_key(name: str) -> bool:
    """True for the projection layers and the logit scale of an open_clip model."""
    return name in HEAD_NAMES or name.startswith(HEAD_PREFIXES)


@dataclass(frozen=True)
class Lines(Options):
    """LiNeS: block l's update scaled by alpha + beta * (l / (L - 1))^power."""

    enabled: bool = option(False, "scale updates by depth (LiNeS)")
    alpha: float = option(0.5, "scale of the first block (and, with non_block alpha, outside the blocks)")
    beta: float = option(0.5, "added scale at the last block")
    power: float = option(1.0, "reference lines_params[3]: linear 1.0 | quadratic 2.0 | sqrt 0.5")
    non_block: str = option("alpha", "outside the blocks: alpha | head_last (projections, logit scale, final LNs: "
                            "alpha + beta)", choices=NON_BLOCK_RULES)


@dataclass(frozen=True)
class MergeRule(Options):
    """One operator and its settings (the ``backbone_merge`` / ``head_merge`` blocks of every merging method)."""

    method: str = option("interpolation", "the merge operator", choices=OPERATORS)
    weight: float = option(0.5, "two-model merges (ema_paint, ft_paint, unrolled): weight of the newer model theta_t",
                           minimum=0.0, maximum=1.0)
    weighting: str = option("uniform", "N-model merges (zs_paint, offline_merge, merge_of_all): the weight of each "
                            "task model", choices=WEIGHTINGS)
    exp_base: float = option(2.0, "exponential weighting: w_i proportional to exp_base^(i-1), i = 1 the oldest model",
                             minimum=0.0, exclusive_min=True)
    scaling: float = option(1.0, "lambda of task-vector operators: theta_0 + lambda * merged task vector")
    aggregate: str = option("mean", "task_arithmetic: mean (lambda * weighted mean of the task vectors) | sum (lambda "
                            "* their sum: reference); ties family: mean | sum | max of the agreeing entries",
                            choices=AGGREGATES)
    density: float = option(0.2, "ties: fraction of each task vector kept (largest magnitudes; reference "
                            "prune_percentile = 1 - density); dare_ties: keep probability", minimum=0.0, maximum=1.0,
                            exclusive_min=True)
    prune_scope: str = option("tensor", "ties family: rank magnitudes per parameter tensor | model (over the whole "
                              "backbone / head part: reference)", choices=PRUNE_SCOPES)
    prune_rule: str = option("top_k", "ties family: top_k (exactly int(density n) kept) | kth_value (keep >= the "
                             "int(n (1 - density))-th smallest: reference)", choices=PRUNE_RULES)
    sign: str = option("total", "ties sign election: total (sign of the sum) | frequency (majority count)",
                       choices=SIGN_METHODS)
    sign_tie: str = option("positive", "ties family, entries whose votes sum to exactly 0: positive | majority (the "
                           "sign most entries of the prune scope elect: reference)", choices=SIGN_TIES)
    top_drop: float = option(0.01, "breadcrumbs_ties: fraction of largest magnitudes dropped (reference "
                             "top_prune_percentile)", minimum=0.0, maximum=1.0, exclusive_max=True)
    bottom_drop: float = option(0.8, "breadcrumbs_ties: fraction of smallest magnitudes dropped (reference "
                                "prune_percentile)", minimum=0.0, maximum=1.0, exclusive_max=True)
    seed: int = option(0, "dare_ties / random: draws seeded per parameter and task")
    slerp_threshold: float = option(0.9995, "slerp: |cos| above this falls back to linear interpolation",
                                    minimum=0.0, maximum=1.0, exclusive_min=True)
    stock_clamp: bool = option(True, "model_stock: mean cosine clamped to [0, 1] | false: [-1, 1] (reference)")
    stock_eps: float = option(0.0, "model_stock: added to the cosine's and the ratio's denominators (reference eps: "
                              "1.0e-8)", minimum=0.0)
    lines: Lines = block(Lines, "LiNeS: depth-scaled updates")

    @classmethod
    def from_config(cls, node: Mapping[str, Any] | None, where: str) -> MergeRule:
        """Build and validate a rule; ``where`` (e.g. ``continual.ema_paint.backbone_merge``) names errors."""
        return cls.from_block(node, where)

    def vector_scale(self, n: int) -> float:
        """The factor of task_arithmetic's weighted task-vector sum: lambda, times N for aggregate=sum."""
        return self.scaling * n if self.aggregate == "sum" and self.method == "task_arithmetic" else self.scaling

    def validate(self, where: str = "merge") -> None:
        """The rules across options (each option's own range is its declaration's)."""
        if self.method == "task_arithmetic" and self.aggregate == "max":
            raise FifError(f"{where}.aggregate='max' is not valid: expected mean or sum for task_arithmetic "
                           f"(max is for the ties family)")
        if not self.top_drop + self.bottom_drop < 1.0:
            raise FifError(f"{where}.top_drop={self.top_drop!r} is not valid: expected top_drop, bottom_drop >= 0 "
                           f"with top_drop + bottom_drop < 1 (bottom_drop={self.bottom_drop})")


# ------------------------------------------------------------------ weights
def scheme_weights(scheme: str, n: int, exp_base: float = 2.0) -> list[float]:
    """Normalised weights of ``n`` models, oldest first (formulas in the module docstring)."""
    if n < 1:
        raise FifError(f"cannot weight {n} models")
    raw = {"uniform": lambda i: 1.0, "linear": float, "sqrt": math.sqrt, "quadratic": lambda i: float(i ** 2),
           "cubic": lambda i: float(i ** 3), "fifth": lambda i: float(i ** 5), "tenth": lambda i: float(i ** 10),
           "exponential": lambda i: exp_base ** (i - 1), "log": lambda i: math.log(i + 1)}
    if scheme not in WEIGHTINGS:
        raise FifError(f"weighting={scheme!r} is not valid: expected one of {', '.join(WEIGHTINGS)}")
    base = scheme.removeprefix("reverse_")
    values = [raw[base](i) for i in range(1, n + 1)]
    return normalise(values[::-1] if base != scheme else values)


def normalise(weights: Sequence[float]) -> list[float]:
    values = [float(w) for w in weights]
    if any(w < 0 or not math.isfinite(w) for w in values) or sum(values) <= 0:
        raise FifError(f"merge weights {values} are not valid: expected finite weights >= 0 with a positive sum")
    total = sum(values)
    return [w / total for w in values]


# ------------------------------------------------------------------ LiNeS
def tower_depths(keys: Sequence[str]) -> dict[str, int]:
    """Number of blocks per transformer, keyed by the name prefix before the block list."""
    depths: dict[str, int] = {}
    for key in keys:
        match = _BLOCK.match(key)
        if match:
            tower = match.group("tower")
            depths[tower] = max(depths.get(tower, 0), int(match.group("index")) + 1)
    return depths


def lines_factor(name: str, lines: Lines, depths: Mapping[str, int]) -> float:
    """The LiNeS scale of parameter ``name``: alpha + beta * (l / (L - 1))^power."""
    match = _BLOCK.match(name)
    if match and match.group("tower") in depths:
        depth, index = depths[match.group("tower")], int(match.group("index"))
        position = index / (depth - 1) if depth > 1 else 1.0
        return lines.alpha + lines.beta * position ** lines.power
    if lines.non_block == "head_last" and (is_head_key(name) or any(p in name for p in OUTPUT_SIDE)):
        return lines.alpha + lines.beta
    return lines.alpha


# ------------------------------------------------------------------ per-tensor operators
def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision tensors are merged in float32."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def as_working(t: torch.Tensor) -> torch.Tensor:
    return t.to(working_dtype(t.dtype))


def interpolate_loaded(load: Loader, weights: Sequence[float]) -> torch.Tensor:
    """sum_i w_i t_i; terms of weight 0 are skipped and weight 1 copies, so (0, 1) is bit-exact."""
    out: torch.Tensor | None = None
    for i, w in enumerate(weights):
        if w == 0:
            continue
        tensor = load(i)
        term = tensor.clone() if w == 1 else tensor * w
        out = term if out is None else out.add_(term)
    assert out is not None, "weights sum to 1, so one is non-zero"
    return out


def interpolate(tensors: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    return interpolate_loaded(lambda i: as_working(tensors[i]), weights)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, threshold: float = 0.9995, eps: float = 1e-8) -> torch.Tensor:
    """Spherical interpolation from a (t=0) to b (t=1); linear where the two are near-parallel."""
    if t == 0:
        return as_working(a).clone()
    if t == 1:
        return as_working(b).clone()
    a64, b64 = a.double(), b.double()
    na, nb = a64.norm(), b64.norm()
    if na < eps or nb < eps:
        return interpolate([a, b], [1 - t, t])
    cos = float((a64 * b64).sum() / (na * nb))
    if abs(cos) > threshold:
        return interpolate([a, b], [1 - t, t])
    omega = math.acos(max(-1.0, min(1.0, cos)))
    sin_omega = math.sin(omega)
    scale_a, scale_b = math.sin((1 - t) * omega) / sin_omega, math.sin(t * omega) / sin_omega
    return (as_working(a) * scale_a).add_(as_working(b) * scale_b)


def magnitude_prune(tau: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the int(density * numel) largest magnitudes (as peft's magnitude_based_pruning)."""
    if density >= 1:
        return tau
    mask = torch.zeros_like(tau).reshape(-1)
    top = torch.topk(tau.abs().reshape(-1), k=int(density * tau.numel()), largest=True)
    mask[top[1]] = 1
    return tau * mask.reshape(tau.shape)


def random_prune(tau: torch.Tensor, density: float, generator: torch.Generator | None) -> torch.Tensor:
    """DARE: keep each entry with probability density, rescale the kept ones by 1/density."""
    if density >= 1:
        return tau
    mask = torch.bernoulli(torch.full_like(tau, density), generator=generator)
    return tau * mask / density


def breadcrumbs_prune(tau: torch.Tensor, top_drop: float, bottom_drop: float) -> torch.Tensor:
    """Zero the int(top_drop * n) largest and int(bottom_drop * n) smallest magnitudes."""
    n = tau.numel()
    k_top, k_bottom = int(top_drop * n), int(bottom_drop * n)
    if k_top == 0 and k_bottom == 0:
        return tau
    # the n - k_bottom largest magnitudes, largest first; the first k_top of them are dropped too
    kept = torch.topk(tau.abs().reshape(-1), n - k_bottom, largest=True, sorted=True).indices[k_top:]
    mask = torch.zeros(n, dtype=tau.dtype)
    mask[kept] = 1
    return tau * mask.reshape(tau.shape)


def order_statistics(values: np.ndarray, ranks: Sequence[int]) -> list[float]:
    """The values of 1-based ``ranks`` in ascending order. Partitions ``values`` in place with numpy's
    introselect: O(n) and no index array (torch.kthvalue would allocate 8 more bytes per entry, a lot
    for the magnitudes of a whole model)."""
    values.partition(sorted({r - 1 for r in ranks}))
    return [float(values[r - 1]) for r in ranks]


def magnitude_bounds(rule: MergeRule, magnitudes: np.ndarray) -> Bounds:
    """[low, high]: the magnitudes a pruned task vector keeps, ranked over ``magnitudes`` (reordered).

    The thresholds of ``prune_rule`` (module docstring); equal magnitudes at a threshold are all kept.
    """
    n = magnitudes.size
    if n == 0:
        return 0.0, math.inf
    if rule.method == "ties":
        if rule.prune_rule == "kth_value":
            # The reference's p is 1 - density; rounding to 12 decimals gives back the very float p a
            # config wrote (1 - (1 - 0.2) is 0.19999999999999996, which would change int(n p) by one).
            k = int(n * round(1.0 - rule.density, 12))
            return (order_statistics(magnitudes, [k])[0] if k >= 1 else 0.0), math.inf
        k = int(rule.density * n)
        return (order_statistics(magnitudes, [n - k + 1])[0] if k >= 1 else math.inf), math.inf
    low, high = order_statistics(magnitudes, [int(rule.bottom_drop * n) + 1, n - int(rule.top_drop * n)])
    return low, high


def threshold_prune(tau: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    """tau where low <= |tau| <= high, else 0."""
    magnitude = tau.abs()
    keep = magnitude >= bounds[0]
    if bounds[1] < math.inf:
        keep &= magnitude <= bounds[1]
    return tau * keep


def _sparsified(rule: MergeRule, tau: torch.Tensor, generator: torch.Generator | None,
                bounds: Bounds | None) -> torch.Tensor:
    if rule.method == "dare_ties":
        return random_prune(tau, rule.density, generator)
    if bounds is None and rule.prune_rule == "top_k" and rule.prune_scope == "tensor":
        if rule.method == "ties":
            return magnitude_prune(tau, rule.density)
        return breadcrumbs_prune(tau, rule.top_drop, rule.bottom_drop)
    if bounds is None:  # thresholds from this tensor alone (merge_stream passes a whole part's)
        bounds = magnitude_bounds(rule, tau.abs().reshape(-1).numpy())
    return threshold_prune(tau, bounds)


def sign_votes(rule: MergeRule, load: Loader, n: int, base: torch.Tensor, generator: torch.Generator | None = None,
               bounds: Sequence[Bounds] | None = None) -> torch.Tensor:
    """Per entry the sum of the sparsified tau_i (sign=total) or of their signs (sign=frequency)."""
    votes = torch.zeros_like(base)
    for i in range(n):
        tau = _sparsified(rule, load(i) - base, generator, bounds[i] if bounds is not None else None)
        votes.add_(tau if rule.sign == "total" else tau.sign())
    return votes


def majority_sign(votes: torch.Tensor) -> float:
    """The sign most entries elect (+1 / -1; the reference's 0 selects the negative entries, as -1 does)."""
    return 1.0 if float(torch.sign(votes).sum()) > 0 else -1.0


def elect(rule: MergeRule, votes: torch.Tensor, tie_sign: float | None = None) -> torch.Tensor:
    """The elected sign per entry; a vote of exactly 0 gets ``tie_sign`` (None: by ``rule.sign_tie`` here)."""
    if tie_sign is None:
        tie_sign = 1.0 if rule.sign_tie == "positive" else majority_sign(votes)
    return torch.where(votes > 0, 1.0, torch.where(votes < 0, -1.0, tie_sign)).to(votes.dtype)


def ties_family(rule: MergeRule, load: Loader, weights: Sequence[float], base: torch.Tensor,
                generator: torch.Generator | None = None, bounds: Sequence[Bounds] | None = None,
                tie_sign: float | None = None) -> torch.Tensor:
    """Sparsify each tau_i, elect a sign per entry, aggregate the agreeing entries, in two passes.

    Pass 1 sums the votes; pass 2 recomputes each sparsified tau_i (DARE's draws replayed from the
    same generator state) and aggregates m_i N w_i tau_i, m_i = [sign(tau_i) == elected]. Memory:
    a few tensors, whatever N. ``bounds`` (one per model) and ``tie_sign`` come from a whole part
    when the pruning scope is the model (merge_stream); None: from this tensor.
    """
    n = len(weights)
    replay = generator.get_state() if generator is not None else None
    elected = elect(rule, sign_votes(rule, load, n, base, generator, bounds), tie_sign)
    if generator is not None:
        generator.set_state(replay)
    mixed = torch.zeros_like(base)
    count = torch.zeros_like(base) if rule.aggregate == "mean" else None
    for i, w in enumerate(weights):
        tau = _sparsified(rule, load(i) - base, generator, bounds[i] if bounds is not None else None)
        agree = tau.sign() == elected
        term = tau * (w * n) * agree
        if rule.aggregate == "max":
            mixed = torch.maximum(mixed, term.abs())
            continue
        mixed.add_(term)
        if count is not None:
            count.add_(agree)
    if rule.aggregate == "max":
        return mixed * elected
    return mixed / torch.clamp(count, min=1.0) if count is not None else mixed


def _apply(base: torch.Tensor, merged_tau: torch.Tensor, scaling: float) -> torch.Tensor:
    return base + merged_tau * scaling if scaling != 1 else base + merged_tau


def magmax(load: Loader, n: int, base: torch.Tensor, scaling: float) -> torch.Tensor:
    """Per entry the model whose task vector is largest in magnitude (the first of equals)."""
    best = load(0).clone()
    best_mag = (best - base).abs()
    for i in range(1, n):
        tensor = load(i)
        mag = (tensor - base).abs()
        better = mag > best_mag
        best = torch.where(better, tensor, best)
        best_mag = torch.maximum(best_mag, mag)
    return best if scaling == 1 else _apply(base, best - base, scaling)


def random_pick(load: Loader, weights: Sequence[float], base: torch.Tensor, scaling: float,
                generator: torch.Generator | None) -> torch.Tensor:
    """Per entry the value of one model drawn with probabilities ``weights``."""
    cdf = torch.tensor(weights, dtype=torch.float64).cumsum(0)
    draws = torch.rand(base.shape, generator=generator, dtype=torch.float64)
    index = torch.searchsorted(cdf, draws.reshape(-1), right=True).clamp(max=len(weights) - 1).reshape(base.shape)
    out = torch.empty_like(base)
    for i in range(len(weights)):
        chosen = index == i
        if bool(chosen.any()):
            out[chosen] = load(i)[chosen]
    return out if scaling == 1 else _apply(base, out - base, scaling)


def _stock_cosine_units(load: Loader, n: int, base: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, float]:
    """(sum_i tau_i, mean pairwise cosine) in one pass, from unit vectors u_i without storing them:
    sum_{i<j} cos_ij = (|sum_i u_i|^2 - sum_i |u_i|^2) / 2 (a zero task vector has u_i = 0)."""
    sum_tau, sum_unit, unit_sq = torch.zeros_like(base), torch.zeros_like(base, dtype=torch.float64), 0.0
    for i in range(n):
        tau = load(i) - base
        norm = float(tau.double().norm())
        if norm > eps:
            unit = tau.double() / norm
            sum_unit.add_(unit)
            unit_sq += float((unit * unit).sum())
        sum_tau.add_(tau)
    return sum_tau, (float((sum_unit * sum_unit).sum()) - unit_sq) / (n * (n - 1))


def _stock_cosine_pairs(load: Loader, n: int, base: torch.Tensor, eps: float) -> tuple[torch.Tensor, float]:
    """(sum_i tau_i, mean over pairs of <tau_i, tau_j> / (|tau_i| |tau_j| + eps)), the reference's cosine.

    The eps does not factor into unit vectors, so each pair is read: about N^2 / 2 reads of the parameter."""
    sum_tau, norms = torch.zeros_like(base), []
    for i in range(n):
        tau = load(i) - base
        norms.append(float(tau.double().norm()))
        sum_tau.add_(tau)
    total = 0.0
    for i in range(n - 1):
        tau_i = (load(i) - base).double()
        for j in range(i + 1, n):
            total += float((tau_i * (load(j) - base).double()).sum()) / (norms[i] * norms[j] + eps)
    return sum_tau, total / (n * (n - 1) / 2)


def model_stock(load: Loader, n: int, base: torch.Tensor, clamp: bool = True, eps: float = 0.0) -> torch.Tensor:
    """t = N cos / (1 + (N - 1) cos + eps) from the mean pairwise cosine; theta_0 + t * mean_i tau_i.

    ``clamp``: cos in [0, 1] (a negative mean cosine gives theta_0); false: [-1, 1] as the reference,
    where t < 0 moves away from the task models and grows without bound near cos = -1 / (N - 1).
    """
    if n == 1:
        return load(0).clone()
    sum_tau, cos = _stock_cosine_pairs(load, n, base, eps) if eps > 0 else _stock_cosine_units(load, n, base)
    cos = max(0.0 if clamp else -1.0, min(1.0, cos))
    ratio = n * cos / (1 + (n - 1) * cos + eps)
    return base + sum_tau * (ratio / n)


def merge_loaded(rule: MergeRule, load: Loader, weights: Sequence[float], base: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, bounds: Sequence[Bounds] | None = None,
                 tie_sign: float | None = None) -> torch.Tensor:
    """Merge one parameter; ``load(i)`` gives model i's tensor (oldest first, working dtype, read-only).

    ``bounds`` / ``tie_sign``: the ties family's per-model magnitude bounds and the sign of zero votes
    when they come from a whole part (merge_stream, prune_scope=model); None: from this tensor."""
    method, n = rule.method, len(weights)
    if method in NEEDS_BASE and base is None:
        raise FifError(f"merge operator {method!r} needs the base model theta_0")
    if method == "interpolation":
        return interpolate_loaded(load, weights)
    if method == "slerp":
        if n != 2:
            raise FifError(f"merge operator 'slerp' merges exactly two models, got {n}")
        return slerp(load(0), load(1), weights[1], rule.slerp_threshold)
    assert base is not None
    base = as_working(base)
    if method == "task_arithmetic":
        return _apply(base, interpolate_loaded(lambda i: load(i) - base, weights), rule.vector_scale(n))
    if method == "magmax":
        return magmax(load, n, base, rule.scaling)
    if method == "random":
        return random_pick(load, weights, base, rule.scaling, generator)
    if method == "model_stock":
        return model_stock(load, n, base, rule.stock_clamp, rule.stock_eps)
    return _apply(base, ties_family(rule, load, weights, base, generator, bounds, tie_sign), rule.scaling)


def merge_tensor(rule: MergeRule, tensors: Sequence[torch.Tensor], weights: Sequence[float],
                 base: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Merge one parameter's tensors (oldest first) with ``rule``; result in the working dtype."""
    return merge_loaded(rule, lambda i: as_working(tensors[i]), weights, base, generator)
