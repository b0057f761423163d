"""Typed, validated views of config sections: read a block once, check it once, pass the result.

Each section is a frozen dataclass built from the composed config with ``from_config(cfg)``; a
bad value is a one-line FifError naming the key. Code below the run (methods, budget, schedules)
takes these objects instead of reading string keys out of the whole config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

from omegaconf import DictConfig

from fif.config.blocks import (BUDGET_UNITS, BudgetOptions, ComputeOptions, EvaluationOptions, ExperimentOptions,
                               LogOptions, OptimizerOptions, RunOptions, SchedulerOptions, TaskOptions, check_run_options)
from fif.config.blocks import MEMORY_SOURCES, PRECISIONS  # noqa: F401 - kept importable from here
from fif.config.compose import public_config, to_container, with_values
from fif.config.options import DECLARED, Options
from fif.config.plugins import load_plugins
from fif.errors import FifError

if TYPE_CHECKING:
    import torch

# experiment.task.budget: what the budget is stated in, and how a step is profiled (fif.budget).
BUDGET_KEY = "experiment.task.budget"
UNITS = BUDGET_UNITS

# experiment.compute: how the model step runs on the device (fused AdamW, TF32, compile, checkpointing).
COMPUTE_KEY = "experiment.compute"

# experiment.scheduler: the schedule names and options fif.optim.schedules implements.
SCHEDULER_KEY = "experiment.scheduler"
# (the choices themselves are declared with their options: fif.config.blocks)

_Scheduler = TypeVar("_Scheduler", bound="SchedulerSettings")


@dataclass(frozen=True)
class OptimizerSettings:
    """``experiment.optimizer``: AdamW's peak learning rate, weight decay and gradient clipping."""

    lr: float
    weight_decay: float
    clip_grad_norm: float | None  # None or 0: no clipping
    skip_nonfinite_steps: int = 0  # non-finite steps whose update a run may skip before it stops (fif.train.run)

    def __post_init__(self) -> None:
        """Values made in code are checked against the same declarations as a config's (fif.config.blocks)."""
        OptimizerOptions.from_block({"lr": self.lr, "weight_decay": self.weight_decay, "clip_grad_norm":
                                     self.clip_grad_norm, "skip_nonfinite_steps": self.skip_nonfinite_steps},
                                    "experiment.optimizer")

    @classmethod
    def from_config(cls, cfg: DictConfig) -> OptimizerSettings:
        return cls.from_options(OptimizerOptions.from_block(cfg.experiment.optimizer, "experiment.optimizer"))

    @classmethod
    def from_options(cls, block: OptimizerOptions) -> OptimizerSettings:
        return cls(block.lr, block.weight_decay, block.clip_grad_norm or None,
                   skip_nonfinite_steps=block.skip_nonfinite_steps)


@dataclass(frozen=True)
class ComputeSettings:
    """``experiment.compute``: how the model step runs on the device, never what it computes on the CPU default.

    ``fused_adamw`` is auto (torch's fused AdamW kernel on CUDA, the plain loop elsewhere), true or
    false; ``tf32`` lets CUDA's fp32 matmuls and convolutions use TF32 tensor cores; ``compile``
    torch.compiles the trained model's forward; ``grad_checkpointing`` recomputes the activations in
    the backward pass. Keys missing from older configs take these defaults.
    """

    fused_adamw: bool | None = None  # None: auto
    tf32: bool = True
    compile: bool = False
    grad_checkpointing: bool = False

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ComputeSettings:
        return cls.from_options(ComputeOptions.from_block(cfg.experiment.get("compute"), COMPUTE_KEY))

    @classmethod
    def from_options(cls, block: ComputeOptions) -> ComputeSettings:
        return cls(fused_adamw=None if block.fused_adamw == "auto" else block.fused_adamw, tf32=block.tf32,
                   compile=block.compile, grad_checkpointing=block.grad_checkpointing)

    def fused_for(self, device: torch.device) -> bool:
        """Whether AdamW runs torch's fused kernel on ``device`` (auto: on CUDA only)."""
        return device.type == "cuda" if self.fused_adamw is None else self.fused_adamw


