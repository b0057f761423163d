"""Parameter-selective updates: train a fixed, named subset of the pretrained weights.

- ``bitfit`` (Ben Zaken et al., 2022): every bias term: parameters called ``bias`` and the fused
  ``*_bias`` ones (``nn.MultiheadAttention.in_proj_bias``), LayerNorm biases included.
- ``lnfit``: every LayerNorm parameter (gain and bias), in both towers.

Everything else keeps its pretrained value bit for bit: it never gets a gradient, and it is not
in the optimizer, so weight decay cannot move it either.
"""

from __future__ import annotations

import torch

from fif.errors import FifError
from fif.methods.base import GradientMethod
from fif.methods.registry import register_method


def bias_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Every bias term of ``model`` (by the name its module gives it)."""
    return [p for module in model.modules() for name, p in module.named_parameters(recurse=False)
            if name == "bias" or name.endswith("_bias")]


def layernorm_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Gains and biases of every LayerNorm (open_clip's LayerNorm / LayerNormFp32 subclass it)."""
    return [p for module in model.modules() if isinstance(module, torch.nn.LayerNorm)
            for p in module.parameters(recurse=False)]


def _nonempty(chosen: list[torch.nn.Parameter], method: str, what: str) -> list[torch.nn.Parameter]:
    if not chosen:
        raise FifError(f"continual.method={method}: the model has no {what} to train")
    return chosen


@register_method
class BitFit(GradientMethod):
    name = "bitfit"
    summary = "only bias terms"

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return _nonempty(bias_parameters(self.model), self.name, "bias terms")


@register_method
class LNFit(GradientMethod):
    name = "lnfit"
    summary = "only LayerNorm weights and biases"

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return _nonempty(layernorm_parameters(self.model), self.name, "LayerNorm parameters")
