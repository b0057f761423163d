"""Method registry: ``continual.method=NAME`` picks one; its options live under ``continual.NAME``."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from fif.errors import FifError
from fif.methods.adapters import DoRAMethod, LoRAMethod, VeRAMethod
from fif.methods.base import ContinualMethod, TaskInfo
from fif.methods.finetune import Finetune
from fif.methods.merging import MERGING_METHODS
from fif.methods.regularisation import EWC, SI
from fif.methods.selective import BitFit, LNFit

METHODS: dict[str, type[ContinualMethod]] = {"finetune": Finetune}
METHODS.update({m.name: m for m in (BitFit, LNFit, EWC, SI)})  # selective + regularisation
METHODS.update({m.name: m for m in (LoRAMethod, DoRAMethod, VeRAMethod)})  # parameter-additive
METHODS.update(MERGING_METHODS)  # model merging

__all__ = ["METHODS", "ContinualMethod", "TaskInfo", "build_method", "method_class"]


def method_class(name: str) -> type[ContinualMethod]:
    if name not in METHODS:
        raise FifError(f"continual.method={name!r} is not a known method (expected one of: {', '.join(METHODS)})")
    return METHODS[name]


def build_method(cfg: DictConfig, model: torch.nn.Module, device: torch.device) -> ContinualMethod:
    name = cfg.continual.method
    return method_class(name)(model, cfg, cfg.continual.get(name) or DictConfig({}), device)