@dataclass(frozen=True)
class TaskSettings:
    """``experiment.task``: how many tasks, the global batch and the samples (steps) each task gets."""

    num: int
    batch_size: int
    n_samples: int

    @classmethod
    def from_config(cls, cfg: DictConfig) -> TaskSettings:
        return cls.from_options(TaskOptions.from_block(cfg.experiment.task, "experiment.task"))

    @classmethod
    def from_options(cls, block: TaskOptions) -> TaskSettings:
        return cls(block.num, block.batch_size, block.n_samples)

    @property
    def steps_from_samples(self) -> int:
        """Steps per task without a compute budget: n_samples // batch_size, at least one batch.

        The one place this is computed (the run, ``fif flops`` and ``fif schedules plot`` use it; with
        ``experiment.task.budget`` set, fif.budget.plan decides the steps instead)."""
        steps = self.n_samples // self.batch_size
        if steps < 1:
            raise FifError(f"experiment.task.n_samples={self.n_samples} is smaller than one batch "
                           f"(experiment.task.batch_size={self.batch_size})")
        return steps


@dataclass(frozen=True)
class BudgetSettings:
    """``experiment.task.budget``: the compute each task gets (unit None: n_samples sets the steps)."""

    unit: str | None  # None | fullft_steps | maf
    amount: float | None  # per task, in the unit; None without a unit
    charge_end_of_task: bool  # a once-per-task pass (EWC's Fisher) is paid from the task's budget
    precision: str  # auto | fp32 | bf16
    memory: str  # auto | count | allocator

    @classmethod
    def from_config(cls, cfg: DictConfig) -> BudgetSettings:
        """The validated block (absent: no budget)."""
        return cls.from_options(BudgetOptions.from_block(cfg.experiment.task.get("budget"), BUDGET_KEY))

    @classmethod
    def from_options(cls, block: BudgetOptions) -> BudgetSettings:
        """A unit needs an amount."""
        key = BUDGET_KEY
        if block.unit is not None and block.amount is None:
            raise FifError(f"{key}.amount=None is not valid: {key}.unit={block.unit} needs a finite number > 0 "
                           f"(e.g. 1420 full-finetuning steps per task)")
        return cls(block.unit, block.amount if block.unit is not None else None, block.charge_end_of_task,
                   block.precision, block.memory)


@dataclass(frozen=True)
class SchedulerSettings:
    """``experiment.scheduler`` with its peak ``experiment.optimizer.lr``, validated on construction.

    fif.optim.schedules.Schedule is this plus the learning-rate function; the options are described
    there and in conf/config.yaml.
    """

    name: str = "cosine_with_linear_warmup"
    lr: float = 1e-5
    warmup: float = 0.1
    cooldown: float = 0.1
    cooldown_shape: str = "linear"
    min_lr_ratio: float = 1e-3
    meta: str = "constant"
    recovery_mode: str = "autoregressive"
    wsd_decay: float = 0.2
    wsd_task_cooldown: bool = False

    def __post_init__(self) -> None:
        """Values made in code (a plot, a test) are checked against the declarations, as a config's are."""
        SchedulerOptions.from_block({"name": self.name, "warmup": self.warmup, "cooldown": self.cooldown,
                                     "cooldown_shape": self.cooldown_shape, "min_lr_ratio": self.min_lr_ratio,
                                     "meta": self.meta, "recovery_mode": self.recovery_mode,
                                     "wsd": {"decay": self.wsd_decay, "task_cooldown": self.wsd_task_cooldown}},
                                    SCHEDULER_KEY)
        OptimizerOptions.check_field("lr", self.lr, "experiment.optimizer.lr")

    @classmethod
    def from_settings(cls: type[_Scheduler], settings: SchedulerSettings) -> _Scheduler:
        """The same settings as this class (Schedule: the same values, with the learning-rate function)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(settings)})

    @classmethod
    def from_config(cls: type[_Scheduler], cfg: DictConfig) -> _Scheduler:
        """From a run config; keys missing from older configs take their declared defaults (a subclass gets
        itself: Schedule.from_config is a Schedule)."""
        node = cfg.experiment.scheduler
        block = SchedulerOptions.from_block(node, SCHEDULER_KEY)
        optimizer = OptimizerOptions.from_block(cfg.experiment.optimizer, "experiment.optimizer")
        return cls.from_options(block, optimizer.lr, node.get("cosine_lr_mul"))

    @classmethod
    def from_options(cls: type[_Scheduler], block: SchedulerOptions, lr: float,
                     cosine_lr_mul: Any = None) -> _Scheduler:
        """``cosine_lr_mul``: min_lr_ratio's name in configs of older versions (now a reference alias)."""
        ratio = cosine_lr_mul
        if ratio is not None:
            SchedulerOptions.check_field("min_lr_ratio", ratio, f"{SCHEDULER_KEY}.cosine_lr_mul")
        return cls(name=block.name, lr=lr, warmup=block.warmup, cooldown=block.cooldown,
                   cooldown_shape=block.cooldown_shape,
                   min_lr_ratio=float(ratio) if ratio is not None else block.min_lr_ratio, meta=block.meta,
                   recovery_mode=block.recovery_mode, wsd_decay=block.wsd.decay,
                   wsd_task_cooldown=block.wsd.task_cooldown)


