"""FLOPs of one training step, counted by PyTorch's own FlopCounterMode.

Three traps are handled here:
- the counter has no formula for the CPU attention kernel (it would silently drop the attention
  matmuls): ``CPU_ATTENTION_FORMULAS`` registers PyTorch's own SDPA formulas for it;
- nn.MultiheadAttention's inference fast path hides the q/k/v/out projections from it: callers
  turn it off while counting (``mha_fastpath_off``);
- its convolution-backward formula ignores ``groups`` in the weight-gradient term, so a depthwise
  convolution's backward is counted ``groups`` times too high (65x its forward for a 64-channel
  depthwise conv; ConvNeXt backbones are full of them). ``_conv_backward`` divides that term by
  ``groups``; tests/test_flops.py checks it against the analytic count.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import open_clip
import torch
from torch.utils.flop_counter import (FlopCounterMode, conv_backward_flop, sdpa_backward_flop_count,
                                      sdpa_flop_count)

aten = torch.ops.aten


def _cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _conv_backward(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed, output_padding,
                   groups, output_mask, out_shape=None, **kwargs) -> int:
    """PyTorch's formula, with the weight-gradient term divided by ``groups`` (it counts all channel pairs)."""
    formula = getattr(conv_backward_flop, "__wrapped__", conv_backward_flop)  # the shape-level function
    args = (grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed, output_padding, groups)
    grad_input = formula(*args, [True, False, False], out_shape=out_shape) if output_mask[0] else 0
    grad_weight = formula(*args, [False, True, False], out_shape=out_shape) if output_mask[1] else 0
    return grad_input + grad_weight // groups


CPU_ATTENTION_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
}
FORMULAS = {**CPU_ATTENTION_FORMULAS, aten.convolution_backward: _conv_backward}


def flop_counter() -> FlopCounterMode:
    """A FlopCounterMode with the formulas above (no printout)."""
    return FlopCounterMode(display=False, custom_mapping=FORMULAS)


@contextlib.contextmanager
def mha_fastpath_off() -> Iterator[None]:
    """nn.MultiheadAttention's fused inference path off (it hides the projections from the counter)."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def train_step_gflops_per_sample(model: torch.nn.Module, trainable: set[str], images: torch.Tensor,
                                 texts: torch.Tensor) -> float:
    """GFLOPs of forward + backward + contrastive loss per image-text pair, for the given trainable set.

    Counted on a copy of the model, so the caller's weights, gradients and RNG are untouched.
    (The method-aware profile with memory is ``fif.budget.profile.profile_method``.)
    """
    probe = copy.deepcopy(model).train()
    device = next(probe.parameters()).device
    images, texts = images.to(device), texts.to(device)
    for name, parameter in probe.named_parameters():
        parameter.requires_grad_(name in trainable)
    loss_fn = open_clip.ClipLoss()
    with mha_fastpath_off(), torch.random.fork_rng(devices=[]), flop_counter() as counter:
        image_features, text_features, scale = probe(images, texts)[:3]
        loss = loss_fn(image_features, text_features, scale)
        if loss.requires_grad:
            loss.backward()
    return counter.get_total_flops() / images.shape[0] / 1e9
