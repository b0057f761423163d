"""Parameter-additive methods: ``lora``, ``dora``, ``vera`` on both towers of an open_clip CLIP.

One adapter per adapted matrix is trained continually across all tasks (the reference); with
``merge_at_task_end`` it is merged into the weights after every task and a fresh one starts.
Only adapter parameters train. The adapters live inside the model (``AdaptedAttention`` /
``AdaptedLinear`` wrappers), so they are in the model's state dict and a resume restores them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from collections.abc import Callable

import torch
from torch import nn

from fif.config.options import Options, option
from fif.errors import FifError
from fif.methods.adapter_layers import (ATTENTION_TARGETS, FORMULATIONS, DoRA, LoRA, VeRA, VeraProjections,
                                        AdaptedAttention, AdaptedLinear, Delta, merge_, merged_copy, reset_)
from fif.methods.base import GradientMethod, TaskInfo
from fif.methods.context import MethodContext
from fif.methods.registry import register_method

TOWERS = {"both": ("vision", "text"), "vision": ("vision",), "text": ("text",)}
MLP_LAYERS = ("c_fc", "c_proj")


@dataclass(frozen=True)
class AdapterOptions(Options):
    """``continual.lora`` and ``continual.dora``: the adapter every adapted matrix gets."""

    rank: int = option(5, "rank r of every adapter (reference: 5)", minimum=1)
    scale: float = option(1.0, "multiplies B A (reference's scale; PEFT's lora_alpha / r)")
    dropout: float = option(0.0, "dropout on the adapter's input", minimum=0.0, maximum=1.0, exclusive_max=True)
    towers: str = option("both", "towers that get adapters (a tower frozen by experiment.backbone.freeze_* gets none)",
                         choices=tuple(TOWERS))
    blocks: Any = option("all", "all | last:N | list of block indices per tower, e.g. [0,1] or [-2,-1]", kind="any")
    attention: Any = option(["q", "k", "v", "out"], "attention projections to adapt; [k, v]: the reference's "
                            "kv_only; []: none", kind="any")
    mlp: Any = option(["c_fc", "c_proj"], "MLP Linears to adapt: [c_fc, c_proj] (or true) | [c_proj] (the "
                      "reference's) | [] (or false)", kind="any")
    merge_at_task_end: bool = option(False, "merge the adapter into the weights after each task, start a fresh one")
    formulation: str = option("input", "input: x -> A x -> B beside W x (PEFT) | merged: F.linear(x, W + scale B A), "
                              "the reference's compute", choices=FORMULATIONS)

    def validate(self, key: str) -> None:
        """The list-valued targets and blocks, and what the options demand of each other."""
        AdapterSpec.from_options("adapter", self, key)


@dataclass(frozen=True)
class VeRAOptions(AdapterOptions):
    """``continual.vera``: W + scale * diag(b) B diag(d) A, shared frozen random A, B; trains d and b."""

    projection_seed: int = option(0, "seed of the shared random projections A, B")
    d_initial: float = option(0.1, "initial value of every d (b starts at 0)")


@dataclass(frozen=True)
class AdapterSpec:
    """The validated ``continual.<method>.*`` options, resolved (towers and targets as tuples)."""

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
    def from_options(cls, kind: str, options: AdapterOptions, key: str | None = None) -> AdapterSpec:
        key = key or f"continual.{kind}"
        read = _TargetReader(options, key)
        attention, mlp = read.attention(), read.mlp()
        if not attention and not mlp:
            raise FifError(f"{key}.attention=[] and {key}.mlp=false adapt nothing: enable at least one target")
        blocks = read.blocks()
        seed, d_initial = (options.projection_seed, options.d_initial) if isinstance(options, VeRAOptions) else (0, 0.1)
        if d_initial == 0.0:
            raise read.bad("d_initial", "a non-zero number (with d = 0 and b = 0 VeRA gets no gradient)")
        if options.formulation == "merged" and options.dropout > 0:
            raise FifError(f"{key}.formulation=merged forms one adapted weight, so it cannot drop out the "
                           f"adapter's input alone: set {key}.dropout=0 or {key}.formulation=input")
        return cls(kind, options.rank, options.scale, options.dropout, TOWERS[options.towers], blocks, attention, mlp,
                   options.merge_at_task_end, seed, d_initial, options.formulation)


class _TargetReader:
    """Checks the list-valued adapter options; a bad value is a one-line error naming the key."""

    def __init__(self, options: AdapterOptions, key: str) -> None:
        self.options, self.key = options, key

    def bad(self, name: str, expected: str) -> FifError:
        return FifError(f"{self.key}.{name}={getattr(self.options, name)!r} is not valid: expected {expected}")

    def attention(self) -> tuple[str, ...]:
        attention = self.options.attention
        attention = list(attention) if isinstance(attention, (list, tuple)) else None
        if attention is None or not set(attention) <= set(ATTENTION_TARGETS) or len(set(attention)) != len(attention):
            raise self.bad("attention", f"a list of distinct targets out of {list(ATTENTION_TARGETS)}, e.g. [k, v]")
        return tuple(t for t in ATTENTION_TARGETS if t in attention)

    def mlp(self) -> tuple[str, ...]:
        value = self.options.mlp
        if isinstance(value, bool):
            return MLP_LAYERS if value else ()
        if isinstance(value, (list, tuple)) and set(value) <= set(MLP_LAYERS) and len(set(value)) == len(value):
            return tuple(name for name in MLP_LAYERS if name in value)
        raise self.bad("mlp", f"true, false or a list of distinct layers out of {list(MLP_LAYERS)}, e.g. [c_proj]")

    def blocks(self) -> Any:
        blocks = self.options.blocks
        blocks = list(blocks) if isinstance(blocks, tuple) else blocks
        block_indices(blocks, None, self.key)  # syntax now; ranges per tower at install
        return blocks


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
    Options = AdapterOptions
    reference_overrides = REFERENCE_ADAPTER

    def __init__(self, model: torch.nn.Module, options: AdapterOptions, context: MethodContext) -> None:
        super().__init__(model, options, context)
        spec = AdapterSpec.from_options(self.name, options)
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


@register_method
class LoRAMethod(AdapterMethod):
    """Low-rank adapters: W + scale * B A, one adapter trained across all tasks."""

    name = "lora"
    summary = ("low-rank adapters B·A on attention q, k, v, out and mlp.c_fc/c_proj of both towers; one adapter trained "
        "across tasks")


@register_method
class DoRAMethod(AdapterMethod):
    """Weight-decomposed LoRA: m * (W + scale B A) / ||W + scale B A||_row."""

    name = "dora"
    summary = "LoRA with a learned per-row magnitude (weight-decomposed)"


@register_method
class VeRAMethod(AdapterMethod):
    """VeRA: shared frozen random projections, trained scaling vectors d and b."""

    name = "vera"
    summary = "frozen random A, B shared across layers; trains scaling vectors d (rank) and b (out)"
    Options = VeRAOptions
