"""Full contrastive finetuning: every parameter of both towers is trained."""

from __future__ import annotations

import torch

from fif.methods.base import GradientMethod


class Finetune(GradientMethod):
    name = "finetune"

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())
