"""Regularised continual finetuning: a quadratic pull towards the weights of the last finished task.

Both methods train every (unfrozen) parameter like ``finetune`` and add c·Σ_i w_i (θ_i − θ*_i)², with
θ* the weights at the end of the previous task. They differ in the importance w:

- ``ewc`` (Kirkpatrick et al., 2017; online form with decay γ, Schwarz et al., 2018): w = λ/2 · F,
  F ← γ·F + F_t, where F_t is the diagonal empirical Fisher of the finished task, computed the
  reference's way: the mean over K batches of the squared gradient of the CLIP loss,
  F_t = (1/K) Σ_k (∇θ L_CLIP(B_k))², with B_k disjoint batches of ``fim_batch_size`` samples of the
  task (up to ``max_fim_samples`` samples in all). A contrastive loss has no per-sample gradient
  (each term depends on the whole batch), so the batch is the unit.
- ``si`` (synaptic intelligence, Zenke et al., 2017): along the training path every step adds
  ω += −g·Δθ (g the gradient of the task loss alone, before clipping; Δθ that step's update); at the
  task's end Ω += max(ω, 0) / ((θ_end − θ_start)² + ξ), then ω ← 0. The penalty is c·Σ Ω (θ − θ*)².
  ω < 0 (noise moved the parameter uphill) gets no importance: a negative weight would make the
  penalty unbounded below. The reference approximates ω by lr·g² (exact only for plain SGD); we
  integrate the real AdamW steps.

Unlike the reference, the anchor θ* moves to the end-of-task weights after every task. Fisher,
Ω, ω and the anchor are in ``state_dict`` (exact resume).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from fif.config.options import Options, option
from fif.data.samples.batches import Batch
from fif.errors import FifError
from fif.runtime.device import autocast_for
from fif.methods.base import TaskInfo
from fif.methods.context import MethodContext
from fif.methods.finetune import Finetune
from fif.methods.registry import register_method
from fif.optim.step import contrastive_loss

Tensors = dict[str, torch.Tensor]


class _Anchored(Finetune):
    """Finetuning plus a weighted quadratic pull towards an anchor θ* (per named, trainable tensor)."""

    def __init__(self, model: torch.nn.Module, options: Options, context: MethodContext) -> None:
        super().__init__(model, options, context)
        self.anchor: Tensors = {}  # θ*: the trainable weights at setup(), then at the end of every task
        self.importance: Tensors = {}  # empty until the first task has ended: no penalty yet

    def setup(self) -> None:
        super().setup()
        self.anchor = self._snapshot()

    def tracked(self) -> dict[str, torch.nn.Parameter]:
        """The parameters the method trains (frozen towers excluded)."""
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def _snapshot(self) -> Tensors:
        return {n: p.detach().clone() for n, p in self.tracked().items()}

    def weighted_distance(self) -> torch.Tensor:
        """Σ_i w_i (θ_i − θ*_i)², summed over every tracked tensor, in float32 (differentiable)."""
        params = self.tracked()
        terms = [(w * (params[n].float() - self.anchor[n]).pow(2)).sum() for n, w in self.importance.items()]
        return torch.stack(terms).sum() if terms else torch.zeros((), device=self.device)

    def coefficient(self) -> float:
        raise NotImplementedError

    def extra_loss(self) -> torch.Tensor | None:
        if not self.importance:
            return None
        return self.coefficient() * self.weighted_distance()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(anchor=self.anchor, importance=self.importance)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.anchor = {n: t.to(self.device) for n, t in state["anchor"].items()}
        self.importance = {n: t.to(self.device) for n, t in state["importance"].items()}


@dataclass(frozen=True)
class EWCOptions(Options):
    """``continual.ewc``: online EWC, penalty e_lambda/2 * sum F (theta - theta*)^2, F <- gamma F + F_task."""

    e_lambda: float = option(1.0e4, "penalty strength (reference name); the Fisher is a batch-gradient Fisher, "
                             "so lambda is large", minimum=0.0)
    gamma: float = option(1.0, "decay of earlier tasks' Fisher", minimum=0.0)
    max_fim_samples: int = option(50000, "task samples for each task's Fisher (capped at the task's size)", minimum=2)
    fim_batch_size: int | None = option(None, "batch of one Fisher gradient", kind="whole", minimum=2,
                                        null_means="experiment.task.batch_size, the reference's")


@register_method
class EWC(_Anchored):
    """Online EWC: penalty λ/2·ΣF(θ−θ*)², F the decayed sum of per-task diagonal Fishers."""

    name = "ewc"
    summary = ("finetuning + e_lambda/2 · Σ F (θ − θ*)²; F = mean squared CLIP-loss gradient over up to max_fim_samples task "
        "samples at task end, F ← γF + F_t; anchor θ* = end-of-task weights")
    Options = EWCOptions

    def __init__(self, model: torch.nn.Module, options: EWCOptions, context: MethodContext) -> None:
        super().__init__(model, options, context)
        self.e_lambda, self.gamma, self.max_fim_samples = options.e_lambda, options.gamma, options.max_fim_samples
        fim_batch = options.fim_batch_size
        self.fim_batch_size = context.batch_size if fim_batch is None else fim_batch
        if self.fim_batch_size < 2:  # a one-sample CLIP loss is constant: its gradient is zero
            raise FifError(f"continual.ewc.fim_batch_size=null uses experiment.task.batch_size="
                           f"{self.fim_batch_size}; the Fisher needs batches of at least 2")
        self.fisher_seconds: list[float] = []  # wall time of each task's Fisher (measured, for reports)

    @property
    def fisher(self) -> Tensors:
        return self.importance

    def coefficient(self) -> float:
        return self.e_lambda / 2

    def clip_loss(self, batch: Batch) -> torch.Tensor:
        """The contrastive loss of one Fisher batch, on the plain model (each rank its own batches)."""
        batch = batch.to(self.device)
        with autocast_for(self.device):
            return contrastive_loss(self.model, self.loss_fn, batch.images, batch.texts)

    def task_fisher(self, task: TaskInfo) -> Tensors:
        """F_t = mean over batches of the squared CLIP-loss gradient (the reference's estimate)."""
        if task.sample_batches is None:
            raise RuntimeError("ewc needs the finished task's batches: TaskInfo.sample_batches is None")
        params = self.tracked()
        names, tensors = list(params), list(params.values())
        fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
        count = 0
        for batch in task.sample_batches(self.max_fim_samples, self.fim_batch_size):
            grads = torch.autograd.grad(self.clip_loss(batch), tensors, allow_unused=True)
            for name, grad in zip(names, grads):
                if grad is not None:
                    fisher[name] += grad.detach().float().pow(2)
            count += 1
        if count == 0:
            raise FifError(f"continual.ewc: task {task.index + 1} has fewer than 2 training samples for the Fisher")
        return {n: f / count for n, f in fisher.items()}

    def end_task(self, task: TaskInfo) -> None:
        start = time.perf_counter()
        fisher_t = self.task_fisher(task)
        if self.importance:
            self.importance = {n: self.gamma * self.importance[n] + f for n, f in fisher_t.items()}
        else:
            self.importance = fisher_t
        self.anchor = self._snapshot()
        self.fisher_seconds.append(time.perf_counter() - start)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["fisher_seconds"] = list(self.fisher_seconds)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.fisher_seconds = list(state.get("fisher_seconds", []))


@dataclass(frozen=True)
class SIOptions(Options):
    """``continual.si``: synaptic intelligence, penalty c * sum Omega (theta - theta*)^2."""

    c: float = option(10.0, "penalty strength (reference name)", minimum=0.0)
    xi: float = option(1.0e-3, "damping of Omega += omega / (delta_theta^2 + xi)", minimum=0.0, exclusive_min=True)


@register_method
class SI(_Anchored):
    """Synaptic intelligence: per-parameter importance from the path integral of the task loss."""

    name = "si"
    summary = "finetuning + c · Σ Ω (θ − θ*)²; ω += −g·Δθ per step, Ω += max(ω,0)/(Δθ² + ξ) at task end; anchor moves"
    Options = SIOptions

    def __init__(self, model: torch.nn.Module, options: SIOptions, context: MethodContext) -> None:
        super().__init__(model, options, context)
        self.c, self.xi = options.c, options.xi
        self.small_omega: Tensors = {}  # ω of the current task, per tracked tensor (zeros from setup())
        self._step_grad: Tensors = {}
        self._step_start: Tensors = {}

    def setup(self) -> None:
        super().setup()
        self.small_omega = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in self.tracked().items()}

    @property
    def omega(self) -> Tensors:
        """Ω, the consolidated importance (empty before the first task ends)."""
        return self.importance

    def coefficient(self) -> float:
        return self.c

    def after_backward(self) -> None:
        """Keep this step's task-loss gradient (the penalty's own gradient 2cΩ(θ−θ*) removed) and θ."""
        self._step_grad, self._step_start = {}, {}
        for name, p in self.tracked().items():
            if p.grad is None:
                continue
            grad = p.grad.detach().float()
            if name in self.importance:
                grad = grad - 2 * self.c * self.importance[name] * (p.detach().float() - self.anchor[name])
            self._step_grad[name], self._step_start[name] = grad, p.detach().float().clone()

    def observe(self, batch: Batch) -> dict[str, float]:
        stats = super().observe(batch)
        params = self.tracked()
        for name, grad in self._step_grad.items():
            self.small_omega[name] -= grad * (params[name].detach().float() - self._step_start[name])
        self._step_grad, self._step_start = {}, {}
        return stats

    def end_task(self, task: TaskInfo) -> None:
        params = self.tracked()
        for name, omega in self.small_omega.items():
            moved = (params[name].detach().float() - self.anchor[name]).pow(2)
            gained = omega.clamp(min=0) / (moved + self.xi)
            self.importance[name] = self.importance[name] + gained if name in self.importance else gained
            omega.zero_()
        self.anchor = self._snapshot()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["small_omega"] = self.small_omega
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.small_omega = {n: t.to(self.device) for n, t in state["small_omega"].items()}
