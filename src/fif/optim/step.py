"""The contrastive training step, written once for every method, the budget profiler and the mini CLIP's pretraining.

One step: set the learning rate, forward + CLIP loss (+ the method's extra term) under the caller's
autocast, zero the gradients, backward, the after-backward hook (SI reads the gradients there),
clip the gradient norm, the optimizer step, and clamp the temperature as open_clip does
(``logit_scale`` in [0, log 100]). The order is part of the contract: a resumed or refactored run
repeats the same float operations in the same order.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, NamedTuple

import torch

LOGIT_SCALE_MAX = math.log(100)  # open_clip keeps the temperature at most 100


class Losses(NamedTuple):
    loss: torch.Tensor  # the contrastive (CLIP) loss
    extra: torch.Tensor | None  # the method's extra term (a penalty), if any
    total: torch.Tensor  # what is backpropagated: loss + extra


def contrastive_loss(forward_model: Callable, loss_fn: Callable, images: torch.Tensor,
                     texts: torch.Tensor) -> torch.Tensor:
    """The CLIP loss of a batch: ``loss_fn(image features, text features, logit scale)``."""
    image_features, text_features, logit_scale = forward_model(images, texts)[:3]
    return loss_fn(image_features, text_features, logit_scale)


def step_losses(forward_model: Callable, loss_fn: Callable, images: torch.Tensor, texts: torch.Tensor,
                extra_loss: Callable[[], torch.Tensor | None] | None = None) -> Losses:
    """The forward half of a step: the contrastive loss, then the extra term, then their sum."""
    loss = contrastive_loss(forward_model, loss_fn, images, texts)
    extra = extra_loss() if extra_loss is not None else None
    return Losses(loss, extra, loss + extra if extra is not None else loss)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def clamp_logit_scale(model: torch.nn.Module) -> None:
    """open_clip's clamp of the learned temperature, for a model that has one."""
    with torch.no_grad():
        if hasattr(model, "logit_scale"):
            model.logit_scale.clamp_(0, LOGIT_SCALE_MAX)


def contrastive_step(optimizer: torch.optim.Optimizer, lr: float, losses: Callable[[], Losses], *,
                     model: torch.nn.Module, parameters: Iterable[torch.nn.Parameter],
                     clip_grad_norm: float | None = None,
                     after_backward: Callable[[], None] | None = None) -> Losses:
    """One optimizer step; ``losses()`` runs the forward (wrapped in the caller's autocast).

    ``parameters`` are the ones whose gradient norm is clipped to ``clip_grad_norm`` (None or 0:
    no clipping); ``model``'s logit scale is clamped after the step.
    """
    set_lr(optimizer, lr)
    computed = losses()
    optimizer.zero_grad(set_to_none=True)
    computed.total.backward()
    if after_backward is not None:
        after_backward()
    if clip_grad_norm:
        torch.nn.utils.clip_grad_norm_(parameters, clip_grad_norm)
    optimizer.step()
    clamp_logit_scale(model)
    return computed
