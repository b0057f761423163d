"""Parameter-additive methods: ``lora``, ``dora``, ``vera`` on both towers of an open_clip CLIP.

One adapter per adapted matrix is trained continually across all tasks (the reference); with
``merge_at_task_end`` it is merged into the weights after every task and a fresh one starts.
Only adapter parameters train. The adapters live inside the model (``AdaptedAttention`` /
``AdaptedLinear`` wrappers), so they are in the model's state dict and a resume restores them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any
from collections.abc import Callable

import torch
from omegaconf import DictConfig, ListConfig
from torch import nn

from fif.errors import FifError
from fif.methods.adapter_layers import (ATTENTION_TARGETS, FORMULATIONS, DoRA, LoRA, VeRA, VeraProjections,
                                        AdaptedAttention, AdaptedLinear, Delta, merge_, merged_copy, reset_)
from fif.methods.base import GradientMethod, TaskInfo
from fif.methods.context import MethodContext

TOWERS = {"both": ("vision", "text"), "vision": ("vision",), "text": ("text",)}
MLP_LAYERS = ("c_fc", "c_proj")


@dataclass(frozen=True)
class AdapterSpec:
    """The validated ``continual.<method>.*`` options."""

    kind: str  # lora | dora | vera
    rank: int
    scale: float
    dropout: float
    towers: tuple[str, ...]
    blocks: Any  # "all" | "last:N" | list of indices (resolved per tower by block_indices)
    attention: tuple[str, ...]
    mlp: tuple[str, ...]  # MLP Linears to adapt (mlp=true: both; a list picks, e.g. [c_proj] as the reference)
    merge_at_task_end: bool
    projection_seed: int = 0
    d_initial: float = 0.1
    formulation: str = "input"  # input | merged (fif.methods.adapter_layers)

    @classmethod
    def from_config(cls, kind: str, cfg: DictConfig) -> AdapterSpec:
        key = f"continual.{kind}"
        read = _OptionReader(cfg, key)
        rank = read.rank()
        scale, dropout = read.number("scale"), read.dropout()
        towers = read.towers()
        attention, mlp = read.attention(), read.mlp()
        if not attention and not mlp:
            raise FifError(f"{key}.attention=[] and {key}.mlp=false adapt nothing: enable at least one target")
        blocks = read.blocks()
        seed, d_initial = read.vera() if kind == "vera" else (0, 0.1)
        formulation = read.formulation(dropout)
        return cls(kind, rank, scale, dropout, towers, blocks, attention, mlp, read.flag("merge_at_task_end"),
                   seed, d_initial, formulation)


class _OptionReader:
    """Reads and checks the ``continual.<kind>.*`` adapter options; a bad value is a one-line error naming the key."""

    def __init__(self, cfg: DictConfig, key: str) -> None:
        self.cfg, self.key = cfg, key

    def bad(self, name: str, expected: str) -> FifError:
        return FifError(f"{self.key}.{name}={self.cfg.get(name)!r} is not valid: expected {expected}")

    def number(self, name: str) -> float:
        value = self.cfg.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.bad(name, "a finite number")
        return float(value)

    def flag(self, name: str) -> bool:
        if not isinstance(self.cfg.get(name), bool):
            raise self.bad(name, "true or false")
        return self.cfg.get(name)

    def rank(self) -> int:
        rank = self.cfg.get("rank")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise self.bad("rank", "an integer >= 1")
        return rank

    def dropout(self) -> float:
        dropout = self.number("dropout")
        if not 0.0 <= dropout < 1.0:
            raise self.bad("dropout", "a number in [0, 1)")
        return dropout

    def towers(self) -> tuple[str, ...]:
        towers = str(self.cfg.get("towers"))
        if towers not in TOWERS:
            raise self.bad("towers", f"one of {', '.join(TOWERS)}")
        return TOWERS[towers]

    def attention(self) -> tuple[str, ...]:
        attention = self.cfg.get("attention")
        attention = list(attention) if isinstance(attention, (list, ListConfig)) else None
        if attention is None or not set(attention) <= set(ATTENTION_TARGETS) or len(set(attention)) != len(attention):
            raise self.bad("attention", f"a list of distinct targets out of {list(ATTENTION_TARGETS)}, e.g. [k, v]")
        return tuple(t for t in ATTENTION_TARGETS if t in attention)

    def mlp(self) -> tuple[str, ...]:
        value = self.cfg.get("mlp")
        if isinstance(value, bool):
            return MLP_LAYERS if value else ()
        if isinstance(value, (list, ListConfig)) and set(value) <= set(MLP_LAYERS) and len(set(value)) == len(value):
            return tuple(name for name in MLP_LAYERS if name in value)
        raise self.bad("mlp", f"true, false or a list of distinct layers out of {list(MLP_LAYERS)}, e.g. [c_proj]")

    def blocks(self) -> Any:
        blocks = self.cfg.get("blocks")
        blocks = list(blocks) if isinstance(blocks, ListConfig) else blocks
        block_indices(blocks, None, self.key)  # syntax now; ranges per tower at install
        return blocks

    def vera(self) -> tuple[int, float]:
        seed, d_initial = int(self.number("projection_seed")), self.number("d_initial")
        if d_initial == 0.0:
            raise self.bad("d_initial", "a non-zero number (with d = 0 and b = 0 VeRA gets no gradient)")
        return seed, d_initial

    def formulation(self, dropout: float) -> str:
        formulation = str(self.cfg.get("formulation", "input"))
        if formulation not in FORMULATIONS:
            raise self.bad("formulation", f"one of {', '.join(FORMULATIONS)}")
        if formulation == "merged" and dropout > 0:
            raise FifError(f"{self.key}.formulation=merged forms one adapted weight, so it cannot drop out the "
                           f"adapter's input alone: set {self.key}.dropout=0 or {self.key}.formulation=input")
        return formulation


def block_indices(blocks: Any, depth: int | None, key: str) -> list[int]:
    """``all``, ``last:N`` or a list of indices (negative count from the end) -> sorted block indices.

    ``depth=None`` checks the syntax only (the towers' depths are known once the model is there).
    """
    known = f" (the tower has {depth} blocks)" if depth is not None else ""
    error = FifError(f"{key}.blocks={blocks!r} is not valid: expected all, last:N or a list of block "
                     f"indices, e.g. [0, 1] or [-2, -1]{known}")
    limit = depth if depth is not None else 10**9
    if blocks == "all":
        return list(range(limit)) if depth is not None else []
    if isinstance(blocks, str) and blocks.startswith("last:"):
        count = blocks.removeprefix("last:")
        if not count.isdigit() or not 1 <= int(count) <= limit:
            raise error
        return list(range(limit - int(count), limit)) if depth is not None else []
    if isinstance(blocks, list) and blocks and all(isinstance(i, int) and not isinstance(i, bool) for i in blocks):
        if any(not -limit <= i < limit for i in blocks):
            raise error
        return sorted({i % limit for i in blocks}) if depth is not None else []
    raise error


def _resblocks(model: nn.Module, tower: str, key: str) -> nn.ModuleList:
    path = "visual.transformer.resblocks" if tower == "vision" else "transformer.resblocks"
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise FifError(f"{key}.towers includes {tower}, but this backbone's {tower} tower has no transformer "
                       f"blocks ({path}); adapt the other tower only") from None


def _check_attention(attn: nn.Module, where: str) -> None:
    if isinstance(attn, AdaptedAttention):
        raise FifError(f"{where} already carries adapters (a model takes one adapter method)")
    if not isinstance(attn, nn.MultiheadAttention):
        raise FifError(f"{where} is {type(attn).__name__}; adapters support blocks with nn.MultiheadAttention")
    if not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn:
        raise FifError(f"{where}: separate q/k/v sizes, bias_k/bias_v and add_zero_attn are not supported by adapters")


def _sites(model: nn.Module, spec: AdapterSpec) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute, module) of every layer to adapt."""
    key = f"continual.{spec.kind}"
    sites = []
    for tower in spec.towers:
        blocks = _resblocks(model, tower, key)
        for index in block_indices(spec.blocks, len(blocks), key):
            block = blocks[index]
            if spec.attention:
                _check_attention(block.attn, f"{tower} block {index} attention")
                sites.append((block, "attn", block.attn))
            for name in spec.mlp:
                layer = getattr(block.mlp, name, None)
                if not isinstance(layer, nn.Linear):
                    raise FifError(f"{tower} block {index} has no nn.Linear mlp.{name} to adapt ({key}.mlp)")
                sites.append((block.mlp, name, layer))
    return sites


def _delta_factory(model: nn.Module, spec: AdapterSpec,
                   sites: list[tuple[nn.Module, str, nn.Module]]) -> Callable[[torch.Tensor], Delta]:
    if spec.kind == "lora":
        return lambda w: LoRA(w, spec.rank, spec.scale, spec.dropout)
    if spec.kind == "dora":
        return lambda w: DoRA(w, spec.rank, spec.scale, spec.dropout)
    shapes = [(m.embed_dim, m.embed_dim) if isinstance(m, nn.MultiheadAttention) else tuple(m.weight.shape)
              for _, _, m in sites]
    device = next(model.parameters()).device
    projections = VeraProjections(spec.rank, max(i for _, i in shapes), max(o for o, _ in shapes),
                                  spec.projection_seed, device)
    model.vera_projections = projections  # stored once, in the model's state dict
    return lambda w: VeRA(w, projections, spec.scale, spec.dropout, spec.d_initial)


def _check_rank(spec: AdapterSpec, sites: list[tuple[nn.Module, str, nn.Module]]) -> None:
    """LoRA/DoRA: rank <= the smallest in/out width of an adapted matrix. A larger B A has no more rank
    than that width, so the extra rank only costs compute and memory. VeRA is exempt: its rank is the
    size of the shared random projections, where more than the width still adds trainable scalings."""
    if spec.kind == "vera" or not sites:
        return
    shapes = [(m.embed_dim, m.embed_dim) if isinstance(m, nn.MultiheadAttention) else tuple(m.weight.shape)
              for _, _, m in sites]
    out_width, in_width = min(shapes, key=min)
    smallest = min(out_width, in_width)
    if spec.rank > smallest:
        raise FifError(f"continual.{spec.kind}.rank={spec.rank} is not valid: expected at most {smallest}, the "
                       f"smallest width of an adapted layer ({out_width} x {in_width}); a higher rank adds compute "
                       f"but no rank")


def install_adapters(model: nn.Module, spec: AdapterSpec) -> list[AdaptedAttention | AdaptedLinear]:
    """Wrap the chosen attention and MLP layers of ``model`` in place; return the wrappers."""
    sites = _sites(model, spec)
    _check_rank(spec, sites)
    make = _delta_factory(model, spec, sites)
    wrappers: list[AdaptedAttention | AdaptedLinear] = []
    for parent, name, layer in sites:
        if isinstance(layer, nn.MultiheadAttention):
            wrapper = AdaptedAttention(layer, {}, spec.formulation)
            pairs = wrapper.weights()
            for target in spec.attention:
                wrapper.deltas[target] = make(pairs[target][0].detach())
        else:
            wrapper = AdaptedLinear(layer, make(layer.weight.detach()), spec.formulation)
        setattr(parent, name, wrapper)
        wrappers.append(wrapper)
    return wrappers


# The reference's LoRA/DoRA/VeRA compute (ExplainableML/fomo_in_flux continual_lib/lora.py): the
# adapted weight is formed every step (merged formulation) on the attention's q, k, v and on
# mlp.c_proj only (its filter on module names skips every name containing "fc", so mlp.c_fc).
REFERENCE_ADAPTER = ("formulation=merged", "attention=[q,k,v]", "mlp=[c_proj]")


class AdapterMethod(GradientMethod):
    """Contrastive training of adapters only; the base weights stay frozen (or absorb merged adapters)."""

    name = "adapter"
    reference_overrides = REFERENCE_ADAPTER

    def __init__(self, model: torch.nn.Module, options: DictConfig, context: MethodContext) -> None:
        super().__init__(model, options, context)
        spec = AdapterSpec.from_config(self.name, options)
        # A tower locked by experiment.backbone.freeze_features / freeze_head gets no adapters (the reference).
        locked = {"vision": context.lock_image, "text": context.lock_text}
        towers = tuple(t for t in spec.towers if not locked[t])
        if not towers:
            raise FifError(f"continual.{self.name}.towers={'both' if len(spec.towers) == 2 else spec.towers[0]} "
                           f"but experiment.backbone.freeze_* lock those towers: nothing to adapt")
        self.spec = replace(spec, towers=towers)
        self.adapted: list[AdaptedAttention | AdaptedLinear] = []

    def setup(self) -> None:
        """Install the adapters (the model changes here), then train only them."""
        self.adapted = install_adapters(self.model, self.spec)
        super().setup()

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for module in self.adapted for delta in module.adapters().values() for p in delta.parameters()]

    def end_task(self, task: TaskInfo) -> None:
        if self.spec.merge_at_task_end:
            for module in self.adapted:
                merge_(module)
                reset_(module)

    def final_state_dict(self) -> dict[str, torch.Tensor]:
        """The plain backbone with the adapters merged in: loads into the unadapted model."""
        return merged_copy(self.model).state_dict()


class LoRAMethod(AdapterMethod):
    name = "lora"


class DoRAMethod(AdapterMethod):
    name = "dora"


class VeRAMethod(AdapterMethod):
    name = "vera"
