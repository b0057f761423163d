"""LoRA, DoRA and VeRA layers for open_clip's attention (q, k, v, out) and MLP Linears.

Written here rather than taken from PEFT (0.21): PEFT wraps nn.MultiheadAttention only as a whole
(no q/k/v-selective adaptation of the fused ``in_proj_weight``, so no k/v-only LoRA), silently never
trains ``out_proj`` on its own (MHA reads the weight directly), and refuses DoRA and VeRA on
nn.MultiheadAttention. Since attention needs our own LoRA/DoRA/VeRA maths anyway, the MLP Linears
use the same few lines too: one merge path, one state-dict layout, and VeRA's random projections
really shared by every adapted matrix of both towers. tests/test_adapters.py checks the maths
against PEFT's own layers.

Every adapted matrix W (out x in) gets a ``Delta``. Two formulations compute the same output:

- ``input`` (default, as PEFT): the adapter works on the input path (x -> A x -> B ...) beside the
  frozen W x; the backward pass never forms a weight-sized gradient, which is where the method's
  compute saving comes from.
- ``merged`` (the reference, ExplainableML/fomo_in_flux): the adapted weight W' = delta.merged(W)
  (e.g. W + scale B A) is formed once per step and used in F.linear(x, W'); the backward pass forms
  the weight-sized gradient of W' and pushes it through the merge into A and B. It costs more
  FLOPs per sample and less per token of adapter; the budget table (docs/budget.md) shows both.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_TARGETS = ("q", "k", "v", "out")
FORMULATIONS = ("input", "merged")


class Delta(nn.Module):
    """A trainable change of one weight matrix, applied to that matrix's output."""

    def forward(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        """The adapted output, given the input x and the base output y = x W^T + b."""
        raise NotImplementedError

    def merged(self, weight: torch.Tensor) -> torch.Tensor:
        """The weight matrix that gives the adapted output with no adapter (same bias)."""
        raise NotImplementedError

    def reset(self, weight: torch.Tensor) -> None:
        """A fresh adapter for ``weight``: the adapted output equals the base output again."""
        raise NotImplementedError


class LoRA(Delta):
    """W x + scale * B A x (Hu et al. 2021); A ~ kaiming-uniform (as nn.Linear and PEFT), B = 0."""

    def __init__(self, weight: torch.Tensor, rank: int, scale: float, dropout: float) -> None:
        super().__init__()
        out_features, in_features = weight.shape
        kw = {"device": weight.device, "dtype": weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, in_features, **kw))
        self.lora_B = nn.Parameter(torch.empty(out_features, rank, **kw))
        self.scale = float(scale)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        LoRA.reset(self, weight)

    def low_rank(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B) * self.scale

    def delta_weight(self) -> torch.Tensor:
        return self.scale * (self.lora_B @ self.lora_A)

    def forward(self, x, y, weight, bias):
        return y + self.low_rank(x)

    def merged(self, weight):
        return weight + self.delta_weight().to(weight.dtype)

    @torch.no_grad()
    def reset(self, weight):
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)


