"""Continual methods: ``continual.method=NAME`` picks one; its options live under ``continual.NAME``.

A method is one module: its class, its ``Options`` and ``@register_method`` (fif.methods.registry).
Methods of other installed packages register through the ``fif.methods`` entry-point group
(docs/adding-a-method.md). Everything that lists methods (the rows of ``fif flops``, error
messages) follows the registry, in its order.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fif.config.settings import RunSettings
from fif.methods.base import ContinualMethod, TaskInfo
from fif.methods.compute import apply_compute
from fif.methods.context import MethodContext
from fif.methods.registry import METHODS, load_methods, method_class, register_method
from fif.runtime.distributed import SINGLE, DistContext

load_methods()

__all__ = ["METHODS", "ContinualMethod", "MethodContext", "TaskInfo", "apply_compute", "build_method", "method_class",
           "register_method"]


def build_method(settings: RunSettings, model: torch.nn.Module, device: torch.device, *, dist: DistContext = SINGLE,
                 work_dir: str | Path | None = None) -> ContinualMethod:
    """The configured method on ``model``, ready for its first task.

    It gets its checked options (``settings.method_options``: its ``continual.<name>`` block read
    through its declared ``Options``) and the run's context (device, torchrun context, ``work_dir`` for its
    files, optimizer, schedule, batch size, locked towers, experiment.compute), then ``setup()``
    prepares the model (adapters, what trains). The run then calls ``apply_compute(method)`` (TF32,
    checkpointing, compile) once the budget is planned.
    """
    cls = method_class(settings.method)
    context = MethodContext.from_settings(settings, device, dist, work_dir)
    method = cls(model, settings.method_options, context)
    method.setup()
    return method
