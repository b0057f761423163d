"""The ContinualMethod API: what the training loop may ask of any update method.

The loop never knows which method runs; a method never touches the data loader. A method owns
its model, optimizer and learning-rate schedule, and everything it needs for an exact resume is
in its ``state_dict``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import open_clip
import torch
from omegaconf import DictConfig

from fif.data.samples.batches import Batch
from fif.eval.suite import autocast_for
from fif.methods.towers import freeze_towers
from fif.runtime.distributed import SINGLE, DistContext
from fif.optim.schedules import Schedule


@dataclass(frozen=True)
class TaskInfo:
    index: int  # 0-based
    num_tasks: int
    steps: int  # optimizer steps this task's budget buys
    # (n_samples, batch_size) -> equal batches of this task's own samples (EWC's Fisher at end_task)
    sample_batches: Callable[[int, int], Iterator[Batch]] | None = field(default=None, compare=False, repr=False)


class ContinualMethod:
    """Base class; subclasses override ``trainable_parameters`` and the hooks they need."""

    name = "base"

    def __init__(self, model: torch.nn.Module, cfg: DictConfig, method_cfg: DictConfig, device: torch.device) -> None:
        self.model, self.cfg, self.method_cfg, self.device = model, cfg, method_cfg, device
        self.task: TaskInfo | None = None
        self.step_in_task = 0
        self.work_dir: Path | None = None  # a folder for the method's own files (the loop sets <run>/method)
        self.dist: DistContext = SINGLE  # the loop sets it under torchrun

    # ---------------------------------------------------------------- API
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        raise NotImplementedError

    def begin_task(self, task: TaskInfo) -> None:
        self.task, self.step_in_task = task, 0

    def observe(self, batch: Batch) -> dict[str, float]:
        raise NotImplementedError

    def end_task(self, task: TaskInfo) -> None:
        pass

    def eval_model(self) -> torch.nn.Module:
        return self.model

    def final_state_dict(self) -> dict[str, torch.Tensor]:
        """What final_model.pt holds: eval_model()'s weights as a plain backbone state dict (adapters merge)."""
        return self.eval_model().state_dict()

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "step_in_task": self.step_in_task}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.step_in_task = state["step_in_task"]


class GradientMethod(ContinualMethod):
    """Contrastive training of ``trainable_parameters()`` with AdamW, clipping and a per-task schedule.

    The optimizer restarts at every task; the learning rate follows ``experiment.scheduler``
    (default: warmup + cosine re-started every task, as the reference; meta-schedules in
    fif.optim.schedules); subclasses add loss terms through ``extra_loss``.
    """

    def __init__(self, model: torch.nn.Module, cfg: DictConfig, method_cfg: DictConfig, device: torch.device) -> None:
        super().__init__(model, cfg, method_cfg, device)
        self.loss_fn = open_clip.ClipLoss()
        self.optimizer: torch.optim.Optimizer | None = None
        self._forward_model, self._train_loss = self.model, self.loss_fn  # DDP-wrapped per task under torchrun
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        for parameter in self.trainable_parameters():
            parameter.requires_grad_(True)
        freeze_towers(self.model, cfg)  # locked-image / locked-text (experiment.backbone.freeze_*)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        opt = self.cfg.experiment.optimizer
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        # No weight decay on gains, biases, embeddings and the logit scale (open_clip's rule).
        no_decay = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
        groups = [{"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": float(opt.weight_decay)},
                  {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=float(opt.lr), betas=(0.9, 0.98), eps=1e-6)

    def begin_task(self, task: TaskInfo) -> None:
        super().begin_task(task)
        self.optimizer = self._make_optimizer()
        self.model.train()
        self._forward_model, self._train_loss = self._training_forward()

    def _training_forward(self) -> tuple[torch.nn.Module, open_clip.ClipLoss]:
        """The model as the training step calls it: DDP-wrapped under torchrun (built per task, after the
        method fixed this task's trainable set), with the loss over the gathered global batch."""
        if not self.dist.enabled:
            return self.model, self.loss_fn
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        wrapped = DistributedDataParallel(self.model, device_ids=ids, broadcast_buffers=False)
        loss = open_clip.ClipLoss(local_loss=True, gather_with_grad=True, rank=self.dist.rank,
                                  world_size=self.dist.world_size)
        return wrapped, loss

    def current_lr(self) -> float:
        """A pure function of (task, step, steps per task, tasks, config): a resumed run gets the same value."""
        assert self.task is not None
        if not hasattr(self, "_schedule"):
            self._schedule = Schedule.from_config(self.cfg)
        return self._schedule(self.task.index, self.step_in_task, self.task.steps, self.task.num_tasks)

    def extra_loss(self) -> torch.Tensor | None:
        return None

    def after_backward(self) -> None:
        """Called with the total loss's gradients in ``p.grad``, before clipping and the step (SI reads them)."""

    def observe(self, batch: Batch) -> dict[str, float]:
        assert self.optimizer is not None, "begin_task() must come before observe()"
        lr = self.current_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = batch.to(self.device)
        with autocast_for(self.device):
            image_features, text_features, logit_scale = self._forward_model(batch.images, batch.texts)[:3]
            loss = self._train_loss(image_features, text_features, logit_scale)
            extra = self.extra_loss()
            total = loss + extra if extra is not None else loss
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.after_backward()
        clip = self.cfg.experiment.optimizer.clip_grad_norm
        if clip:
            torch.nn.utils.clip_grad_norm_(self.trainable_parameters(), float(clip))
        self.optimizer.step()
        with torch.no_grad():  # open_clip keeps the temperature at most 100
            if hasattr(self.model, "logit_scale"):
                self.model.logit_scale.clamp_(0, math.log(100))
        self.step_in_task += 1
        stats = {"loss": self._global_mean(loss.detach()), "lr": lr}
        if extra is not None:
            stats["extra_loss"] = float(extra.detach())
        return stats

    def _global_mean(self, value: torch.Tensor) -> float:
        """A rank's local loss averaged over ranks (= the one-process loss of the global batch)."""
        if self.dist.enabled:
            value = value.clone()
            torch.distributed.all_reduce(value)
            value /= self.dist.world_size
        return float(value)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        # The optimizer restarts at every task: once the task's steps are done it is dead weight
        # (2x the trainable parameters for AdamW), so a task-end checkpoint leaves it out.
        inside_task = self.task is not None and self.step_in_task < self.task.steps
        state["optimizer"] = self.optimizer.state_dict() if self.optimizer is not None and inside_task else None
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if state.get("optimizer") is not None:
            self.optimizer = self._make_optimizer()
            self.optimizer.load_state_dict(state["optimizer"])
