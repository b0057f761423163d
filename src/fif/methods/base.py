"""The ContinualMethod API: what the training loop may ask of any update method.

The loop never knows which method runs; a method never touches the data loader. A method owns
its model, optimizer and learning-rate schedule, and everything it needs for an exact resume is
in its ``state_dict``.

A method is built in two steps (``fif.methods.build_method``): the constructor takes the model,
its checked options (an instance of its ``Options`` class, read from ``continual.<name>``) and the
run's ``MethodContext``; ``setup()`` then prepares the model for training (installs adapters,
fixes what trains), once the object is complete. A method registers with
``fif.methods.registry.register_method`` (docs/adding-a-method.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import open_clip
import torch

from fif.config.options import Options
from fif.data.samples.batches import Batch
from fif.methods.context import MethodContext
from fif.methods.towers import freeze_towers
from fif.optim.adamw import build_adamw
from fif.optim.step import Losses, contrastive_step, step_losses
from fif.runtime.device import autocast_for
from fif.runtime.distributed import DistContext


@dataclass(frozen=True)
class NoOptions(Options):
    """The options of a method that has none (its ``continual.<name>`` block is empty)."""


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
    Options: type[Options] = NoOptions  # its continual.<name> block: declared fields, defaults, ranges, help
    # One line: what the method trains or does (the README's method table; null: the docstring's first line).
    summary = ""
    # The budget profiler runs a first task's end_task (the steady state; its FLOPs are charged
    # once per task, e.g. EWC's Fisher pass). False for an end_task that does no counted compute
    # and cannot run on fake tensors (merging: host copies and task checkpoints on disk).
    profiles_end_of_task = True
    cost_table_row = True  # a row of `fif flops --methods all`
    # Overrides of continual.<name>.* that give the reference's compute of this method (a NAME-ref
    # row of `fif flops`), where it differs from ours.
    reference_overrides: tuple[str, ...] = ()

    def __init__(self, model: torch.nn.Module, options: Options, context: MethodContext) -> None:
        self.model, self.options, self.context = model, options, context
        self.task: TaskInfo | None = None
        self.step_in_task = 0

    @property
    def device(self) -> torch.device:
        return self.context.device

    @property
    def dist(self) -> DistContext:
        return self.context.dist

    @property
    def work_dir(self) -> Path | None:
        """A folder for the method's own files (task checkpoints); a run gives ``<run>/method``."""
        return self.context.work_dir

    def setup(self) -> None:
        """Prepare the model for training (after construction, before the first task)."""

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
    fif.optim.schedules); subclasses add loss terms through ``extra_loss``. The step itself is
    fif.optim.step's.
    """

    def __init__(self, model: torch.nn.Module, options: Options, context: MethodContext) -> None:
        super().__init__(model, options, context)
        self.loss_fn = open_clip.ClipLoss()
        self.optimizer: torch.optim.Optimizer | None = None
        self._forward_model, self._train_loss = self.model, self.loss_fn  # DDP-wrapped per task under torchrun

    def setup(self) -> None:
        """Only ``trainable_parameters()`` train, less a tower locked by experiment.backbone.freeze_*."""
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        for parameter in self.trainable_parameters():
            parameter.requires_grad_(True)
        freeze_towers(self.model, self.context.lock_image, self.context.lock_text, self.name)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        settings = self.context.optimizer
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        return build_adamw(named, settings.lr, settings.weight_decay, fused=self.context.compute.fused_for(self.device))

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
        return self.context.schedule(self.task.index, self.step_in_task, self.task.steps, self.task.num_tasks)

    def extra_loss(self) -> torch.Tensor | None:
        return None

    def after_backward(self) -> None:
        """Called with the total loss's gradients in ``p.grad``, before clipping and the step (SI reads them)."""

    def training_losses(self, images: torch.Tensor, texts: torch.Tensor) -> Losses:
        """The forward of a training step (no autocast of its own): contrastive loss + ``extra_loss()``."""
        return step_losses(self._forward_model, self._train_loss, images, texts, self.extra_loss)

    def observe(self, batch: Batch) -> dict[str, float]:
        assert self.optimizer is not None, "begin_task() must come before observe()"
        lr = self.current_lr()
        batch = batch.to(self.device)

        def forward() -> Losses:
            with autocast_for(self.device):
                return self.training_losses(batch.images, batch.texts)

        step = contrastive_step(self.optimizer, lr, forward, model=self.model,
                                parameters=self.trainable_parameters(),
                                clip_grad_norm=self.context.optimizer.clip_grad_norm,
                                after_backward=self.after_backward, mean_over_ranks=self._global_mean)
        self.step_in_task += 1  # also for a skipped (non-finite) step: the schedule moves on
        return {**step.values, "lr": lr}

    def _global_mean(self, value: torch.Tensor) -> torch.Tensor:
        """A rank's local loss averaged over ranks (= the one-process loss of the global batch)."""
        if self.dist.enabled:
            value = value.clone()
            torch.distributed.all_reduce(value)
            value /= self.dist.world_size
        return value

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
