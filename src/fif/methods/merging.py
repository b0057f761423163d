"""Model-merging continual methods: full finetuning per task, merged weights to train from or evaluate.

Names: theta_0 the weights before the stream, theta_t the weights at the end of task t's training,
merge(newer, older) a two-model merge (the newer model gets weight ``weight``), merge_all the
one-shot N-model merge of theta_1..theta_t (theta_0 first when ``include_zero_shot``) with the
``weighting`` scheme. Operators and weights: ``fif.methods.merge_ops``.

The temporal grid (``merge_grid``): where task t+1 starts training (init) x what is evaluated
after task t (eval), over these states:
  latest        theta_t (plain continual finetuning);
  merge_of_all  merge_all(theta_1..theta_t); with ``single_model=keep`` a lone theta_1 is taken as
                it is instead of merged (the reference's offline_merge);
  unrolled      the EMA-style recursion m_t = merge(theta_t, m_{t-1}), starting (``unrolled_start``)
                at m_0 = theta_0 (zero_shot, as the reference's ema_paint and zs_paint) or at
                m_1 = theta_1 (first_task, as the reference's double_merge_* methods);
  zero_shot     theta_0 (init only).
The named methods are cells of it, plus ft_paint's anchor-to-theta_0 merge; each method block may
move its cell with ``init`` / ``eval`` (docs/merging.md lists the reference's cells):
  ema_paint      init unrolled,  eval unrolled       (m_t = merge(theta_t, m_{t-1}))
  ft_paint       init ft,        eval ft             (m_t = merge(theta_t, theta_0))
  zs_paint       init zero_shot, eval merge_of_all   (reference: eval unrolled)
  offline_merge  init latest,    eval merge_of_all   (reference: init zero_shot)

Backbone and head are merged with separate rules (``backbone_merge``, ``head_merge``); ``split``
says which parameters form the head: ``projections`` = visual.proj, text_projection and
logit_scale (see merge_ops.is_head_key), ``towers`` = the reference's split (head = the text
tower and logit_scale, backbone = the image tower, every ``visual.*`` parameter).

Task models needed for merge_of_all are written atomically as safetensors into ``work_dir``
(``<run>/method/task_NNNN.safetensors``) and streamed back for every merge, so a long stream never
holds more than a few models in memory (theta_0, the running merge, the model, the eval copy).
"""

from __future__ import annotations

import copy
from pathlib import Path
from dataclasses import dataclass
from typing import Any, ClassVar
from collections.abc import Callable

import torch

from fif.config.options import Options, block, option
from fif.errors import FifError
from fif.methods.base import GradientMethod, TaskInfo
from fif.methods.context import MethodContext
from fif.methods.merge_ops import MergeRule, is_head_key, scheme_weights
from fif.methods.merge_stream import SourceLike, merge_states, save_state
from fif.methods.registry import register_method

INIT_MODES = ("latest", "merge_of_all", "unrolled", "zero_shot")
EVAL_MODES = ("latest", "merge_of_all", "unrolled")
SPLITS = ("projections", "towers")
UNROLLED_STARTS = ("zero_shot", "first_task")
SINGLE_MODEL = ("merge", "keep")
State = dict[str, torch.Tensor]


def _cpu_copy(model: torch.nn.Module) -> State:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


# Each option of the merging blocks, declared once; a method's block lists the ones it shows (the
# rest keep their defaults, and `+continual.NAME.KEY=...` adds them on the command line).
def _split() -> Any:
    return option("towers", "towers (reference): backbone = visual, head = text tower + logit_scale | projections: "
                  "head = visual.proj, text_projection, logit_scale", choices=SPLITS)


def _unrolled_start() -> Any:
    return option("zero_shot", "zero_shot: m_0 = theta_0 (reference ema_paint / zs_paint) | first_task: m_1 = "
                  "theta_1 (reference double_merge_*)", choices=UNROLLED_STARTS)


def _include_zero_shot() -> Any:
    return option(False, "also merge theta_0, as the oldest model (reference include_zero_shot_in_merge)")