class DoRA(LoRA):
    """m * (W + scale B A) / ||W + scale B A||_row (Liu et al. 2024), m initialised to ||W||_row.

    The row norm is detached from the graph, as the paper (sec. 4.3) and PEFT do: it saves memory,
    and the forward value (hence the merged weight) is unchanged.
    """

    def __init__(self, weight: torch.Tensor, rank: int, scale: float, dropout: float) -> None:
        super().__init__(weight, rank, scale, dropout)
        self.magnitude = nn.Parameter(torch.linalg.norm(weight.detach(), dim=1))

    def _gain(self, weight: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.norm(weight + self.delta_weight().to(weight.dtype), dim=1).detach()
        return self.magnitude / norm

    def forward(self, x, y, weight, bias):
        gain = self._gain(weight)
        y_without_bias = y - bias if bias is not None else y
        return y + (gain - 1) * y_without_bias + gain * self.low_rank(x)

    def merged(self, weight):
        return (self._gain(weight)[:, None] * (weight + self.delta_weight().to(weight.dtype))).to(weight.dtype)

    @torch.no_grad()
    def reset(self, weight):
        super().reset(weight)
        self.magnitude.copy_(torch.linalg.norm(weight, dim=1))


class VeraProjections(nn.Module):
    """VeRA's frozen random A (rank x max_in) and B (max_out x rank), shared by all adapted matrices.

    Drawn from their own seeded generator, so they depend only on (seed, rank, sizes); each matrix
    uses the top-left slice it needs (as PEFT).
    """

    def __init__(self, rank: int, max_in: int, max_out: int, seed: int, device: torch.device | None = None) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(int(seed))
        a, b = torch.empty(rank, max_in), torch.empty(max_out, rank)
        nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
        nn.init.kaiming_uniform_(b, a=math.sqrt(5), generator=generator)
        self.register_buffer("A", a.to(device))
        self.register_buffer("B", b.to(device))


class VeRA(Delta):
    """W x + scale * b * B (d * A x) (Kopiczko et al. 2024): only the vectors d (rank) and b (out) train.

    b starts at 0 and d at ``d_initial`` (the paper and PEFT), so the output starts equal to the base's.
    """

    def __init__(self, weight: torch.Tensor, projections: VeraProjections, scale: float, dropout: float,
                 d_initial: float) -> None:
        super().__init__()
        out_features, in_features = weight.shape
        # A plain reference, not a submodule: the projections are stored once, on the model.
        object.__setattr__(self, "projections", projections)
        self.in_features, self.out_features = in_features, out_features
        kw = {"device": weight.device, "dtype": weight.dtype}
        self.vera_d = nn.Parameter(torch.empty(projections.A.shape[0], **kw))
        self.vera_b = nn.Parameter(torch.empty(out_features, **kw))
        self.scale, self.d_initial = float(scale), float(d_initial)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset(weight)

    def _a_b(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.projections.A[:, : self.in_features], self.projections.B[: self.out_features, :]

    def forward(self, x, y, weight, bias):
        a, b = self._a_b()
        return y + self.scale * self.vera_b * F.linear(self.vera_d * F.linear(self.dropout(x), a), b)

    def merged(self, weight):
        a, b = self._a_b()
        delta = (self.vera_b[:, None] * b) @ (self.vera_d[:, None] * a)
        return weight + (self.scale * delta).to(weight.dtype)

    @torch.no_grad()
    def reset(self, weight):
        nn.init.zeros_(self.vera_b)
        nn.init.constant_(self.vera_d, self.d_initial)


class AdaptedLinear(nn.Module):
    """An nn.Linear (kept as ``base``, frozen) plus a Delta, in either formulation (module docstring)."""

    def __init__(self, base: nn.Linear, delta: Delta, formulation: str = "input") -> None:
        super().__init__()
        if formulation not in FORMULATIONS:
            raise ValueError(f"formulation={formulation!r}: expected one of {FORMULATIONS}")
        self.base, self.delta, self.formulation = base, delta, formulation

    @property
    def weight(self) -> torch.Tensor:
        """The frozen base weight (open_clip reads its dtype); the effective one is ``delta.merged``."""
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.formulation == "merged":
            return F.linear(x, self.delta.merged(self.base.weight), self.base.bias)
        y = self.base(x)
        return self.delta(x, y, self.base.weight, self.base.bias).to(y.dtype)  # fp32 vectors under autocast

    def adapters(self) -> dict[str, Delta]:
        return {"weight": self.delta}

    def weights(self) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        return {"weight": (self.base.weight, self.base.bias)}


class AdaptedAttention(nn.Module):
    """nn.MultiheadAttention (kept as ``base``, frozen) with Deltas on any of q, k, v (slices of the
    fused in_proj_weight) and out (out_proj).

    The forward pass is MHA's own (projections, scaled dot-product attention, output projection),
    written out so that each projection can carry its own adapter: self- and cross-attention,
    bool or float attn_mask (2-D or per head), key_padding_mask, either batch layout. Attention
    weights (need_weights=True) are not returned; separate q/k/v sizes, bias_k/bias_v and
    add_zero_attn are refused at install.
    """

    def __init__(self, base: nn.MultiheadAttention, deltas: dict[str, Delta], formulation: str = "input") -> None:
        super().__init__()
        if formulation not in FORMULATIONS:
            raise ValueError(f"formulation={formulation!r}: expected one of {FORMULATIONS}")
        self.base, self.formulation = base, formulation
        self.deltas = nn.ModuleDict(deltas)

    def adapters(self) -> dict[str, Delta]:
        return dict(self.deltas.items())

    def weights(self) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        """(weight, bias) of q, k, v, out; the q/k/v ones are views into the fused in_proj tensors."""
        mha, e = self.base, self.base.embed_dim
        bias = mha.in_proj_bias
        pairs = {t: (mha.in_proj_weight[i * e:(i + 1) * e], bias[i * e:(i + 1) * e] if bias is not None else None)
                 for i, t in enumerate(("q", "k", "v"))}
        pairs["out"] = (mha.out_proj.weight, mha.out_proj.bias)
        return pairs

    def _weight(self, target: str, pairs: dict) -> torch.Tensor:
        """The weight ``target`` uses in the merged formulation: adapted if it has a Delta, else the base one."""
        weight = pairs[target][0]
        return self.deltas[target].merged(weight) if target in self.deltas else weight

    def _adapt(self, target: str, x: torch.Tensor, y: torch.Tensor, pairs: dict) -> torch.Tensor:
        if target not in self.deltas or self.formulation == "merged":  # merged: y already used the adapted weight
            return y
        weight, bias = pairs[target]
        return self.deltas[target](x, y, weight, bias).to(y.dtype)  # SDPA needs one dtype under autocast

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, None]:
        if need_weights:
            raise NotImplementedError("adapted attention returns no attention weights (call with need_weights=False)")
        mha = self.base
        self_attention = query is key and key is value
        if not mha.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        pairs = self.weights()
        merged = self.formulation == "merged"
        if self_attention:  # one fused projection, as MHA does
            in_proj = (torch.cat([self._weight(t, pairs) for t in "qkv"]) if merged and self.deltas.keys() & set("qkv")
                       else mha.in_proj_weight)
            fused = F.linear(query, in_proj, mha.in_proj_bias)
            base_q, base_k, base_v = fused.chunk(3, dim=-1)
        else:
            base_q, base_k, base_v = (F.linear(x, self._weight(t, pairs) if merged else pairs[t][0], pairs[t][1])
                                      for x, t in zip((query, key, value), "qkv"))
        q = self._adapt("q", query, base_q, pairs)
        k = self._adapt("k", key, base_k, pairs)
        v = self._adapt("v", value, base_v, pairs)

        n, length, e = q.shape
        heads = mha.num_heads
        q, k, v = (t.reshape(n, t.shape[1], heads, e // heads).transpose(1, 2) for t in (q, k, v))
        mask = _sdpa_mask(attn_mask, key_padding_mask, n, heads, length, k.shape[2], q.dtype)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                  dropout_p=mha.dropout if self.training else 0.0,
                                                  is_causal=is_causal and mask is None)
        attended = attended.transpose(1, 2).reshape(n, length, e)
        out_weight = self._weight("out", pairs) if merged else pairs["out"][0]
        out = self._adapt("out", attended, F.linear(attended, out_weight, pairs["out"][1]), pairs)
        return (out if mha.batch_first else out.transpose(0, 1)), None


def _sdpa_mask(attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None, n: int, heads: int,
               length: int, source: int, dtype: torch.dtype) -> torch.Tensor | None:
    """MHA's masks (bool: True = blocked; float: added) as one additive mask for SDPA."""
    def additive(mask: torch.Tensor) -> torch.Tensor:
        if mask.dtype == torch.bool:
            return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, float("-inf"))
        return mask.to(dtype)

    mask = None
    if attn_mask is not None:
        mask = additive(attn_mask)
        if mask.dim() == 3:  # (n * heads, L, S)
            mask = mask.view(n, heads, length, source)
    if key_padding_mask is not None:
        padding = additive(key_padding_mask).view(n, 1, 1, source)
        mask = padding if mask is None else mask + padding
    return mask


ADAPTED_TYPES = (AdaptedLinear, AdaptedAttention)


@torch.no_grad()
def merge_(module: AdaptedLinear | AdaptedAttention) -> None:
    """Write each adapted weight's merged value into the base weight (the adapters stay as they are)."""
    merged = {t: delta.merged(module.weights()[t][0]) for t, delta in module.adapters().items()}
    pairs = module.weights()
    for target, value in merged.items():
        pairs[target][0].copy_(value)


@torch.no_grad()
def reset_(module: AdaptedLinear | AdaptedAttention) -> None:
    """Fresh adapters for the current base weights."""
    pairs = module.weights()
    for target, delta in module.adapters().items():
        delta.reset(pairs[target][0])


def merged_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every adapter merged into its weights and removed: the plain backbone."""
    plain = copy.deepcopy(model)
    for name, module in list(plain.named_modules()):
        if isinstance(module, ADAPTED_TYPES):
            merge_(module)
            plain.set_submodule(name, module.base)
    if hasattr(plain, "vera_projections"):
        del plain.vera_projections
    return plain
