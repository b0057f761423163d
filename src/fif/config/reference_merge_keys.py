"""The reference's model-merging keys (``continual.<method>.<part>_merge.<operator>.<param>``) in ours.

The reference gives every operator its own sub-block (``ties.prune_percentile``,
``task_arithmetic.scaling_factor``, ...) and reads only the one its ``method`` selects; ours has
one rule per part (``density``, ``scaling``, ...). So a sub-block is converted only when it is the
selected operator's (or when the method is not given alongside it), and the conversion also sets
the options that reproduce the reference's semantics (docs/merging.md, "Differences from the
reference"): task arithmetic sums, TIES prunes over the whole part with its k-th-value rule, ...

Hand-written for the same reason as fif.config.reference_keys: a table of facts about one other codebase.
"""

from __future__ import annotations

import re
from typing import Any
from collections.abc import Callable

from fif.errors import FifError

Pair = tuple[str, Any]

GRID = {"all": "merge_of_all", "ft": "latest", "unrolled": "unrolled", "zs": "zero_shot"}
DOUBLE_MERGE = re.compile(r"^double_merge_(all|ft|unrolled|zs)_(all|ft|unrolled)$")
PART_KEY = re.compile(r"^continual\.(?P<method>ema_paint|ft_paint|zs_paint|offline_merge|double_merge_[a-z]+_[a-z]+)"
                      r"\.(?P<part>backbone_merge|head_merge)\.(?P<rest>.+)$")
TASK_VECTOR_OPS = ("task_arithmetic", "ties", "dare_ties", "breadcrumbs_ties")
NO_LINES_OPS = ("slerp", "magmax", "random", "model_stock")  # the reference silently skips LiNeS for these
LINES_SHAPES = {"linear": 1.0, "quadratic": 2.0, "sqrt": 0.5}
WEIGHTINGS = {None: "uniform", "exp": "exponential", "reverse_exp": "reverse_exponential"}
REFERENCE_PRUNING = (("prune_scope", "model"), ("prune_rule", "kth_value"), ("sign_tie", "majority"))


def _kept(p: Any) -> float:
    return round(1.0 - float(p), 12)  # prune_percentile is the share pruned; ours (density) the share kept


def _interpolation_weight(value: Any) -> list[Pair]:
    if value is None:
        return [("weight", 0.5)]
    if isinstance(value, list) and len(value) == 2:
        return [("weight", float(value[0]))]
    raise FifError(f"interpolation.weight_coefficients={value!r}: only null or two weights [a, b] have a "
                   f"counterpart here (weight=a)")


def _slerp_weight(value: Any) -> list[Pair]:
    if value is None:
        return [("weight", 0.5)]
    if isinstance(value, list) and len(value) == 2:
        return [("weight", round(1.0 - float(value[0]), 12))]  # the reference's first weight is the older model's
    raise FifError(f"slerp.weight_coefficients={value!r}: only null or two weights [a, b] have a counterpart here")


# (operator, parameter) -> our rule keys and values.
OPERATOR_PARAMS: dict[tuple[str, str], Callable[[Any], list[Pair]]] = {
    ("interpolation", "weight_coefficients"): _interpolation_weight,
    ("slerp", "weight_coefficients"): _slerp_weight,
    ("task_arithmetic", "scaling_factor"): lambda v: [("scaling", float(v)), ("aggregate", "sum")],
    ("ties", "prune_percentile"): lambda v: [("density", _kept(v)), *REFERENCE_PRUNING],
    ("dare_ties", "prune_percentile"): lambda v: [("density", _kept(v)), *REFERENCE_PRUNING[::2]],
    ("breadcrumbs_ties", "prune_percentile"): lambda v: [("bottom_drop", float(v)), *REFERENCE_PRUNING],
    ("breadcrumbs_ties", "top_prune_percentile"): lambda v: [("top_drop", float(v))],
    ("model_stock", "eps"): lambda v: [("stock_eps", float(v)), ("stock_clamp", False)],
}
for _op in ("ties", "dare_ties", "breadcrumbs_ties", "magmax", "random"):
    OPERATOR_PARAMS[(_op, "scaling_factor")] = lambda v: [("scaling", float(v))]
for _op in ("ties", "dare_ties", "breadcrumbs_ties"):
    OPERATOR_PARAMS[(_op, "merge_function")] = lambda v: [("aggregate", str(v))]


REFERENCE_OPERATORS = {operator for operator, _ in OPERATOR_PARAMS} | {"tall_masks"}


def is_merge_key(key: str, value: Any = None) -> bool:
    """A reference merging key this module converts (``continual.method`` only for double_merge_*)."""
    if key == "continual.method":
        return isinstance(value, str) and bool(DOUBLE_MERGE.match(value))
    if key in ("continual.offline_merge.include_zero_shot_in_merge", "continual.offline_merge.interpolation_weighting"):
        return True
    match = PART_KEY.match(key)
    if not match:
        return False
    if match.group("method").startswith("double_merge"):
        return True  # no block of ours has that name
    rest = match.group("rest")  # our own rule keys (weight, density, lines.enabled, ...) pass through
    return rest in ("apply_lines", "lines_params") or ("." in rest and rest.partition(".")[0] in REFERENCE_OPERATORS)