@dataclass(frozen=True)
class RunSettings:
    """The composed config turned into typed, checked settings once (``Run.build``); modules get the parts.

    ``options`` holds every declared block (fif.config.blocks), the sections below are the derived
    views the run computes with, ``method_options`` the checked ``continual.<method>`` block. The
    composed config itself stays inside the config package: the run records it through
    ``resolved()`` / ``public()`` and derives variants (a budget profile's full-finetuning row) with
    ``with_overrides``.
    """

    options: RunOptions
    task: TaskSettings
    budget: BudgetSettings
    optimizer: OptimizerSettings
    compute: ComputeSettings
    scheduler: SchedulerSettings
    method: str
    method_options: Options
    mini_seed: int | None  # experiment=mini: the generated benchmark's data seed (the preset's own `mini` block)
    source: DictConfig = field(repr=False, compare=False)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> RunSettings:
        """Every check that needs no data, in one pass over the config; a bad value is one line naming its key."""
        options = check_run_options(cfg)
        load_plugins()
        method = options.continual.method
        declared = DECLARED.get(f"continual.{method}")
        if declared is None:
            known = ", ".join(key.split(".", 1)[1] for key in DECLARED if key.startswith("continual."))
            raise FifError(f"continual.method={method!r} is not a known method (expected one of: {known})")
        method_options = declared.from_block(cfg.continual.get(method), f"continual.{method}", owner=method)
        mini, experiment = cfg.get("mini"), options.experiment
        scheduler = SchedulerSettings.from_options(experiment.scheduler, experiment.optimizer.lr,
                                                   cfg.experiment.scheduler.get("cosine_lr_mul"))
        return cls(options, TaskSettings.from_options(experiment.task), BudgetSettings.from_options(experiment.task.budget),
                   OptimizerSettings.from_options(experiment.optimizer), ComputeSettings.from_options(experiment.compute),
                   scheduler, method, method_options,
                   int(mini.seed) if mini is not None else None, cfg)

    @property
    def experiment(self) -> ExperimentOptions:
        return self.options.experiment

    @property
    def evaluation(self) -> EvaluationOptions:
        return self.options.evaluation

    @property
    def log(self) -> LogOptions:
        return self.options.log

    def with_overrides(self, overrides: Sequence[str], what: str = "override") -> RunSettings:
        """These settings with dotted ``key=value`` overrides applied (e.g. a `fif flops` row), checked anew."""
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        try:
            merged = OmegaConf.merge(self.source, OmegaConf.from_dotlist(list(overrides)))
        except OmegaConfBaseException as error:  # omegaconf's own errors name the key over several lines
            raise FifError(f"bad {what} ({' '.join(overrides)}): {str(error).splitlines()[0]}") from None
        return RunSettings.from_config(merged)  # type: ignore[arg-type]

    def with_values(self, values: dict[str, Any]) -> RunSettings:
        """These settings with ``{dotted key: value}`` set as they are (no parsing of the value, unlike
        ``with_overrides``: a sweep's folder names stay strings), checked anew."""
        return RunSettings.from_config(with_values(self.source, values))

    def resolved(self) -> dict[str, Any]:
        """The composed config as plain data (results.json's "config", resume's comparison)."""
        return to_container(self.source)

    def public(self) -> DictConfig:
        """The config as written to disk and to trackers: secrets redacted."""
        return public_config(self.source)

    def public_dict(self) -> dict[str, Any]:
        """``public()`` as plain data (results.json's "config", the trackers')."""
        return to_container(self.public())

    def public_yaml(self) -> str:
        """``public()`` as the YAML of a run folder's config.yaml."""
        from omegaconf import OmegaConf

        return OmegaConf.to_yaml(self.public(), resolve=True)
