"""Full contrastive finetuning: every parameter of both towers is trained."""

from __future__ import annotations

import torch

from fif.methods.base import GradientMethod
from fif.methods.registry import register_method


@register_method
class Finetune(GradientMethod):
    """Every parameter of both towers trains (no options)."""

    name = "finetune"

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())