def _single_model() -> Any:
    return option("merge", "merge_of_all of one task model: merge (theta_0 + lambda tau_1, pruned, ...) | keep "
                  "(theta_1 as it is: reference offline_merge)", choices=SINGLE_MODEL)


def _init(default: str | None) -> Any:
    return option(default, "where task t+1 starts training: latest | merge_of_all | unrolled | zero_shot (null: the "
                  "method's own cell)", kind="choice", choices=INIT_MODES, nullable=True)


def _eval(default: str | None) -> Any:
    return option(default, "what is evaluated after task t: latest | merge_of_all | unrolled (null: the method's "
                  "own cell)", kind="choice", choices=EVAL_MODES, nullable=True)


def _rule(part: str) -> Any:
    return block(MergeRule, f"the merge rule of the {part}")


@dataclass(frozen=True)
class MergingOptions(Options):
    """What every merging block takes; the named methods' blocks show a part of it (their subclasses)."""

    split: str = _split()
    init: str | None = _init(None)
    eval: str | None = _eval(None)
    unrolled_start: str = _unrolled_start()
    include_zero_shot: bool = _include_zero_shot()
    single_model: str = _single_model()
    backbone_merge: MergeRule = _rule("backbone")
    head_merge: MergeRule = _rule("head")

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The composed block: only the options this method shows (``shown``)."""
        full = super().defaults()
        return {key: full[key] for key in cls.shown}

    shown: ClassVar[tuple[str, ...]] = ()


@dataclass(frozen=True)
class EmaPaintOptions(MergingOptions):
    """``continual.ema_paint``: train from m_{t-1}; after task t m_t = merge(theta_t, m_{t-1}); evaluate m_t."""

    shown: ClassVar[tuple[str, ...]] = ("split", "unrolled_start", "backbone_merge", "head_merge")


@dataclass(frozen=True)
class FtPaintOptions(MergingOptions):
    """``continual.ft_paint``: train from m_{t-1}; m_t = merge(theta_t, theta_0); evaluate m_t."""

    shown: ClassVar[tuple[str, ...]] = ("split", "backbone_merge", "head_merge")


@dataclass(frozen=True)
class ZsPaintOptions(MergingOptions):
    """``continual.zs_paint``: every task trains from theta_0; evaluate the merge of all task models."""

    eval: str | None = _eval("merge_of_all")
    shown: ClassVar[tuple[str, ...]] = ("split", "eval", "unrolled_start", "include_zero_shot", "single_model",
                                        "backbone_merge", "head_merge")


@dataclass(frozen=True)
class OfflineMergeOptions(MergingOptions):
    """``continual.offline_merge``: continual finetuning; evaluate a one-shot merge of all task checkpoints."""

    init: str | None = _init("latest")
    shown: ClassVar[tuple[str, ...]] = ("split", "init", "include_zero_shot", "single_model", "backbone_merge",
                                        "head_merge")


@dataclass(frozen=True)
class MergeGridOptions(MergingOptions):
    """``continual.merge_grid``: the temporal train-init x eval grid (reference double_merge_<init>_<eval>)."""

    init: str | None = _init("unrolled")
    eval: str | None = _eval("unrolled")
    shown: ClassVar[tuple[str, ...]] = ("init", "eval", "split", "unrolled_start", "include_zero_shot",
                                        "single_model", "backbone_merge", "head_merge")


class MergingMethod(GradientMethod):
    """Full finetuning of every parameter; merging at every task end (modes in the module docstring)."""

    name = "merging"
    init_mode = "latest"
    eval_mode = "latest"
    # end_task merges host copies elementwise (no matmul FLOPs) and writes task checkpoints, which
    # the profiler's fake tensors cannot hold: the budget profiles training steps only.
    profiles_end_of_task = False

    def __init__(self, model: torch.nn.Module, options: MergingOptions, context: MethodContext) -> None:
        super().__init__(model, options, context)
        where = f"continual.{self.name}"
        self.split, self.unrolled_start, self.single_model = options.split, options.unrolled_start, options.single_model
        self.init_mode = options.init or self.init_mode
        self.eval_mode = options.eval or self.eval_mode
        self.include_zero_shot = options.include_zero_shot
        self.rules = {"backbone": options.backbone_merge, "head": options.head_merge}
        self._check_modes(where)
        self.theta0: State = _cpu_copy(model)
        self.unrolled: State | None = None  # m_t; None before the first task (m_0 = theta_0 or none)
        self.anchored: State | None = None  # ft_paint's merge(theta_t, theta_0)
        self.checkpoints: list[str] = []
        self.tasks_done = 0
        self._eval_module: torch.nn.Module | None = None

    def _check_modes(self, where: str) -> None:
        if "merge_of_all" in (self.init_mode, self.eval_mode):
            for part, rule in self.rules.items():
                if rule.method == "slerp":
                    raise FifError(f"{where}.{part}_merge.method='slerp' merges two models, but "
                                   f"{self.name} merges all task models (use another operator)")

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())

    # ------------------------------------------------------------ merging
    def _is_head(self, key: str) -> bool:
        return is_head_key(key) if self.split == "projections" else not key.startswith("visual.")

    def _merge(self, models: list[SourceLike], weights_for: Callable[[MergeRule], list[float]]) -> State:
        keys = list(self.theta0)
        parts = {"backbone": [k for k in keys if not self._is_head(k)], "head": [k for k in keys if self._is_head(k)]}
        merged: State = {}
        for part, subset in parts.items():
            if subset:
                rule = self.rules[part]
                merged.update(merge_states(models, rule, weights_for(rule), base=self.theta0, keys=subset,
                                           salt=self.tasks_done))
        return {k: merged[k] for k in keys}

    def merge_pair(self, older: State, newer: State) -> State:
        """merge(newer, older): the newer model has weight ``weight``, the older 1 - weight."""
        return self._merge([older, newer], lambda rule: [1.0 - rule.weight, rule.weight])

    def merge_all(self, newest: State) -> State:
        """One-shot merge of every task model so far (theta_0 first if include_zero_shot), streamed from disk.

        ``newest`` is theta_t, the last of them: with single_model=keep a lone task model is returned as is."""
        models: list[SourceLike] = ([self.theta0] if self.include_zero_shot else []) + list(self.checkpoints)
        if len(models) == 1 and self.single_model == "keep":
            return newest
        return self._merge(models, lambda rule: scheme_weights(rule.weighting, len(models), rule.exp_base))

    def _work_dir(self) -> Path:
        if self.work_dir is None:
            raise FifError(f"continual.method={self.name} keeps task checkpoints on disk and needs a work folder "
                           f"(build_method(..., work_dir=...); a run gives <run>/method)")
        return Path(self.work_dir)

    # ------------------------------------------------------------ API
    def end_task(self, task: TaskInfo) -> None:
        theta_t = _cpu_copy(self.model)
        self.tasks_done += 1
        modes = {self.init_mode, self.eval_mode}
        if "merge_of_all" in modes:
            path = self._work_dir() / f"task_{self.tasks_done:04d}.safetensors"
            save_state(path, theta_t)
            self.checkpoints.append(str(path))
        if "unrolled" in modes:
            if self.unrolled is None and self.unrolled_start == "first_task":
                self.unrolled = theta_t  # m_1 = theta_1
            else:
                self.unrolled = self.merge_pair(self.unrolled if self.unrolled is not None else self.theta0, theta_t)
        if "ft" in modes:
            self.anchored = self.merge_pair(self.theta0, theta_t)
        cache: dict[str, State] = {}

        def state(mode: str) -> State:
            if mode not in cache:
                cache[mode] = {"latest": lambda: theta_t, "zero_shot": lambda: self.theta0,
                               "unrolled": lambda: self.unrolled, "ft": lambda: self.anchored,
                               "merge_of_all": lambda: self.merge_all(theta_t)}[mode]()
            return cache[mode]

        last = task.index >= task.num_tasks - 1
        model_mode = "latest"
        if not last or self.init_mode == self.eval_mode:
            if self.init_mode != "latest":
                self.model.load_state_dict(state(self.init_mode))
            model_mode = self.init_mode
        if self.eval_mode == model_mode:
            self._eval_module = None
        else:
            self._set_eval(state(self.eval_mode))

    def _set_eval(self, state: State) -> None:
        if self._eval_module is None:
            self._eval_module = copy.deepcopy(self.model)
            for parameter in self._eval_module.parameters():
                parameter.requires_grad_(False)
                parameter.grad = None
        self._eval_module.load_state_dict(state)

    def eval_model(self) -> torch.nn.Module:
        return self._eval_module if self._eval_module is not None else self.model

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["merging"] = {"theta0": self.theta0, "unrolled": self.unrolled, "anchored": self.anchored,
                            "checkpoints": list(self.checkpoints), "tasks_done": self.tasks_done,
                            "eval": _cpu_copy(self._eval_module) if self._eval_module is not None else None}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        held = state["merging"]
        paths = [self._locate(p) for p in held["checkpoints"]]
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise FifError(f"continual.method={self.name}: task checkpoint {missing[0]} is missing (cannot resume)")
        self.theta0, self.unrolled, self.anchored = held["theta0"], held["unrolled"], held["anchored"]
        self.checkpoints, self.tasks_done = paths, int(held["tasks_done"])
        if held["eval"] is not None:
            self._set_eval(held["eval"])
        else:
            self._eval_module = None

    def _locate(self, path: str) -> str:
        """A task checkpoint of the state: the file of that name in this run's work_dir when there is one
        (a run folder that was moved or copied resumes from its own files), else the stored path."""
        if self.work_dir is not None:
            local = Path(self.work_dir) / Path(path).name
            if local.is_file():
                return str(local)
        return str(path)


@register_method
class EmaPaint(MergingMethod):
    """Train from the running merge; m_t = merge(theta_t, m_{t-1}) (default (theta_t + m_{t-1}) / 2)."""

    name, init_mode, eval_mode = "ema_paint", "unrolled", "unrolled"
    summary = "train from the merged model; after each task m_t = merge(θ_t, m_{t−1})"
    Options = EmaPaintOptions


@register_method
class FtPaint(MergingMethod):
    """m_t = merge(theta_t, theta_0); train task t+1 from m_t and evaluate m_t."""

    name, init_mode, eval_mode = "ft_paint", "ft", "ft"
    summary = "m_t = merge(θ_t, θ_0); train from and evaluate m_t"
    Options = FtPaintOptions


@register_method
class ZsPaint(MergingMethod):
    """Every task trains from theta_0; evaluate the merge of all task models."""

    name, init_mode, eval_mode = "zs_paint", "zero_shot", "merge_of_all"
    summary = "every task trains from θ_0; evaluate the merge of all task models"
    Options = ZsPaintOptions


@register_method
class OfflineMerge(MergingMethod):
    """Plain continual finetuning; evaluate a one-shot weighted merge of all task checkpoints."""

    name, init_mode, eval_mode = "offline_merge", "latest", "merge_of_all"
    summary = "plain continual finetuning; evaluate a one-shot merge of all task checkpoints (streamed from <run>/method/)"
    Options = OfflineMergeOptions


@register_method
class MergeGrid(MergingMethod):
    """Any train-init x eval cell: ``continual.merge_grid.init`` and ``.eval``."""

    name, init_mode, eval_mode = "merge_grid", "unrolled", "unrolled"
    summary = ("the temporal train-init × eval grid: init latest | merge_of_all | unrolled | zero_shot × eval latest | "
        "merge_of_all | unrolled (ema_paint = unrolled × unrolled, zs_paint = zero_shot × merge_of_all, offline_merge "
        "= latest × merge_of_all)")
    Options = MergeGridOptions
    cost_table_row = False  # its cells cost what the named merging methods cost
