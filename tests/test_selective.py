"""BitFit, LNFit and locked-image / locked-text: three real steps on the mini benchmark change
exactly the intended tensors and leave every other tensor bit-identical."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fif.config.settings import RunSettings
from fif.config import compose
from fif.errors import FifError
from fif.methods import build_method
from fif.methods.selective import bias_parameters, layernorm_parameters
from fif.models.backbone import build_backbone
from conftest import train_tasks

SHORT = ["experiment.task.num=1", "experiment.task.n_samples=384", "log.progress=false", "log.checkpoint=true"]
VARIANTS = {
    "finetune": ["continual.method=finetune"],
    "bitfit": ["continual.method=bitfit"],
    "lnfit": ["continual.method=lnfit"],
    "locked_image": ["continual.method=finetune", "experiment.backbone.freeze_features=true"],
    "locked_text": ["continual.method=finetune", "experiment.backbone.freeze_head=true"],
}


def _initial() -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in build_backbone("mini_clip").model.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    assert before.keys() == after.keys()
    return {k for k in before if not torch.equal(before[k], after[k])}


def _names(select) -> set[str]:
    model = build_backbone("mini_clip").model
    chosen = {id(p) for p in select(model)}
    return {n for n, p in model.named_parameters() if id(p) in chosen}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small) -> dict[str, tuple[dict[str, torch.Tensor], float]]:
    """Final weights and GFLOPs per sample of each variant after one task of 3 steps."""
    folder = tmp_path_factory.mktemp("selective")
    out = {}
    for name, overrides in VARIANTS.items():
        cfg = compose([f"log.folder={folder}", f"log.name={name}", *SHORT, *small, *overrides])
        run = train_tasks(cfg)  # the training phase alone: these tests read weights, not scores
        weights = {k: v.detach().cpu() for k, v in run.parts.method.final_state_dict().items()}
        start = json.loads(Path(run.run_dir / "events.jsonl").read_text().splitlines()[0])
        out[name] = (weights, start["gflops_per_sample"])
    return out


def test_bitfit_selects_every_bias_and_nothing_else():
    names = _names(bias_parameters)
    assert names and all(n.endswith("bias") for n in names)
    assert {"visual.transformer.resblocks.0.attn.in_proj_bias", "ln_final.bias", "visual.ln_pre.bias"} <= names
    # mini CLIP: 8 blocks x (ln_1 128 + in_proj 384 + out_proj 128 + ln_2 128 + c_fc 512 + c_proj 128)
    # + ln_pre, ln_post, ln_final biases (3 x 128)
    model = build_backbone("mini_clip").model
    assert sum(p.numel() for p in bias_parameters(model)) == 8 * 1408 + 3 * 128 == 11648


def test_lnfit_selects_every_layernorm_parameter():
    names = _names(layernorm_parameters)
    assert all(".ln_" in f".{n}" or n.startswith("ln_") for n in names)
    model = build_backbone("mini_clip").model
    # 8 blocks x 2 LayerNorms + ln_pre, ln_post, ln_final; each a 128 gain and a 128 bias
    assert sum(p.numel() for p in layernorm_parameters(model)) == (8 * 2 + 3) * 256 == 4864


@pytest.mark.parametrize("variant, select", [("bitfit", bias_parameters), ("lnfit", layernorm_parameters)])
def test_selective_training_changes_only_the_selected_tensors(trained, variant, select):
    before, (after, _) = _initial(), trained[variant]
    changed, selected = _changed(before, after), _names(select)
    assert changed == selected  # every selected tensor moved, every other one is bit-identical
    untouched = [k for k in before if k not in selected]
    assert untouched and all(torch.equal(before[k], after[k]) for k in untouched)


def test_locked_image_leaves_every_visual_tensor_bit_identical(trained):
    before, (after, _) = _initial(), trained["locked_image"]
    visual = [k for k in before if k.startswith("visual.")]
    n_visual = sum(n.startswith("visual.") for n, _ in build_backbone("mini_clip").model.named_parameters())
    assert len(visual) == n_visual > 0 and all(torch.equal(before[k], after[k]) for k in visual)
    changed = _changed(before, after)
    assert changed and not any(k.startswith("visual.") for k in changed)
    assert {"token_embedding.weight", "text_projection", "logit_scale"} <= changed


def test_locked_text_leaves_the_text_tower_and_temperature_bit_identical(trained):
    before, (after, _) = _initial(), trained["locked_text"]
    changed = _changed(before, after)
    assert changed and all(k.startswith("visual.") for k in changed)
    assert "logit_scale" not in changed and "token_embedding.weight" not in changed


def test_finetune_moves_both_towers(trained):
    changed = _changed(_initial(), trained["finetune"][0])
    assert any(k.startswith("visual.") for k in changed) and "token_embedding.weight" in changed


def test_frozen_parameters_cost_no_backward_flops(trained):
    full = trained["finetune"][1]
    for variant in ("bitfit", "lnfit", "locked_image", "locked_text"):
        assert trained[variant][1] < full, variant


def test_freezing_both_towers_is_a_one_line_error():
    cfg = compose(["experiment.backbone.freeze_features=true", "experiment.backbone.freeze_head=true"])
    with pytest.raises(FifError, match="freeze_features=true and experiment.backbone.freeze_head=true leave nothing"):
        build_method(RunSettings.from_config(cfg), build_backbone("mini_clip").model, torch.device("cpu"))


def test_locked_bitfit_trains_only_text_biases():
    cfg = compose(["continual.method=bitfit", "experiment.backbone.freeze_features=true"])
    model = build_backbone("mini_clip").model
    build_method(RunSettings.from_config(cfg), model, torch.device("cpu"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in _names(bias_parameters) if not n.startswith("visual.")}
