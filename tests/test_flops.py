import torch

from fif.budget.flops import flop_counter, train_step_gflops_per_sample


def test_linear_layer_forward_and_backward_equal_the_analytic_count():
    layer = torch.nn.Linear(64, 32, bias=False)
    x = torch.randn(8, 64, requires_grad=False)
    with flop_counter() as counter:
        layer(x).sum().backward()
    forward = 2 * 8 * 64 * 32
    assert counter.get_total_flops() == forward + forward  # weight grad only (input needs no grad)


def test_cpu_attention_is_counted():
    q = torch.randn(1, 2, 10, 16)
    with flop_counter() as counter:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    heads, matmuls = 2, 2  # QK^T and AV for each head
    assert counter.get_total_flops() == heads * matmuls * (2 * 10 * 10 * 16)


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
