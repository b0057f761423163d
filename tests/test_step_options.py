"""experiment.compute on the mini CLIP, checked by their numbers: fused AdamW, TF32, checkpointing, compile.

Each option may change how the step runs, never what the CPU default computes: the defaults leave
a CPU step bit-identical, gradient checkpointing is bit-identical on the CPU (the same float ops,
recomputed), fused AdamW and torch.compile equal the plain step up to float rounding.
"""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch
from omegaconf import open_dict
from torch import nn

from fif.config.settings import RunSettings
from fif.config import compose
from fif.data.samples.batches import Batch
from fif.errors import FifError
from fif.methods import TaskInfo, apply_compute, build_method
from fif.optim.adamw import build_adamw
from fif.runtime.device import allow_tf32
from fif.config.settings import ComputeSettings

CPU = torch.device("cpu")
STEPS = 3
KEY = "experiment.compute"
Trained = tuple[list[float], dict[str, torch.Tensor]]  # losses of the steps, weights after them


def _method(mini, *overrides: str, kind: str = "finetune", apply: bool = True):
    """The method as a run builds it (build_method, then apply_compute), on a copy of the mini CLIP."""
    backbone, _ = mini
    cfg = compose([f"continual.method={kind}", "device=cpu", "experiment.optimizer.lr=1e-3",
                   "experiment.scheduler.name=constant", *overrides])
    torch.manual_seed(0)
    method = build_method(RunSettings.from_config(cfg), copy.deepcopy(backbone.model), CPU)
    if apply:
        apply_compute(method)
    return method


def _train(method, batch: Batch, steps: int = STEPS) -> Trained:
    """Losses of ``steps`` steps and the weights after them (adapters included)."""
    torch.manual_seed(1)  # adapter dropout draws from the global generator
    method.begin_task(TaskInfo(0, 1, steps))
    losses = [method.observe(batch)["loss"] for _ in range(steps)]
    return losses, {k: v.detach().clone() for k, v in method.model.state_dict().items()}


def _identical(a: Trained, b: Trained) -> bool:
    """Equal losses and bit-identical weights (the same keys)."""
    return a[0] == b[0] and a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


# ---------------------------------------------------------------- settings

def test_defaults_and_an_older_config_without_the_block():
    cfg = compose([])
    assert ComputeSettings.from_config(cfg) == ComputeSettings(None, True, False, False)
    with open_dict(cfg):
        del cfg.experiment["compute"]  # a run config written before experiment.compute existed
    assert ComputeSettings.from_config(cfg) == ComputeSettings()


@pytest.mark.parametrize("override, message", [
    ("compile=maybe", "experiment.compute.compile='maybe' is not valid: expected true or false"),
    ("grad_checkpointing=1", "experiment.compute.grad_checkpointing=1 is not valid: expected true or false"),
    ("tf32=yes", "experiment.compute.tf32='yes' is not valid: expected true or false"),
])
def test_a_bad_flag_is_a_one_line_error_naming_the_key(override, message):
    with pytest.raises(FifError) as info:
        compose([f"{KEY}.{override}"])  # the config's own type check, before anything is built
    assert str(info.value) == message
    cfg = compose([])  # a config that skipped compose's check (fif-hydra, an edited config.yaml)
    name, value = override.split("=")
    cfg.experiment.compute[name] = value
    with pytest.raises(FifError) as info:
        ComputeSettings.from_config(cfg)
    assert f"{KEY}.{name}=" in str(info.value) and "\n" not in str(info.value)


def test_a_bad_fused_adamw_fails_when_the_method_is_built(mini):
    cfg = compose([f"{KEY}.fused_adamw=sometimes"])  # a string, as the default auto: compose lets it through
    with pytest.raises(FifError) as info:
        build_method(RunSettings.from_config(cfg), copy.deepcopy(mini[0].model), CPU)
    assert str(info.value) == "experiment.compute.fused_adamw='sometimes' is not valid: expected auto, true or false"


# ---------------------------------------------------------------- the CPU default changes nothing

