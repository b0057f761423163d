"""Full contrastive finetuning: every parameter of both towers is trained."""

from __future__ import annotations

import torch

from fif.methods.base import GradientMethod
from fif.methods.registry import register_method


@register_method
class Finetune(GradientMethod):
    """Every parameter of both towers trains (no options)."""

    name = "finetune"
    summary = ("full contrastive finetuning of both towers; experiment.backbone.freeze_features=true: locked-image (every "
        "visual.* frozen), freeze_head=true: locked-text (everything else frozen, logit_scale included): these flags "
        "apply to every gradient method")

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())