def _ours(method: str) -> str:
    return "merge_grid" if method.startswith("double_merge") else method


def translate_merge(pairs: list[Pair], context: list[Pair] | None = None) -> tuple[list[Pair], list[str]]:
    """Reference merging pairs (``is_merge_key``) -> ours, with one note per reference key.

    ``context``: every pair given together (the ``<part>.method`` keys there decide which operator
    sub-blocks count); default: ``pairs`` themselves.
    """
    selected = {(m.group("method"), m.group("part")): value for key, value in (context or pairs)
                if (m := PART_KEY.match(key)) and m.group("rest") == "method"}
    out: list[Pair] = []
    notes: list[str] = []
    lines: list[tuple[str, str, Any]] = []
    for key, value in pairs:
        if key == "continual.method":
            init, evaluate = DOUBLE_MERGE.match(value).groups()
            out += [("continual.method", "merge_grid"), ("continual.merge_grid.init", GRID[init]),
                    ("continual.merge_grid.eval", GRID[evaluate]), ("continual.merge_grid.unrolled_start", "first_task")]
            notes.append(f"note: continual.method={value} is the reference's; using continual.method=merge_grid "
                         f"init={GRID[init]} eval={GRID[evaluate]} unrolled_start=first_task")
            continue
        if key.startswith("continual.offline_merge.") and not PART_KEY.match(key):
            converted = _offline_key(key, value, selected)
            out += converted
            notes.append(f"note: {key} is the reference's name; using "
                         + " ".join(f"{k}={_show(v)}" for k, v in converted))
            continue
        match = PART_KEY.match(key)
        method, part, rest = match.group("method"), match.group("part"), match.group("rest")
        base = f"continual.{_ours(method)}.{part}"
        if rest in ("apply_lines", "lines_params"):
            lines.append((method, part, (rest, value)))
            continue
        converted = _part_key(base, rest, value, selected.get((method, part)), key)
        if converted is None:
            notes.append(f"note: {key} is inert (the reference's {part}.method is {selected[(method, part)]}), ignored")
            continue
        out += converted
        notes.append(f"note: {key} is the reference's name; using "
                     + " ".join(f"{k}={_show(v)}" for k, v in converted))
    for method, part, (rest, value) in lines:
        converted = _lines(f"continual.{_ours(method)}.{part}", rest, value, selected.get((method, part)),
                           f"continual.{method}.{part}.{rest}")
        out += converted
        notes.append(f"note: continual.{method}.{part}.{rest} is the reference's name; using "
                     + " ".join(f"{k}={_show(v)}" for k, v in converted))
    return out, notes


def _show(value: Any) -> str:
    return {True: "true", False: "false", None: "null"}.get(value, str(value)) if not isinstance(value, float) \
        else repr(value)


def _part_key(base: str, rest: str, value: Any, selected: Any, key: str) -> list[Pair] | None:
    """One ``<part>.<rest>`` key; None when its operator is not the part's selected one (inert)."""
    if rest == "method":
        if value == "tall_masks":
            raise FifError(f"{key}=tall_masks (a reference merge) has no counterpart here")
        return [(f"{base}.method", value)]
    operator, _, param = rest.partition(".")
    convert = OPERATOR_PARAMS.get((operator, param))
    if convert is None:
        raise FifError(f"{key} (a reference key) has no counterpart here (docs/merging.md lists the merge keys)")
    if selected is not None and selected != operator:
        return None
    return [(f"{base}.{ours}", converted) for ours, converted in convert(value)]


def _lines(base: str, rest: str, value: Any, selected: Any, key: str) -> list[Pair]:
    """apply_lines / lines_params: LiNeS, as the reference applies it per operator."""
    if rest == "lines_params":
        if not (isinstance(value, list) and len(value) == 4 and value[3] in LINES_SHAPES):
            raise FifError(f"{key}={value!r}: expected [alpha, beta, flag, linear|quadratic|sqrt]")
        return [(f"{base}.lines.alpha", float(value[0])), (f"{base}.lines.beta", float(value[1])),
                (f"{base}.lines.power", LINES_SHAPES[value[3]])]
    enabled = bool(value)
    if enabled and selected == "interpolation":
        raise FifError(f"{key}=true with interpolation: the reference fails on this combination (LiNeS needs "
                       f"task vectors); use a task-vector method or apply_lines=false")
    if selected in NO_LINES_OPS:
        return [(f"{base}.lines.enabled", False)]  # the reference never applies LiNeS to these operators
    pairs: list[Pair] = [(f"{base}.lines.enabled", enabled)]
    if enabled:
        pairs.append((f"{base}.scaling", 1.0))  # with LiNeS the reference ignores scaling_factor
    return pairs


def _offline_key(key: str, value: Any, selected: dict) -> list[Pair]:
    if key.endswith("include_zero_shot_in_merge"):
        return [("continual.offline_merge.include_zero_shot", bool(value))]
    weighting = WEIGHTINGS.get(value, value)
    parts = [part for part in ("backbone_merge", "head_merge")
             if selected.get(("offline_merge", part), "interpolation") == "interpolation"]
    return [(f"continual.offline_merge.{part}.weighting", weighting) for part in parts]