def test_the_default_leaves_a_cpu_step_bit_identical(mini):
    _, batch = mini
    plain = _train(_method(mini, apply=False), batch)
    method = _method(mini)
    model = method.model
    assert model._compiled_call_impl is None  # not compiled
    assert not model.transformer.grad_checkpointing and not model.visual.transformer.grad_checkpointing
    assert _identical(_train(method, batch), plain)


# ---------------------------------------------------------------- fused AdamW

def test_fused_adamw_is_cuda_only_by_default():
    auto = ComputeSettings()
    assert auto.fused_for(torch.device("cuda")) and not auto.fused_for(CPU)
    assert ComputeSettings(fused_adamw=True).fused_for(CPU)
    assert not ComputeSettings(fused_adamw=False).fused_for(torch.device("cuda"))
    named = list(nn.Linear(3, 2).named_parameters())
    assert not build_adamw(named, 1e-3, 0.1).defaults["fused"]
    assert build_adamw(named, 1e-3, 0.1, fused=True).defaults["fused"] is True


def test_fused_adamw_on_cpu_trains_the_loop_adamw_model(mini):
    _, batch = mini
    default = _method(mini)
    losses, weights = _train(default, batch, steps=5)
    assert not default.optimizer.defaults["fused"]  # the CPU default: torch's plain per-tensor loop
    assert _identical(_train(_method(mini, f"{KEY}.fused_adamw=false"), batch, steps=5), (losses, weights))
    fused = _method(mini, f"{KEY}.fused_adamw=true")
    fused_losses, fused_weights = _train(fused, batch, steps=5)
    assert fused.optimizer.defaults["fused"] is True
    start = {k: v.detach() for k, v in mini[0].model.state_dict().items()}
    assert _max_difference(weights, start) > 4e-3  # 5 steps of lr 1e-3 moved the weights ...
    assert _max_difference(fused_weights, weights) < 2e-5  # ... and the two AdamWs agree to float rounding
    assert fused_losses == pytest.approx(losses, abs=1e-5)


# ---------------------------------------------------------------- TF32

def test_tf32_flags_are_left_alone_on_cpu_and_set_on_cuda(mini):
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        for flags in [(False, True), (True, False)]:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
            for override in (f"{KEY}.tf32=true", f"{KEY}.tf32=false"):
                _method(mini, override)  # apply_compute on the CPU
                assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags
        for enabled in (True, False):  # a cuda device (no GPU needed to set the process-wide flags)
            allow_tf32(torch.device("cuda", 0), enabled)
            assert torch.backends.cuda.matmul.allow_tf32 is enabled and torch.backends.cudnn.allow_tf32 is enabled
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# ---------------------------------------------------------------- gradient checkpointing

@pytest.mark.parametrize("kind, options", [("finetune", []), ("lora", ["continual.lora.dropout=0.3"])])
def test_grad_checkpointing_gives_the_plain_step_bit_for_bit(mini, kind, options):
    """Recomputing in backward repeats the same CPU float ops (and the dropout masks): exactly equal."""
    _, batch = mini
    plain = _method(mini, *options, kind=kind)
    checkpointed = _method(mini, *options, f"{KEY}.grad_checkpointing=true", kind=kind)
    assert checkpointed.model.transformer.grad_checkpointing
    assert checkpointed.model.visual.transformer.grad_checkpointing
    calls = {"plain": 0, "checkpointed": 0}
    for name, method in (("plain", plain), ("checkpointed", checkpointed)):
        def count(*_, name=name):
            calls[name] += 1
        # a pre-hook: the recompute stops once it has the saved tensors, before any forward hook runs
        method.model.visual.transformer.resblocks[0].register_forward_pre_hook(count)
    plain_run = _train(plain, batch)
    after_plain = torch.rand(4)
    checkpointed_run = _train(checkpointed, batch)
    assert calls == {"plain": STEPS, "checkpointed": 2 * STEPS}  # each block's forward recomputed in backward
    assert _identical(checkpointed_run, plain_run)
    assert torch.equal(torch.rand(4), after_plain)  # the recompute left the global generator where it was


