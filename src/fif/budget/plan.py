"""The compute budget of a run: ``experiment.task.budget`` -> the steps (samples) each task gets.

With ``budget.unit`` null (the default) ``experiment.task.n_samples`` sets the steps, as before;
the plan still profiles the method so the run can log its GFLOPs. With a unit, the budget per task
is converted into steps for the configured method and batch size (fif.budget.maf), and
``n_samples`` becomes steps x batch size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from fif.budget.maf import fullft_budget, maf, memory_ratio, steps_for_budget
from fif.budget.memory import GB
from fif.budget.profile import MethodProfile, profile_method
from fif.errors import FifError
from fif.config.settings import BudgetSettings, RunSettings

__all__ = ["FULLFT_OVERRIDES", "BudgetPlan", "BudgetSettings", "fullft_settings",
           "plan_from_profiles", "plan_task_budget", "resolve_memory", "resolve_precision", "steps_without_budget"]

# Full finetuning, the yardstick of MAF: every parameter of both towers trains.
FULLFT_OVERRIDES = ("continual.method=finetune", "experiment.backbone.freeze_features=false",
                    "experiment.backbone.freeze_head=false")


def steps_without_budget(settings: RunSettings) -> int | None:
    """Steps per task when ``experiment.task.n_samples`` sets them (n_samples // batch_size, at least one);
    None when ``experiment.task.budget`` decides them (plan_task_budget, once the model is built).

    Reads no data and builds no model: a run calls it to fail on a bad task or budget block early.
    """
    return settings.task.steps_from_samples if settings.budget.unit is None else None


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto: the dtype the run trains in (bf16 autocast on CUDA, fp32 on the CPU)."""
    return ("bf16" if device.type == "cuda" else "fp32") if precision == "auto" else precision


def resolve_memory(memory: str, device: torch.device) -> str:
    """auto: the allocator's peak on CUDA, the count elsewhere."""
    return ("allocator" if device.type == "cuda" else "count") if memory == "auto" else memory


def fullft_settings(settings: RunSettings) -> RunSettings:
    """``settings`` with full finetuning as the method (the MAF yardstick)."""
    return settings.with_overrides(FULLFT_OVERRIDES)


@dataclass(frozen=True)
class BudgetPlan:
    """What one task's budget buys for the configured method (per-task numbers)."""

    method: str
    batch_size: int
    steps: int
    n_samples: int
    gflops_per_sample: float
    unit: str | None = None
    amount: float | None = None
    budget_maf: float | None = None  # the task's budget in MAF-GFLOPs
    step_maf: float | None = None  # one step of the method
    memory_ratio: float | None = None  # peak memory / full finetuning's
    peak_gb: float | None = None
    fullft_peak_gb: float | None = None
    end_of_task_maf: float = 0.0  # charged to each task (EWC's Fisher pass), 0 when not charged
    fraction_used: float | None = None
    memory_source: str | None = None
    precision: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for the run log."""
        if self.unit is None:
            return (f"budget: none (experiment.task.n_samples={self.n_samples}: {self.steps} steps of "
                    f"{self.batch_size} per task)")
        stated = f"{self.amount:g} full-finetuning steps = " if self.unit == "fullft_steps" else ""
        extra = f" after {self.end_of_task_maf:.4g} for its end-of-task pass" if self.end_of_task_maf else ""
        return (f"budget: {stated}{self.budget_maf:.4g} MAF-GFLOPs per task; {self.method} "
                f"({self.step_maf:.4g} MAF-GFLOPs per step, memory {self.memory_ratio:.3f} x full finetuning's) "
                f"buys {self.steps} steps of {self.batch_size} = {self.n_samples} samples{extra}, "
                f"using {100 * self.fraction_used:.2f}% of it")


def plan_from_profiles(settings: BudgetSettings, method: MethodProfile, fullft: MethodProfile,
                       task_samples: int | None = None) -> BudgetPlan:
    """The steps a budget buys, given the method's and full finetuning's profiles (same batch size).

    ``task_samples``: the largest task's training samples, when known. A per-sample end-of-task pass
    (EWC's Fisher over up to max_fim_samples) never reads more than its task holds, so it is charged
    for min(asked, task_samples) samples: every task gets the same steps, and none overspends.
    """
    ratio = memory_ratio(method.memory.peak, fullft.memory.peak)
    step_maf = maf(method.gflops_per_step, method.memory.peak, fullft.memory.peak)
    if settings.unit == "fullft_steps":
        budget = fullft_budget(settings.amount, fullft.gflops_per_step)
    else:
        budget = float(settings.amount)
    end_of_task = method.end_of_task_gflops * ratio if settings.charge_end_of_task else 0.0
    if task_samples is not None and method.end_of_task_samples > task_samples:
        end_of_task *= task_samples / method.end_of_task_samples
    steps = steps_for_budget(budget, step_maf, end_of_task)
    if steps < 1:
        raise FifError(f"experiment.task.budget (unit={settings.unit}, amount={settings.amount:g}) = {budget:.4g} "
                       f"MAF-GFLOPs per task buys no step of {method.method} ({step_maf:.4g} per step of "
                       f"{method.batch_size}, {end_of_task:.4g} for the end-of-task pass): raise the amount")
    return BudgetPlan(method.method, method.batch_size, steps, steps * method.batch_size, method.gflops_per_sample,
                      settings.unit, settings.amount, budget, step_maf, ratio, method.memory.peak / GB,
                      fullft.memory.peak / GB, end_of_task, (steps * step_maf + end_of_task) / budget,
                      method.memory.source, method.precision)


def plan_task_budget(run: RunSettings, model: torch.nn.Module, device: torch.device,
                     task_samples: int | None = None) -> BudgetPlan:
    """Profile the configured method (and full finetuning, with a budget) on copies of ``model``.

    ``task_samples``: the largest task's training samples (caps a per-sample end-of-task pass).
    """
    settings, task = run.budget, run.task
    precision = resolve_precision(settings.precision, device)
    if settings.unit is None:
        steps = task.steps_from_samples
        profile = profile_method(run, model, precision=precision)
        return BudgetPlan(profile.method, task.batch_size, steps, task.n_samples, profile.gflops_per_sample,
                          precision=precision)
    memory = resolve_memory(settings.memory, device)
    method = profile_method(run, model, precision=precision, memory=memory, device=device)
    fullft = profile_method(fullft_settings(run), model, precision=precision, memory=memory, device=device)
    return plan_from_profiles(settings, method, fullft, task_samples)
