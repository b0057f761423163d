"""What a method is given at construction, besides the model and its own ``continual.<name>`` block."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from fif.optim.schedules import Schedule
from fif.runtime.distributed import SINGLE, DistContext
from fif.config.settings import ComputeSettings, OptimizerSettings, RunSettings


@dataclass(frozen=True)
class MethodContext:
    """The run's settings a method may use; built once by ``build_method`` from the run's settings."""

    device: torch.device
    optimizer: OptimizerSettings  # experiment.optimizer: AdamW's lr, weight decay, gradient clipping
    schedule: Schedule  # experiment.scheduler: the learning rate at (task, step)
    batch_size: int  # experiment.task.batch_size (EWC's default Fisher batch)
    lock_image: bool = False  # experiment.backbone.freeze_features: the image tower stays frozen
    lock_text: bool = False  # experiment.backbone.freeze_head: the text tower (and logit scale) stays frozen
    dist: DistContext = SINGLE  # the torchrun context (world size 1: a plain run)
    work_dir: Path | None = None  # a folder for the method's own files (a run uses <run>/method)
    compute: ComputeSettings = ComputeSettings()  # experiment.compute: fused AdamW, TF32, compile, checkpointing

    @classmethod
    def from_settings(cls, settings: RunSettings, device: torch.device, dist: DistContext = SINGLE,
                      work_dir: str | Path | None = None) -> MethodContext:
        backbone = settings.experiment.backbone
        return cls(device=device, optimizer=settings.optimizer, schedule=Schedule.from_settings(settings.scheduler),
                   batch_size=settings.task.batch_size, lock_image=backbone.freeze_features,
                   lock_text=backbone.freeze_head, dist=dist, work_dir=Path(work_dir) if work_dir is not None else None,
                   compute=settings.compute)
