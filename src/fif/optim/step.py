"""The contrastive training step, written once for every method, the budget profiler and the mini CLIP's pretraining.

One step: set the learning rate, forward + CLIP loss (+ the method's extra term) under the caller's
autocast, zero the gradients, backward, the gradient norm, the divergence check, the after-backward
hook (SI reads the gradients there), clip the gradients to that norm, the optimizer step, and
clamp the temperature as open_clip does (``logit_scale`` in [0, log 100]). The order is part of
the contract: a resumed or refactored run repeats the same float operations in the same order
(the norm is what ``clip_grad_norm_`` computes first; computing it earlier changes no value).

The divergence check: the loss, the extra term and the gradient norm are read to the host in ONE
transfer (the one sync per step the loop always had, for the loss it logs), before
``optimizer.step()``. If any of them is NaN or infinite the update is not applied: the gradients
are dropped, neither the hook nor the optimizer runs, so the weights (and the optimizer state)
stay as they were. What to do about such a step (skip it, or stop the run) is the caller's call
(``fif.train.run``: ``experiment.optimizer.skip_nonfinite_steps``).
"""

from __future__ import annotations

import math
from typing import NamedTuple
from collections.abc import Callable, Iterable, Mapping

import torch

LOGIT_SCALE_MAX = math.log(100)  # open_clip keeps the temperature at most 100
STEP_VALUES = ("loss", "extra_loss", "grad_norm")  # what the divergence check reads of every step


class Losses(NamedTuple):
    loss: torch.Tensor  # the contrastive (CLIP) loss
    extra: torch.Tensor | None  # the method's extra term (a penalty), if any
    total: torch.Tensor  # what is backpropagated: loss + extra


class Step(NamedTuple):
    """What one ``contrastive_step`` did: its loss tensors (as ``Losses``) and their host values."""

    loss: torch.Tensor
    extra: torch.Tensor | None
    total: torch.Tensor
    values: dict[str, float]  # "loss" (averaged over ranks under torchrun), "grad_norm", ["extra_loss"]
    applied: bool  # False: a value was not finite and the update was skipped (weights unchanged)


def nonfinite(values: Mapping[str, float]) -> dict[str, float]:
    """The entries of a step's values (loss, extra_loss, grad_norm) that are NaN or infinite."""
    return {name: value for name, value in values.items()
            if name in STEP_VALUES and not math.isfinite(value)}


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


def _host_values(computed: Losses, grad_norm: torch.Tensor,
                 mean_over_ranks: Callable[[torch.Tensor], torch.Tensor] | None) -> dict[str, float]:
    """The step's loss, gradient norm and extra term as floats, in one device-to-host transfer."""
    loss = computed.loss.detach()
    if mean_over_ranks is not None:
        loss = mean_over_ranks(loss)
    parts = [loss.float().reshape(()), grad_norm.detach().float().reshape(()).to(loss.device)]
    if computed.extra is not None:
        parts.append(computed.extra.detach().float().reshape(()).to(loss.device))
    numbers = torch.stack(parts).tolist()  # the one sync of the step
    values = {"loss": numbers[0], "grad_norm": numbers[1]}
    if computed.extra is not None:
        values["extra_loss"] = numbers[2]
    return values


def contrastive_step(optimizer: torch.optim.Optimizer, lr: float, losses: Callable[[], Losses], *,
                     model: torch.nn.Module, parameters: Iterable[torch.nn.Parameter],
                     clip_grad_norm: float | None = None,
                     after_backward: Callable[[], None] | None = None,
                     mean_over_ranks: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Step:
    """One optimizer step; ``losses()`` runs the forward (wrapped in the caller's autocast).

    ``parameters`` are the ones whose gradient norm is checked and clipped to ``clip_grad_norm``
    (None or 0: no clipping; the norm is computed either way, a read of the gradients, so that an
    infinite gradient under a finite loss is caught too); ``model``'s logit scale is clamped after
    the step. ``mean_over_ranks`` turns a rank's loss into the global batch's (torchrun), so every
    rank takes the same decision. A step whose loss, extra term or gradient norm is not finite is
    not applied (``Step.applied`` False): the gradients are dropped and the optimizer is not called.
    """
    params = list(parameters)
    set_lr(optimizer, lr)
    computed = losses()
    optimizer.zero_grad(set_to_none=True)
    computed.total.backward()
    grads = [p.grad for p in params if p.grad is not None]
    grad_norm = torch.nn.utils.get_total_norm(grads) if grads else computed.loss.new_zeros(())
    values = _host_values(computed, grad_norm, mean_over_ranks)
    if nonfinite(values):
        optimizer.zero_grad(set_to_none=True)
        return Step(*computed, values=values, applied=False)
    if after_backward is not None:
        after_backward()
    if clip_grad_norm:
        torch.nn.utils.clip_grads_with_norm_(params, clip_grad_norm, grad_norm)
    optimizer.step()
    clamp_logit_scale(model)
    return Step(*computed, values=values, applied=True)
