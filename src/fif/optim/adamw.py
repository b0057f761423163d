"""The one AdamW of the project: two parameter groups (with and without weight decay), open_clip's betas and eps."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

BETAS = (0.9, 0.98)
EPS = 1e-6

NoDecayRule = Callable[[str, torch.nn.Parameter], bool]


def open_clip_no_decay(name: str, parameter: torch.nn.Parameter) -> bool:
    """open_clip's rule: no weight decay on 0/1-d tensors (gains, biases), on names with bn, ln or bias,
    and on the logit scale."""
    return (parameter.ndim < 2 or "bn" in name or "ln" in name or "bias" in name
            or "logit_scale" in name)


def build_adamw(named_parameters: Iterable[tuple[str, torch.nn.Parameter]], lr: float, weight_decay: float,
                no_decay: NoDecayRule = open_clip_no_decay, fused: bool = False) -> torch.optim.AdamW:
    """AdamW over ``named_parameters``: the decayed group first, then the ``no_decay`` one (weight decay 0).

    ``fused=True``: torch's fused kernel (one launch for all tensors; the same update up to float
    rounding); False: torch's default implementation (for-each on CUDA, the per-tensor loop on CPU).
    """
    named = list(named_parameters)
    groups = [{"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": weight_decay},
              {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=BETAS, eps=EPS, **({"fused": True} if fused else {}))
