"""Method registry: ``continual.method=NAME`` picks one; its options live under ``continual.NAME``.

Adding a method: its module, and one entry here. Everything that lists methods (the rows of
``fif flops``, error messages) follows this registry, in its order.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from fif.errors import FifError
from fif.methods.adapters import DoRAMethod, LoRAMethod, VeRAMethod
from fif.methods.base import ContinualMethod, TaskInfo
from fif.methods.compute import apply_compute
from fif.methods.context import MethodContext
from fif.methods.finetune import Finetune
from fif.methods.merging import MERGING_METHODS
from fif.methods.regularisation import EWC, SI
from fif.methods.selective import BitFit, LNFit
from fif.runtime.distributed import SINGLE, DistContext

METHODS: dict[str, type[ContinualMethod]] = {"finetune": Finetune}
METHODS.update({m.name: m for m in (LoRAMethod, DoRAMethod, VeRAMethod)})  # parameter-additive
METHODS.update({m.name: m for m in (BitFit, LNFit, EWC, SI)})  # selective + regularisation
METHODS.update(MERGING_METHODS)  # model merging

__all__ = ["METHODS", "ContinualMethod", "MethodContext", "TaskInfo", "apply_compute", "build_method", "method_class"]


def method_class(name: str) -> type[ContinualMethod]:
    if name not in METHODS:
        raise FifError(f"continual.method={name!r} is not a known method (expected one of: {', '.join(METHODS)})")
    return METHODS[name]


def build_method(cfg: DictConfig, model: torch.nn.Module, device: torch.device, *, dist: DistContext = SINGLE,
                 work_dir: str | Path | None = None) -> ContinualMethod:
    """The configured method on ``model``, ready for its first task.

    It gets its own ``continual.<name>`` block and the run's context (device, torchrun context,
    ``work_dir`` for its files, optimizer, schedule, batch size, locked towers, experiment.compute),
    then ``setup()`` prepares the model (adapters, what trains). The run then calls
    ``apply_compute(method)`` (TF32, checkpointing, compile) once the budget is planned.
    """
    name = str(cfg.continual.method)
    cls = method_class(name)
    context = MethodContext.from_config(cfg, device, dist, work_dir)
    method = cls(model, cfg.continual.get(name) or DictConfig({}), context)
    method.setup()
    return method
