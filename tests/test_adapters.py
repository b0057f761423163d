"""LoRA / DoRA / VeRA on the mini CLIP, checked by their numbers."""

from __future__ import annotations

import copy
from collections import OrderedDict

import open_clip
import pytest
import torch
from torch import nn

from fif.config.settings import RunSettings
from fif.config import compose
from fif.data.samples.batches import Batch
from fif.errors import FifError
from fif.methods import TaskInfo, build_method
from fif.methods.adapter_layers import AdaptedAttention, DoRA, LoRA, VeRA, VeraProjections, merged_copy
from fif.models.backbone import build_backbone

KINDS = ["lora", "dora", "vera"]
WIDTH, MLP_WIDTH, DEPTH = 128, 512, 4  # the mini CLIP: both towers 4 blocks of width 128, MLP 512
CPU = torch.device("cpu")


def _method(mini, kind: str, *overrides: str, lr: float = 1e-2):
    backbone, _ = mini
    cfg = compose([f"continual.method={kind}", "device=cpu", f"experiment.optimizer.lr={lr}",
                   "experiment.scheduler.name=constant", *overrides])
    return build_method(RunSettings.from_config(cfg), copy.deepcopy(backbone.model), CPU)


def _train(method, batch: Batch, steps: int = 4, task_steps: int | None = None) -> None:
    method.begin_task(TaskInfo(0, 1, task_steps or steps))
    for _ in range(steps):
        method.observe(batch)


@torch.no_grad()
def _outputs(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    return model.encode_image(batch.images, normalize=True), model.encode_text(batch.texts, normalize=True)


def _adapter_names(model: nn.Module) -> set[str]:
    return {n for n, _ in model.named_parameters() if ".deltas." in n or ".delta." in n}


# ---------------------------------------------------------------- the maths, against PEFT

def _peft_layer(kind: str, linear: nn.Linear, rank: int):
    import peft

    model = nn.Sequential(OrderedDict(lin=copy.deepcopy(linear)))
    if kind == "vera":
        config = peft.VeraConfig(r=rank, target_modules=["lin"], projection_prng_key=3, d_initial=0.1)
    else:
        config = peft.LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["lin"], use_dora=kind == "dora")
    if kind == "vera":  # VeRA's shared projections live on the tuner: only get_peft_model builds them
        return peft.get_peft_model(model, config).base_model.model.lin
    return peft.inject_adapter_in_model(config, model).lin


@pytest.mark.parametrize("kind", KINDS)
def test_layer_maths_equal_peft(kind):
    """Same adapter values -> same outputs and merged weights as PEFT's LoRA / DoRA / VeRA Linear."""
    torch.manual_seed(0)
    linear, rank, x = nn.Linear(24, 40), 4, torch.randn(5, 24)
    theirs = _peft_layer(kind, linear, rank)
    with torch.no_grad():
        if kind == "vera":
            projections = VeraProjections(rank, 24, 40, seed=0)
            projections.A.copy_(theirs.vera_A["default"][:, :24])
            projections.B.copy_(theirs.vera_B["default"][:40, :])
            ours = VeRA(linear.weight, projections, scale=1.0, dropout=0.0, d_initial=0.1)
            theirs.vera_lambda_b["default"].normal_()
            theirs.vera_lambda_d["default"].normal_()
            ours.vera_b.copy_(theirs.vera_lambda_b["default"])
            ours.vera_d.copy_(theirs.vera_lambda_d["default"])
        else:
            ours = (DoRA if kind == "dora" else LoRA)(linear.weight, rank, scale=2.0, dropout=0.0)
            theirs.lora_B["default"].weight.normal_()
            ours.lora_A.copy_(theirs.lora_A["default"].weight)
            ours.lora_B.copy_(theirs.lora_B["default"].weight)
            if kind == "dora":
                theirs.lora_magnitude_vector["default"].weight.mul_(1.5)
                ours.magnitude.copy_(theirs.lora_magnitude_vector["default"].weight)
        expected = theirs(x)
        got = ours(x, linear(x), linear.weight, linear.bias)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
        assert (got - linear(x)).abs().max() > 1e-2  # the adapter really changes the output
        theirs.merge()
        torch.testing.assert_close(ours.merged(linear.weight), theirs.base_layer.weight, rtol=0, atol=1e-6)


