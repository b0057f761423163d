"""FLOP counting: PyTorch's FlopCounterMode with our formulas, checked against analytic counts."""

import contextlib

import open_clip
import pytest
import torch
from open_clip.transformer import ResidualAttentionBlock
from torch._subclasses.fake_tensor import FakeTensorMode

from fif.budget.archs import fake_clone, meta_model
from fif.budget.flops import flop_counter, mha_fastpath_off, train_step_gflops_per_sample


def _forward_backward(module, *inputs):
    """FLOPs of module(*inputs).sum() forward, then of its backward."""
    with flop_counter() as forward:
        out = module(*inputs)
        out = out[0] if isinstance(out, tuple) else out
        total = out.float().sum()
    with flop_counter() as backward:
        total.backward()
    return forward.get_total_flops(), backward.get_total_flops()


def test_linear_layer_forward_and_backward_equal_the_analytic_count():
    layer = torch.nn.Linear(64, 32, bias=False)
    x = torch.randn(8, 64, requires_grad=False)
    with flop_counter() as counter:
        layer(x).sum().backward()
    forward = 2 * 8 * 64 * 32
    assert counter.get_total_flops() == forward + forward  # weight grad only (input needs no grad)


@pytest.mark.parametrize("weight_trains, input_grad, backward_matmuls", [
    (True, True, 2),  # weight gradient + input gradient: twice the forward
    (False, True, 1),  # frozen weight: input gradient only
    (True, False, 1),  # first layer: weight gradient only
])
def test_linear_backward_counts_only_the_gradients_needed(weight_trains, input_grad, backward_matmuls):
    layer = torch.nn.Linear(48, 24)
    layer.weight.requires_grad_(weight_trains)
    x = torch.randn(5, 48, requires_grad=input_grad)
    forward, backward = _forward_backward(layer, x)
    assert forward == 2 * 5 * 48 * 24
    assert backward == backward_matmuls * forward


def test_cpu_attention_is_counted():
    q = torch.randn(1, 2, 10, 16)
    with flop_counter() as counter:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    heads, matmuls = 2, 2  # QK^T and AV for each head
    assert counter.get_total_flops() == heads * matmuls * (2 * 10 * 10 * 16)


@pytest.mark.parametrize("groups", [1, 4, 64])
def test_grouped_convolution_backward_is_twice_its_forward(groups):
    """PyTorch's own formula counts a depthwise conv's weight gradient `groups` times (ConvNeXt)."""
    conv = torch.nn.Conv2d(64, 64, 7, padding=3, groups=groups, bias=False)
    x = torch.randn(2, 64, 14, 14, requires_grad=True)
    forward, backward = _forward_backward(conv, x)
    assert forward == 2 * 2 * 14 * 14 * 64 * (64 // groups) * 7 * 7
    assert backward == 2 * forward
    conv.weight.requires_grad_(False)
    assert _forward_backward(conv, x)[1] == forward  # input gradient only


def _block_counts(fake: bool, trainable: bool):
    n, d, heads, batch = 10, 64, 4, 3
    torch.manual_seed(0)
    block = ResidualAttentionBlock(d, heads)
    for p in block.parameters():
        p.requires_grad_(trainable)
    with mha_fastpath_off(), (FakeTensorMode() if fake else contextlib.nullcontext()):
        block = fake_clone(block) if fake else block
        x = torch.randn(batch, n, d, requires_grad=True)
        return _forward_backward(block, x), (n, d, batch)


@pytest.mark.parametrize("fake", [False, True])
def test_one_vit_block_equals_the_analytic_count(fake):
    """Per sample: 2 (12 n d^2 + 2 n^2 d) forward. Backward: the linear layers 2x with trainable
    weights, 1x (input gradients only) with frozen ones; attention 2.5x either way (the flash-style
    backward recomputes QK^T: 5 n^2 d matmuls against the forward's 2, PyTorch's formula)."""
    (forward, backward), (n, d, batch) = _block_counts(fake, trainable=True)
    linear, attention = 2 * 12 * n * d * d * batch, 2 * 2 * n * n * d * batch
    assert forward == linear + attention
    assert backward == 2 * linear + 5 * attention // 2
    (forward, backward), _ = _block_counts(fake, trainable=False)
    assert forward == linear + attention
    assert backward == linear + 5 * attention // 2


def _layer(n: int, d: int) -> int:
    return 2 * (12 * n * d * d + 2 * n * n * d)


def test_vit_b32_forward_is_14_78_gflops_per_pair_counted_on_fake_tensors():
    """The real ViT-B/32 architecture, no weights: equal to the analytic count (224 px, 77 tokens)."""
    model = meta_model("ViT-B-32")
    with mha_fastpath_off(), FakeTensorMode():
        fake = fake_clone(model)
        images, texts = torch.randn(2, 3, 224, 224), torch.randint(1, 49408, (2, 77))
        with flop_counter() as counter:
            fake(images, texts)
    patches = (224 // 32) ** 2
    image = 2 * patches * 3 * 32 * 32 * 768 + 12 * _layer(patches + 1, 768) + 2 * 768 * 512
    text = 12 * _layer(77, 512) + 2 * 512 * 512
    per_pair = counter.get_total_flops() / 2
    assert per_pair == image + text
    assert round(per_pair / 1e9, 2) == 14.78


def test_frozen_parameters_cost_less_backward():
    from fif.models.backbone import build_backbone

    model = build_backbone("mini_clip").model
    images, texts = torch.randn(2, 3, 32, 32), torch.randint(1, 50, (2, 24))
    everything = {n for n, _ in model.named_parameters()}
    text_only = {n for n in everything if not n.startswith("visual.")}
    full = train_step_gflops_per_sample(model, everything, images, texts)
    locked_image = train_step_gflops_per_sample(model, text_only, images, texts)
    assert 0 < locked_image < full
    assert all(p.grad is None for p in model.parameters())  # counted on a copy
    assert isinstance(model, open_clip.CLIP)
