"""Compute budgets: peak-memory counts, method profiles, MAF, budget -> steps, `fif flops`."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import re

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from fif.config.settings import RunSettings
from fif.budget.archs import fake_clone, meta_model
from fif.budget.maf import steps_for_budget
from fif.budget.memory import MemoryBreakdown, SavedTensorMeter
from fif.budget.plan import plan_from_profiles, plan_task_budget, steps_without_budget
from fif.budget.profile import MethodProfile, profile_method
from fif.budget.table import method_table, parse_rows
from fif.cli import main
from fif.config import compose
from fif.errors import FifError
from fif.methods import build_method
from fif.methods.adapter_layers import ADAPTED_TYPES, AdaptedAttention, LoRA
from fif.methods.adapters import REFERENCE_ADAPTER
from fif.models.backbone import build_backbone
from fif.config.settings import BudgetSettings, TaskSettings

BATCH = 4


@pytest.fixture(scope="module")
def mini() -> nn.Module:
    return build_backbone("mini_clip").model


@pytest.fixture(scope="module")
def base_cfg():
    return compose([])


def _cfg(base, *overrides: str):
    return OmegaConf.merge(base, OmegaConf.from_dotlist(list(overrides)))


# ------------------------------------------------------------------ memory counting
@pytest.mark.parametrize("fake", [False, True])
def test_saved_tensor_count_of_a_small_mlp_equals_the_analytic_bytes(fake):
    """Linear(64->32) -> GELU -> Linear(32->16) on a batch of 8, fp32.

    Trainable: GELU saves its input (8x32) and the second Linear saves GELU's output (8x32) for its
    weight gradient; the batch and the weights are counted elsewhere. First layer frozen: nothing
    before the second Linear needs a gradient, so only its input (8x32) is saved.
    """
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 16))
    with FakeTensorMode() if fake else contextlib.nullcontext():
        model = fake_clone(net) if fake else net
        x = torch.randn(8, 64)
        with SavedTensorMeter(exclude=[*model.parameters(), x]) as meter:
            model(x).sum()
        assert meter.bytes == 2 * 8 * 32 * 4
        with SavedTensorMeter() as everything:
            model(x).sum()
        assert everything.bytes == 8 * 64 * 4 + 2 * 8 * 32 * 4 + 32 * 16 * 4  # + the batch and the 2nd weight
        for p in model[0].parameters():
            p.requires_grad_(False)
        with SavedTensorMeter(exclude=[*model.parameters(), x]) as frozen:
            model(x).sum()
        assert frozen.bytes == 8 * 32 * 4


def test_a_storage_saved_twice_is_counted_once():
    x = torch.randn(16, 16, requires_grad=True)
    with SavedTensorMeter() as meter:
        y = x.exp()  # saves its result y
        (y * y.t()).sum()  # saves y and y.t(), a view of y's storage
    assert len(meter.storages) == 1 and meter.bytes == 16 * 16 * 4


@pytest.mark.parametrize("method, trainable", [
    ("finetune", lambda m: list(m.parameters())),
    ("lnfit", lambda m: [p for mod in m.modules() if isinstance(mod, nn.LayerNorm) for p in mod.parameters(False)]),
])
def test_static_memory_is_weights_gradients_and_two_adam_tensors(mini, base_cfg, method, trainable):
    profile = profile_method(RunSettings.from_config(_cfg(base_cfg, f"continual.method={method}")), mini, batch_size=BATCH)
    n_trainable = sum(p.numel() for p in trainable(mini))
    assert profile.trainable_parameters == n_trainable
    weights = sum(t.numel() * t.element_size() for t in [*mini.parameters(), *mini.buffers()])
    assert profile.memory.weights == weights
    assert profile.memory.gradients == 4 * n_trainable
    assert profile.memory.optimizer == 2 * 4 * n_trainable
    assert profile.memory.batch == BATCH * 3 * 32 * 32 * 4 + BATCH * 24 * 8
    memory = profile.memory
    assert memory.peak == memory.weights + memory.gradients + memory.optimizer + memory.activations + memory.batch


# ------------------------------------------------------------------ method profiles
@pytest.mark.parametrize("overrides", [
    ["continual.method=finetune"],
    ["continual.method=finetune", "experiment.backbone.freeze_features=true"],
    ["continual.method=lora"],
    ["continual.method=vera", "continual.vera.formulation=merged"],
    ["continual.method=ewc", "continual.ewc.max_fim_samples=64"],
    ["continual.method=si"],
])
def test_fake_and_real_tensors_give_the_same_profile(mini, base_cfg, overrides):
    cfg = _cfg(base_cfg, *overrides)
    fake = profile_method(RunSettings.from_config(cfg), mini, batch_size=BATCH, fake=True)
    real = profile_method(RunSettings.from_config(cfg), mini, batch_size=BATCH, fake=False)
    assert fake.forward_gflops == real.forward_gflops > 0
    assert fake.backward_gflops == real.backward_gflops > 0
    assert fake.end_of_task_gflops == real.end_of_task_gflops
    assert fake.memory == real.memory


def test_profiling_leaves_the_model_and_the_rng_untouched(mini, base_cfg):
    before = {k: v.clone() for k, v in mini.state_dict().items()}
    flags = [p.requires_grad for p in mini.parameters()]
    rng = torch.get_rng_state()
    for fake in (True, False):
        profile_method(RunSettings.from_config(_cfg(base_cfg, "continual.method=lora")), mini, batch_size=BATCH, fake=fake)
    assert torch.equal(rng, torch.get_rng_state())
    assert [p.requires_grad for p in mini.parameters()] == flags
    assert all(torch.equal(before[k], v) for k, v in mini.state_dict().items())
    assert not any(isinstance(m, ADAPTED_TYPES) for m in mini.modules())


def test_ewc_fisher_pass_is_reported_per_task_and_its_penalty_costs_memory(mini, base_cfg):
    ewc = profile_method(RunSettings.from_config(_cfg(base_cfg, "continual.method=ewc", "continual.ewc.max_fim_samples=1000")), mini,
                         batch_size=BATCH)
    finetune = profile_method(RunSettings.from_config(_cfg(base_cfg, "continual.method=finetune")), mini, batch_size=BATCH)
    assert ewc.end_of_task_samples == 1000
    # the Fisher pass is a forward + backward of the contrastive loss over 1000 samples
    assert ewc.end_of_task_gflops == pytest.approx(1000 * finetune.gflops_per_sample, rel=1e-12)
    assert ewc.gflops_per_sample == finetune.gflops_per_sample  # the penalty is elementwise: no matmul
    fp32_params = 4 * ewc.trainable_parameters
    # the penalty sum F (theta - theta*)^2 saves F and theta - theta*, two parameter-sized tensors
    assert ewc.memory.activations - finetune.memory.activations == 2 * fp32_params
    assert finetune.end_of_task_gflops == 0 and finetune.end_of_task_samples == 0


def test_allocator_memory_needs_a_gpu(mini, base_cfg):
    with pytest.raises(FifError, match="memory=allocator needs a CUDA device"):
        profile_method(RunSettings.from_config(base_cfg), mini, batch_size=BATCH, memory="allocator", device=torch.device("cpu"))


def test_convnext_backbone_profiles_without_weights(tmp_path, capsys):
    """A timm tower full of depthwise convolutions: backward ~2x forward once `groups` is counted
    (the text tower's attention backs up 2.5x, the stem needs no input gradient). Adapters need
    transformer blocks: that row is reported, the table goes on."""
    out = tmp_path / "convnext.json"
    assert main(["flops", "--arch", "convnext_base", "--methods", "finetune,lora", "--batch-size", "2",
                 "--json", str(out)]) == 0
    assert "lora: not profiled: continual.lora.towers includes vision" in capsys.readouterr().out
    table = json.loads(out.read_text())
    full = table["rows"][0]
    assert full["forward_gflops_per_sample"] == pytest.approx(36.67, abs=0.01)
    assert 1.95 < full["backward_gflops_per_sample"] / full["forward_gflops_per_sample"] < 2.05  # 6.9 unfixed
    assert list(table["skipped"]) == ["lora"]


# ------------------------------------------------------------------ the reference's table
REFERENCE_FLOP_RATIOS = {  # ViT-B/16, batch 512 (shared/reference/fif/README.md)
    "locked-image": 0.4287, "lnfit": 0.6809, "lora-ref": 0.8594, "locked-text": 0.9031}


@pytest.fixture(scope="module")
def vit_b16_table():
    cfg = compose(["continual.lora.rank=4"])
    rows = parse_rows(",".join(["finetune", *REFERENCE_FLOP_RATIOS]))
    return {row.profile.label: row for row in method_table(RunSettings.from_config(cfg), meta_model("ViT-B-16"), rows, 1420, "bf16",
                                                           batch_size=512)}


def test_full_finetuning_of_vit_b16_costs_the_references_gflops(vit_b16_table):
    # the reference: 63394.76 per step of 512; open_clip's ClipLoss computes both logit matrices (+0.8)
    assert vit_b16_table["finetune"].profile.gflops_per_step == pytest.approx(63394.76, abs=1.0)
    assert vit_b16_table["finetune"].steps == 1420


@pytest.mark.parametrize("label", list(REFERENCE_FLOP_RATIOS))
def test_flop_ratios_reproduce_the_references_table(vit_b16_table, label):
    assert vit_b16_table[label].flop_ratio == pytest.approx(REFERENCE_FLOP_RATIOS[label], rel=0.02)


# ------------------------------------------------------------------ LoRA formulations
def _adapted(mini, base_cfg, kind: str, formulation: str = "input", *extra: str):
    model = copy.deepcopy(mini)
    cfg = _cfg(base_cfg, f"continual.method={kind}", f"continual.{kind}.formulation={formulation}", *extra)
    return build_method(RunSettings.from_config(cfg), model, torch.device("cpu")), model


@pytest.mark.parametrize("kind", ["lora", "dora", "vera"])
def test_merged_formulation_gives_the_input_paths_outputs_and_gradients(mini, base_cfg, kind):
    method, model = _adapted(mini, base_cfg, kind)
    torch.manual_seed(1)
    with torch.no_grad():  # a non-trivial adapter (B = 0 and b = 0 at init would hide mistakes)
        for p in method.trainable_parameters():
            p.add_(0.05 * torch.randn_like(p))
    images, texts = torch.randn(3, 3, 32, 32), torch.randint(1, 150, (3, 24))

    def outputs_and_grads():
        model.zero_grad()
        image, text, _ = model(images, texts)[:3]
        (image.square().sum() + (text * torch.linspace(-1, 1, text.shape[-1])).sum()).backward()
        return image.detach(), text.detach(), [p.grad.clone() for p in method.trainable_parameters()]

    reference = outputs_and_grads()
    for module in model.modules():
        if isinstance(module, ADAPTED_TYPES):
            module.formulation = "merged"
    merged = outputs_and_grads()
    assert torch.allclose(reference[0], merged[0], atol=1e-5) and torch.allclose(reference[1], merged[1], atol=1e-5)
    for a, b in zip(reference[2], merged[2]):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_merged_cross_attention_with_a_mask_equals_the_input_path():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=True)
    deltas = {t: LoRA(w.detach(), 3, 0.7, 0.0) for t, (w, _) in AdaptedAttention(mha, {}).weights().items()}
    for delta in deltas.values():
        nn.init.normal_(delta.lora_B, std=0.1)
    wrapped = AdaptedAttention(mha, deltas)
    q, kv = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    mask = torch.rand(5, 7) > 0.7
    mask[:, 0] = False
    expected = wrapped(q, kv, kv, attn_mask=mask, need_weights=False)[0]
    wrapped.formulation = "merged"
    assert torch.allclose(wrapped(q, kv, kv, attn_mask=mask, need_weights=False)[0], expected, atol=1e-5)


def _adapted_matrix_sizes(method) -> int:
    return sum(module.weights()[t][0].numel() for module in method.adapted for t in module.adapters())


def test_merged_lora_rank_costs_per_step_and_input_lora_rank_per_sample(mini, base_cfg):
    """Merged: forming W + s B A and its gradient costs 6 r (out x in) per matrix per step, whatever
    the batch (the reference's LoRA r=64 - r=4 = 25.77 GFLOPs per step on ViT-B/16). Input path: r
    costs per sample."""
    reference = [f"continual.lora.{o}" for o in REFERENCE_ADAPTER]

    def step(rank: int, batch: int, *extra: str) -> float:
        cfg = _cfg(base_cfg, "continual.method=lora", f"continual.lora.rank={rank}", *extra)
        return profile_method(RunSettings.from_config(cfg), mini, batch_size=batch).gflops_per_step * 1e9

    method, _ = _adapted(mini, base_cfg, "lora", "merged", *reference[1:])
    per_rank = 6 * _adapted_matrix_sizes(method)
    for batch in (4, 8):
        assert step(8, batch, *reference) - step(4, batch, *reference) == pytest.approx(4 * per_rank, rel=1e-9)
    small, large = (step(8, b) - step(4, b) for b in (4, 8))
    assert large == pytest.approx(2 * small, rel=1e-9)


@pytest.mark.parametrize("override, message", [
    ("continual.lora.formulation=fused", "continual.lora.formulation='fused' is not valid"),
    ("continual.lora.mlp=[c_proj,c_out]", "continual.lora.mlp="),
])
def test_bad_adapter_options_are_one_line_naming_the_key(mini, base_cfg, override, message):
    with pytest.raises(FifError, match=message.replace("[", r"\[")):
        _adapted(mini, base_cfg, "lora", "input", override)


def test_merged_formulation_refuses_adapter_dropout(mini, base_cfg):
    with pytest.raises(FifError, match="continual.lora.formulation=merged .* continual.lora.dropout=0"):
        _adapted(mini, base_cfg, "lora", "merged", "continual.lora.dropout=0.1")


def test_mlp_list_picks_the_adapted_mlp_layers(mini, base_cfg):
    method, model = _adapted(mini, base_cfg, "lora", "input", "continual.lora.mlp=[c_proj]",
                             "continual.lora.attention=[]")
    depth = len(model.visual.transformer.resblocks) + len(model.transformer.resblocks)
    assert len(method.adapted) == depth
    assert all(type(block.mlp.c_fc) is nn.Linear for block in model.transformer.resblocks)


# ------------------------------------------------------------------ budget -> steps
def _profile(label: str, gflops: float, peak: int, end_of_task: float = 0.0) -> MethodProfile:
    return MethodProfile(label, label, 512, "bf16", 1, gflops / 3, 2 * gflops / 3, end_of_task,
                         50_000 if end_of_task else 0, MemoryBreakdown(peak, 0, 0, 0, 0))


def test_full_finetuning_gets_exactly_the_stated_steps():
    full = _profile("finetune", 123.82, 100)
    plan = plan_from_profiles(BudgetSettings("fullft_steps", 1420, True, "bf16", "count"), full, full)
    assert plan.steps == 1420 and plan.n_samples == 1420 * 512
    assert plan.fraction_used == pytest.approx(1.0)
    assert steps_for_budget(1420 * 63395.56, 63395.56) == 1420  # no float-rounding loss of a step


def test_a_cheaper_method_gets_more_steps_scaled_by_flops_and_memory():
    full, cheap = _profile("finetune", 120.0, 100), _profile("lora", 90.0, 80)
    plan = plan_from_profiles(BudgetSettings("fullft_steps", 1420, True, "bf16", "count"), cheap, full)
    step_maf = 90.0 * 512 * 0.8
    assert plan.memory_ratio == pytest.approx(0.8)
    assert plan.step_maf == pytest.approx(step_maf)
    assert plan.steps == math.floor(1420 * 120.0 * 512 / step_maf) == 2366
    assert 1 - step_maf / plan.budget_maf < plan.fraction_used <= 1
    maf_plan = plan_from_profiles(BudgetSettings("maf", plan.budget_maf, True, "bf16", "count"), cheap, full)
    assert maf_plan.steps == plan.steps
    assert maf_plan.describe().startswith(f"budget: {plan.budget_maf:.4g} MAF-GFLOPs per task; lora")
    assert plan.describe().startswith(f"budget: 1420 full-finetuning steps = {plan.budget_maf:.4g} MAF-GFLOPs")


def test_end_of_task_compute_is_charged_to_the_task_once():
    full, ewc = _profile("finetune", 120.0, 100), _profile("ewc", 120.0, 102, end_of_task=50_000 * 120.0)
    charged = plan_from_profiles(BudgetSettings("fullft_steps", 1420, True, "bf16", "count"), ewc, full)
    free = plan_from_profiles(BudgetSettings("fullft_steps", 1420, False, "bf16", "count"), ewc, full)
    step_maf, fisher_maf = 120.0 * 512 * 1.02, 50_000 * 120.0 * 1.02
    assert free.steps == math.floor(1420 * 120.0 * 512 / step_maf)
    assert charged.steps == math.floor((1420 * 120.0 * 512 - fisher_maf) / step_maf)
    assert charged.end_of_task_maf == pytest.approx(fisher_maf) and free.end_of_task_maf == 0


def test_a_per_sample_end_of_task_pass_is_charged_for_the_samples_a_task_holds():
    full, ewc = _profile("finetune", 120.0, 100), _profile("ewc", 120.0, 102, end_of_task=50_000 * 120.0)
    settings = BudgetSettings("fullft_steps", 1420, True, "bf16", "count")
    small = plan_from_profiles(settings, ewc, full, task_samples=800)  # the Fisher reads at most 800 samples
    step_maf, fisher_maf = 120.0 * 512 * 1.02, 800 * 120.0 * 1.02
    assert small.end_of_task_maf == pytest.approx(fisher_maf)
    assert small.steps == math.floor((1420 * 120.0 * 512 - fisher_maf) / step_maf)
    large = plan_from_profiles(settings, ewc, full, task_samples=10**6)  # a task larger than max_fim_samples
    assert large.end_of_task_maf == pytest.approx(50_000 * 120.0 * 1.02)


def test_a_budget_too_small_for_one_step_is_one_clear_error():
    full = _profile("finetune", 120.0, 100)
    with pytest.raises(FifError, match="buys no step of finetune"):
        plan_from_profiles(BudgetSettings("maf", 1000.0, True, "bf16", "count"), full, full)


@pytest.mark.parametrize("overrides, message", [
    (["experiment.task.budget.unit=steps", "experiment.task.budget.amount=10"], "experiment.task.budget.unit='steps'"),
    (["experiment.task.budget.unit=maf"], "experiment.task.budget.amount=None is not valid"),
    (["experiment.task.budget.unit=maf", "experiment.task.budget.amount=-3"], "amount=-3 is not valid"),
    (["experiment.task.budget.precision=fp16"], "experiment.task.budget.precision='fp16'"),
    (["experiment.task.budget.memory=guess"], "experiment.task.budget.memory='guess'"),
])
def test_bad_budget_settings_are_one_line_naming_the_key(overrides, message):
    with pytest.raises(FifError, match=message.replace("[", r"\[")):
        RunSettings.from_config(compose(overrides))


def test_plan_for_a_run_on_the_mini_clip(mini):
    cfg = compose(["continual.method=lora", "experiment.task.budget.unit=fullft_steps",
                   "experiment.task.budget.amount=20"])
    plan = plan_task_budget(RunSettings.from_config(cfg), mini, torch.device("cpu"))
    full = profile_method(RunSettings.from_config(compose(["continual.method=finetune"])), mini)
    lora = profile_method(RunSettings.from_config(cfg), mini)
    step_maf = lora.gflops_per_step * lora.memory.peak / full.memory.peak
    assert plan.steps == math.floor(20 * full.gflops_per_step / step_maf) > 20
    assert plan.n_samples == plan.steps * 128 and plan.precision == "fp32" and plan.memory_source == "count"
    assert f"buys {plan.steps} steps of 128" in plan.describe()
    assert steps_without_budget(RunSettings.from_config(cfg)) is None  # decided by the plan, once the model is built
    plain = plan_task_budget(RunSettings.from_config(compose([])), mini, torch.device("cpu"))
    assert plain.steps == steps_without_budget(RunSettings.from_config(compose([]))) == 2560 // 128 and plain.unit is None
    assert plain.n_samples == 2560 and plain.batch_size == 128


def test_budget_settings_accept_what_the_profiler_accepts():
    from fif.config import settings
    from fif.budget import profile

    assert (settings.PRECISIONS, settings.MEMORY_SOURCES) == (profile.PRECISIONS, profile.MEMORY_SOURCES)


@pytest.mark.parametrize("overrides, steps", [([], 20), (["experiment.task.n_samples=255"], 1),
                                              (["experiment=fif"], 727040 // 512)])
def test_steps_from_samples_without_a_budget(overrides, steps):
    cfg = compose(overrides)
    assert steps_without_budget(RunSettings.from_config(cfg)) == TaskSettings.from_config(cfg).steps_from_samples == steps


@pytest.mark.parametrize("overrides, message", [
    (["experiment.task.batch_size=0"], "experiment.task.batch_size=0 is not valid: expected a whole number >= 1"),
    (["experiment.task.n_samples=127"], "experiment.task.n_samples=127 is smaller than one batch "
                                        "(experiment.task.batch_size=128)"),
    (["experiment.task.budget.unit=maf"], "experiment.task.budget.amount=None is not valid"),
])
def test_bad_task_settings_fail_before_any_data_is_read(overrides, message):
    with pytest.raises(FifError, match=re.escape(message)):
        steps_without_budget(RunSettings.from_config(compose(overrides)))


# ------------------------------------------------------------------ fif flops
def test_cli_flops_prints_and_writes_the_table_for_an_architecture_without_weights(tmp_path, capsys):
    out = tmp_path / "table.json"
    code = main(["flops", "--arch", "ViT-B-32", "--methods", "finetune,ewc", "--batch-size", "8",
                 "--precision", "fp32", "--fullft-steps", "100", "--json", str(out),
                 "--row", "lora r8=continual.method=lora,continual.lora.rank=8,continual.lora.attention=[k,v]"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "ViT-B-32 (151.3M parameters): batch 8" in printed and "lora r8" in printed
    table = json.loads(out.read_text())
    rows = {row["label"]: row for row in table["rows"]}
    assert rows["finetune"]["forward_gflops_per_sample"] == pytest.approx(14.78, abs=0.01)
    assert rows["finetune"]["steps"] == 100
    assert rows["ewc"]["end_of_task_gflops"] == pytest.approx(50_000 * rows["finetune"]["gflops_per_sample"])
    assert rows["ewc"]["steps"] == 0  # its Fisher pass over 50,000 samples costs more than 100 steps of 8
    vision = 12 * 8 * (2 * (768 + 768) + 2 * (768 + 3072))  # k, v, c_fc, c_proj: r (in + out) each
    text = 12 * 8 * (2 * (512 + 512) + 2 * (512 + 2048))
    assert rows["lora r8"]["trainable_parameters"] == vision + text


def test_cli_flops_defaults_to_the_steps_n_samples_buy(capsys):
    args = ["flops", "--arch", "ViT-B-32", "--methods", "finetune", "--batch-size", "8", "--precision", "fp32"]
    assert main([*args, "experiment.task.n_samples=100"]) == 0
    assert "steps for 12 full-finetuning steps per task" in capsys.readouterr().out  # 100 // 8, not // 128
    assert main([*args, "experiment.task.n_samples=7"]) == 2
    assert "experiment.task.n_samples=7 is smaller than one batch" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--methods", "finetune,magic"], "--methods: magic not known"),
    (["--arch", "ViT-Z-99"], "architecture 'ViT-Z-99' is not known"),
    (["--row", "nolabel"], "--row 'nolabel' is not valid"),
    (["--row", "x=continual.lora.rnk=3"], "bad row override"),
])
def test_cli_flops_bad_input_is_one_line(capsys, args, message):
    assert main(["flops", "--methods", "finetune", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


@pytest.mark.slow
def test_run_with_a_budget_trains_the_steps_it_buys(tmp_path, mini_root):
    from fif.train.run import run_experiment

    cfg = compose([f"log.folder={tmp_path}", "log.name=budget", "log.progress=false", "experiment.task.num=1",
                   "continual.method=lnfit", "experiment.task.budget.unit=fullft_steps",
                   "experiment.task.budget.amount=2"])
    lines: list[str] = []
    output = run_experiment(cfg, echo=lines.append)
    plan = plan_task_budget(RunSettings.from_config(cfg), build_backbone("mini_clip").model, torch.device("cpu"))
    assert plan.steps > 2
    assert output.results["tasks"][0]["samples_seen"] == plan.n_samples
    assert any(line.startswith("budget: 2 full-finetuning steps") and f"buys {plan.steps} steps" in line
               for line in lines)