@pytest.mark.parametrize("batch_first", [True, False])
def test_adapted_attention_computes_what_multihead_attention_does(batch_first):
    """Masks (bool and float, per head), key padding and cross-attention: at init, MHA's numbers."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=batch_first).train()
    with torch.no_grad():
        mha.in_proj_bias.normal_(), mha.out_proj.bias.normal_()
    wrapped = AdaptedAttention(copy.deepcopy(mha), {})
    pairs = wrapped.weights()
    for target in ("q", "k", "v", "out"):
        wrapped.deltas[target] = LoRA(pairs[target][0].detach(), 2, 1.0, 0.0)
    x, memory = torch.randn(3, 5, 16), torch.randn(3, 7, 16)  # (N, L, E)
    if not batch_first:
        x, memory = x.transpose(0, 1), memory.transpose(0, 1)
    causal = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    per_head = torch.randn(3 * 4, 5, 7)
    padding = torch.zeros(3, 5, dtype=torch.bool)
    padding[0, -2:] = True
    padding_7 = torch.zeros(3, 7)
    padding_7[1, :3] = float("-inf")
    cases = [dict(query=x, key=x, value=x, attn_mask=causal, key_padding_mask=padding),
             dict(query=x, key=x, value=x, attn_mask=causal.float().masked_fill(causal, float("-inf"))),
             dict(query=x, key=memory, value=memory, attn_mask=per_head, key_padding_mask=padding_7)]
    for case in cases:
        expected = mha(**case, need_weights=False)[0]
        torch.testing.assert_close(wrapped(**case, need_weights=False)[0], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_trains_under_bfloat16_autocast(mini, kind):
    """CUDA runs use bf16 autocast: adapted and unadapted projections must still meet in one dtype."""
    _, batch = mini
    method = _method(mini, kind, f"continual.{kind}.attention=[k,v]")
    model = method.model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        image_features, text_features, scale = model(batch.images, batch.texts)[:3]
        loss = open_clip.ClipLoss()(image_features, text_features, scale)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in method.trainable_parameters())


# ---------------------------------------------------------------- which parameters train

@pytest.mark.parametrize("kind", KINDS)
def test_only_adapter_parameters_get_gradients(mini, kind):
    _, batch = mini
    method = _method(mini, kind)
    model = method.model.train()
    image_features, text_features, scale = model(batch.images, batch.texts)[:3]
    open_clip.ClipLoss()(image_features, text_features, scale).backward()
    adapters = _adapter_names(model)
    assert adapters and adapters == {n for n, p in model.named_parameters() if p.requires_grad}
    for name, parameter in model.named_parameters():
        if name in adapters:
            assert parameter.grad is not None, name
        else:
            assert parameter.grad is None, name
    moving = {"lora": "lora_B", "dora": "lora_B", "vera": "vera_b"}[kind]  # the factor that starts at 0
    grads = [p.grad for n, p in model.named_parameters() if n.endswith(moving)]
    assert len(grads) == 2 * DEPTH * 6 and all(g.abs().sum() > 0 for g in grads)
    trainable = {id(p) for p in method.trainable_parameters()}
    assert trainable == {id(p) for n, p in model.named_parameters() if n in adapters}


def _matrices(attention: list[str], mlp: bool) -> list[tuple[int, int]]:
    """(in, out) of every adapted matrix of one block."""
    return [(WIDTH, WIDTH)] * len(attention) + ([(WIDTH, MLP_WIDTH), (MLP_WIDTH, WIDTH)] if mlp else [])


def _analytic_count(kind: str, rank: int, blocks: int, attention: list[str], mlp: bool) -> int:
    per_matrix = {"lora": lambda i, o: rank * (i + o),            # A (r x in) + B (out x r)
                  "dora": lambda i, o: rank * (i + o) + o,        # + magnitude (out)
                  "vera": lambda i, o: rank + o}[kind]            # d (r) + b (out); A, B frozen and shared
    return blocks * sum(per_matrix(i, o) for i, o in _matrices(attention, mlp))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("overrides, rank, blocks, attention, mlp", [
    ([], 5, 2 * DEPTH, ["q", "k", "v", "out"], True),
    (["rank=3", "attention=[k,v]", "mlp=false", "blocks=last:2", "towers=vision"], 3, 2, ["k", "v"], False),
    (["rank=8", "attention=[q]", "blocks=[0,-1]", "towers=text"], 8, 2, ["q"], True),
    (["rank=2", "attention=[]", "blocks=[1]"], 2, 2, [], True),
])
def test_trainable_parameter_count_is_the_analytic_count(mini, kind, overrides, rank, blocks, attention, mlp):
    backbone, _ = mini
    assert backbone.model.visual.transformer.resblocks[0].mlp.c_fc.weight.shape == (MLP_WIDTH, WIDTH)
    assert backbone.model.transformer.resblocks[0].mlp.c_fc.weight.shape == (MLP_WIDTH, WIDTH)
    method = _method(mini, kind, *(f"continual.{kind}.{o}" for o in overrides))
    counted = sum(p.numel() for p in method.trainable_parameters())
    assert counted == _analytic_count(kind, rank, blocks, attention, mlp)
    assert counted == sum(p.numel() for p in method.model.parameters() if p.requires_grad)


def test_locked_tower_gets_no_adapters(mini):
    method = _method(mini, "lora", "experiment.backbone.freeze_features=true")
    names = _adapter_names(method.model)
    assert names and not any(n.startswith("visual.") for n in names)
    expected = _analytic_count("lora", 5, DEPTH, ["q", "k", "v", "out"], True)  # the text tower's blocks only
    assert sum(p.numel() for p in method.trainable_parameters()) == expected


# ---------------------------------------------------------------- function of the adapted model

@pytest.mark.parametrize("kind", KINDS)
def test_outputs_equal_the_base_model_at_init(mini, kind):
    backbone, batch = mini
    method = _method(mini, kind)
    base = backbone.model
    with torch.no_grad():
        base.train(), method.model.train()  # training path: the same ops as MHA, bit for bit
        assert torch.equal(method.model.encode_image(batch.images), base.encode_image(batch.images))
        assert torch.equal(method.model.encode_text(batch.texts), base.encode_text(batch.texts))
    ours, theirs = _outputs(method.model, batch), _outputs(base, batch)  # eval: MHA takes its fused fast path
    for a, b in zip(ours, theirs):
        assert (a - b).abs().max() <= 1e-6


@pytest.mark.parametrize("kind", KINDS)
def test_merged_model_equals_the_adapted_model(mini, kind):
    backbone, batch = mini
    method = _method(mini, kind)
    _train(method, batch)
    adapted = _outputs(method.model, batch)
    assert (adapted[0] - _outputs(backbone.model, batch)[0]).abs().max() > 1e-3  # training moved it
    merged = merged_copy(method.model)
    assert set(merged.state_dict()) == set(backbone.model.state_dict())  # a plain CLIP again
    for a, b in zip(_outputs(merged, batch), adapted):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-6)
    plain = build_backbone("mini_clip").model
    plain.load_state_dict(method.final_state_dict())  # what final_model.pt holds loads strictly
    for a, b in zip(_outputs(plain, batch), adapted):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-6)


def _effective(model: nn.Module, block: int, tower: str = "visual") -> dict[str, torch.Tensor]:
    """Effective q, k, v, out weights of one attention block (from the merged model)."""
    blocks = model.visual.transformer.resblocks if tower == "visual" else model.transformer.resblocks
    attn = blocks[block].attn
    q, k, v = attn.in_proj_weight.detach().chunk(3)
    return {"q": q, "k": k, "v": v, "out": attn.out_proj.weight.detach()}


@pytest.mark.parametrize("kind", KINDS)
def test_q_k_v_and_out_are_each_adapted(mini, kind):
    backbone, batch = mini
    method = _method(mini, kind)
    _train(method, batch)
    merged = merged_copy(method.model)
    for tower in ("visual", "text"):
        for block in range(DEPTH):
            before, after = _effective(backbone.model, block, tower), _effective(merged, block, tower)
            for target in ("q", "k", "v", "out"):
                assert (after[target] - before[target]).abs().max() > 1e-6, (tower, block, target)


@pytest.mark.parametrize("kind", KINDS)
def test_kv_only_leaves_q_bit_identical(mini, kind):
    backbone, batch = mini
    method = _method(mini, kind, f"continual.{kind}.attention=[k,v]")
    _train(method, batch)
    merged = merged_copy(method.model)
    for tower in ("visual", "text"):
        for block in range(DEPTH):
            before, after = _effective(backbone.model, block, tower), _effective(merged, block, tower)
            assert torch.equal(after["q"], before["q"]) and torch.equal(after["out"], before["out"])
            assert (after["k"] - before["k"]).abs().max() > 1e-6 and (after["v"] - before["v"]).abs().max() > 1e-6


# ---------------------------------------------------------------- continual use

def _adapted_matrix_keys(model: nn.Module) -> set[str]:
    keys = set()
    for name, _ in model.named_parameters():
        if name.endswith(("attn.in_proj_weight", "attn.out_proj.weight", "c_fc.weight", "c_proj.weight")):
            keys.add(name)
    return keys


@pytest.mark.parametrize("kind", KINDS)
def test_merge_at_task_end_moves_base_weights_and_resets_adapters(mini, kind):
    backbone, batch = mini
    method = _method(mini, kind, f"continual.{kind}.merge_at_task_end=true")
    _train(method, batch)
    adapted = _outputs(method.model, batch)
    method.end_task(TaskInfo(0, 1, 4))
    merged_base = merged_copy(method.model).state_dict()
    original = backbone.model.state_dict()
    changed = {k for k in original if not torch.equal(original[k], merged_base[k])}
    assert changed == _adapted_matrix_keys(backbone.model)  # biases, norms, embeddings untouched
    for a, b in zip(_outputs(method.model, batch), adapted):  # the function is kept across the merge
        torch.testing.assert_close(a, b, rtol=0, atol=2e-6)
    for module in method.adapted:
        pairs = module.weights()
        for target, delta in module.adapters().items():
            if kind == "vera":
                assert torch.equal(delta.vera_b, torch.zeros_like(delta.vera_b))
                assert torch.equal(delta.vera_d, torch.full_like(delta.vera_d, 0.1))
            else:
                assert torch.equal(delta.lora_B, torch.zeros_like(delta.lora_B))
            if kind == "dora":
                assert torch.equal(delta.magnitude, torch.linalg.norm(pairs[target][0], dim=1))
    # and a fresh adapter is an identity again: adapted model == its own base weights
    for a, b in zip(_outputs(method.model, batch), _outputs(merged_copy(method.model), batch)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_round_trip_restores_outputs_and_training(mini, kind):
    _, batch = mini
    first = _method(mini, kind)
    _train(first, batch, steps=3, task_steps=4)  # stop after step 3 of a 4-step task
    second = _method(mini, kind)
    second.begin_task(TaskInfo(0, 1, 4))  # a resume re-enters the task, then loads the state
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    for a, b in zip(_outputs(first.model, batch), _outputs(second.model, batch)):
        assert torch.equal(a, b)
    for method in (first, second):  # one more identical step: the optimizer state came along
        method.model.train()
        method.observe(batch)
    for (name, a), (_, b) in zip(first.model.state_dict().items(), second.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_vera_projections_are_seeded_and_shared(mini):
    a, b = _method(mini, "vera"), _method(mini, "vera")
    c = _method(mini, "vera", "continual.vera.projection_seed=1")
    assert torch.equal(a.model.vera_projections.A, b.model.vera_projections.A)
    assert not torch.equal(a.model.vera_projections.A, c.model.vera_projections.A)
    deltas = [d for m in a.adapted for d in m.adapters().values()]
    assert len(deltas) == 2 * DEPTH * 6 and all(d.projections is a.model.vera_projections for d in deltas)
    assert "vera_projections.A" in a.state_dict()["model"]


@pytest.mark.parametrize("override, culprit", [
    ("continual.lora.rank=0", "continual.lora.rank=0"),
    ("continual.lora.attention=[q,x]", "continual.lora.attention"),
    ("continual.lora.blocks=last:9", "continual.lora.blocks='last:9'"),
    ("continual.lora.blocks=[4]", "continual.lora.blocks=[4]"),
    ("continual.lora.blocks=some", "continual.lora.blocks='some'"),
    ("continual.lora.towers=left", "continual.lora.towers='left'"),
    ("continual.lora.dropout=1.5", "continual.lora.dropout=1.5"),
    ("continual.lora.mlp=false", "adapt nothing"),
])
def test_bad_options_are_one_line_errors(mini, override, culprit):
    extra = ["continual.lora.attention=[]"] if override.endswith("mlp=false") else []
    with pytest.raises(FifError) as error:
        _method(mini, "lora", override, *extra)
    message = str(error.value)
    assert culprit in message and "\n" not in message


def test_vera_rejects_zero_d_initial(mini):
    with pytest.raises(FifError, match=r"continual.vera.d_initial=0.0"):
        _method(mini, "vera", "continual.vera.d_initial=0.0")


# ---------------------------------------------------------------- a short `fif run`

@pytest.mark.parametrize("kind, merge", [("lora", False), ("dora", False), ("vera", False), ("lora", True)])
def test_short_run_changes_only_adapter_tensors(tmp_path, mini_root, kind, merge):
    from fif.train.run import Run

    cfg = compose([f"continual.method={kind}", f"continual.{kind}.merge_at_task_end={str(merge).lower()}",
                   "experiment.task.num=2", "experiment.task.n_samples=256", "log.progress=false",
                   f"log.folder={tmp_path}", "log.name=run"])
    with Run(cfg, echo=lambda *_: None) as run:  # the training phases alone: no evaluation needed here
        run.build()
        method = run.parts.method
        initial = {k: v.clone() for k, v in method.model.state_dict().items()}
        for t in run.remaining_tasks():
            run.train_task(t)
    assert run.global_step == 2 * (256 // 128)
    final = method.model.state_dict()
    changed = {k for k in initial if not torch.equal(initial[k], final[k])}
    adapters = {k for k in initial if ".deltas." in k or ".delta." in k}
    moving = {"lora": "lora_B", "dora": "lora_B", "vera": "vera_b"}[kind]
    if merge:  # the base matrices absorbed the adapters; the reset adapters start again from B = 0
        base_changed = {k.replace(".base.", ".") for k in changed - adapters}
        assert base_changed == _adapted_matrix_keys(build_backbone("mini_clip").model)
        assert not any(k.endswith(moving) for k in changed)
    else:
        assert changed <= adapters
        assert all(k in changed for k in adapters if k.endswith(moving))
    saved = method.final_state_dict()  # what finish() writes to final_model.pt
    plain = build_backbone("mini_clip").model
    plain.load_state_dict(saved)  # final_model.pt is a plain CLIP with the adapters merged in
