"""FLOPs of one training step, counted by PyTorch's own FlopCounterMode.

Two traps are handled: the counter has no formula for the CPU attention kernel (it would
silently drop the attention matmuls), and nn.MultiheadAttention's inference fast path hides the
q/k/v/out projections from it.
"""

from __future__ import annotations

import copy

import open_clip
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

aten = torch.ops.aten


def _cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


CPU_ATTENTION_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
}


def flop_counter() -> FlopCounterMode:
    return FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FORMULAS)


def train_step_gflops_per_sample(model: torch.nn.Module, trainable: set[str], images: torch.Tensor,
                                 texts: torch.Tensor) -> float:
    """GFLOPs of forward + backward + contrastive loss per image-text pair, for the given trainable set.

    Counted on a copy of the model, so the caller's weights, gradients and RNG are untouched.
    """
    probe = copy.deepcopy(model).train()
    device = next(probe.parameters()).device
    images, texts = images.to(device), texts.to(device)
    for name, parameter in probe.named_parameters():
        parameter.requires_grad_(name in trainable)
    loss_fn = open_clip.ClipLoss()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.random.fork_rng(devices=[]), flop_counter() as counter:
            image_features, text_features, scale = probe(images, texts)[:3]
            loss = loss_fn(image_features, text_features, scale)
            if loss.requires_grad:
                loss.backward()
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops() / images.shape[0] / 1e9