def test_grad_checkpointing_needs_a_model_that_has_it():
    fake = SimpleNamespace(model=nn.Linear(2, 2), device=CPU,
                           context=SimpleNamespace(compute=ComputeSettings(grad_checkpointing=True)))
    with pytest.raises(FifError, match=r"^experiment\.compute\.grad_checkpointing=true: the backbone \(Linear\)"):
        apply_compute(fake)


# ---------------------------------------------------------------- torch.compile

@pytest.mark.slow
def test_a_compiled_step_equals_the_plain_step(mini):
    """One inductor compile of the mini CLIP's forward + backward: ~60-90 s on 2 CPU cores."""
    _, batch = mini
    plain_losses, plain_weights = _train(_method(mini, "continual.lora.dropout=0.2", kind="lora"), batch, steps=2)
    after_plain = torch.rand(4)
    method = _method(mini, "continual.lora.dropout=0.2", f"{KEY}.compile=true", kind="lora")
    assert method.model._compiled_call_impl is not None
    start = time.perf_counter()
    losses, weights = _train(method, batch, steps=2)
    seconds = time.perf_counter() - start
    assert losses == pytest.approx(plain_losses, abs=1e-5)
    assert _max_difference(weights, plain_weights) < 1e-5  # the state dict keeps its keys (no _orig_mod.)
    assert torch.equal(torch.rand(4), after_plain)  # dropout drew from torch's generator, as eagerly
    model, images = method.model.eval(), batch.images
    eager = copy.deepcopy(model)  # a deep copy is an eager model
    assert eager._compiled_call_impl is None
    with torch.no_grad():  # encode_image (the evaluation's) stays eager: bit-identical to the copy's
        assert torch.equal(model.encode_image(images), eager.encode_image(images))
    print(f"compiled: 2 steps incl. compilation {seconds:.1f} s")


# ---------------------------------------------------------------- under torchrun + DDP

DDP_SCRIPT = '''
import copy, sys, torch
from fif.config import compose
from fif.config.settings import RunSettings
from fif.data.samples.batches import Batch
from fif.methods import TaskInfo, apply_compute, build_method
from fif.models.backbone import build_backbone
from fif.runtime.distributed import init_distributed, shard

ctx = init_distributed(torch.device("cpu"))
kind, out, overrides = sys.argv[1], sys.argv[2], sys.argv[3:]
backbone = build_backbone("mini_clip")
images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
texts = backbone.tokenizer([f"a photo of shape {i}" for i in range(8)])
part = shard(8, ctx)
batch = Batch(images[part.start:part.stop], texts[part.start:part.stop], {"update": len(part)})
cfg = compose([f"continual.method={kind}", "device=cpu", "experiment.optimizer.lr=1e-3",
               "experiment.scheduler.name=constant", *overrides])
torch.manual_seed(0)
method = build_method(RunSettings.from_config(cfg), copy.deepcopy(backbone.model), torch.device("cpu"), dist=ctx)
apply_compute(method)
method.begin_task(TaskInfo(0, 1, 3))
losses = [method.observe(batch)["loss"] for _ in range(3)]
if ctx.rank == 0:
    torch.save({"losses": losses, "weights": method.model.state_dict()}, out)
'''


def _torchrun_step(tmp_path, kind: str, *overrides: str) -> Trained:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script, out = tmp_path / "ddp_step.py", tmp_path / f"{kind}_{len(overrides)}.pt"
    script.write_text(DDP_SCRIPT)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             f"--master_port={port}", str(script), kind, str(out), *overrides],
                            capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = torch.load(out, weights_only=True)
    return saved["losses"], saved["weights"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["finetune", "lora"])
def test_grad_checkpointing_under_ddp_gives_the_plain_two_process_step(tmp_path, kind):
    """DDP wraps the checkpointed model (methods.base._training_forward): still bit-identical."""
    plain = _torchrun_step(tmp_path, kind)
    assert _identical(_torchrun_step(tmp_path, kind, f"{KEY}.grad_checkpointing=true"), plain)
