"""``experiment.compute`` on a built method: TF32, gradient checkpointing and torch.compile.

These change how the model step runs on the device, not what it computes: on the CPU default
(tf32 is CUDA-only, compile and grad_checkpointing are off) nothing changes at all. The fourth
option, ``fused_adamw``, is the method's optimizer (``GradientMethod._make_optimizer``).

The run applies them once, after ``build_method`` (so after ``setup()``: adapters installed, the
trainable set fixed) and after the budget was planned, so the budget profile counts the plain
step of the reference, without recomputation. Both act on the model in place and keep its
``state_dict`` keys (checkpoints and resumes are unaffected): ``set_grad_checkpointing`` is
open_clip's (every resblock of both towers is recomputed in the backward pass, with the random
state of the forward, so dropout masks repeat), ``nn.Module.compile()`` compiles the model's
``__call__`` (the training forward, also inside DDP's wrapper; ``encode_image`` / ``encode_text``
used by the evaluation stay eager, and a deep copy of the model is an eager model). Compiled
random ops use torch's generator (inductor's ``fallback_random``), so dropout draws the masks the
eager step draws.

Measured on the mini CLIP (CPU): checkpointing gives bit-identical steps for every method (adapter
dropout included, also under 2-process DDP); a compiled step equals the eager one up to float
rounding (parameters within ~1e-5 after a few steps).
"""

from __future__ import annotations

from fif.errors import FifError
from fif.methods.base import ContinualMethod
from fif.runtime.device import allow_tf32
from fif.config.settings import COMPUTE_KEY


def apply_compute(method: ContinualMethod) -> None:
    """TF32 for the method's device, then checkpointing and compilation of ``method.model`` as
    ``method.context.compute`` asks (call once, after the budget plan and ``build_method``)."""
    settings, model = method.context.compute, method.model
    allow_tf32(method.device, settings.tf32)
    if settings.grad_checkpointing:
        if not callable(getattr(model, "set_grad_checkpointing", None)):
            raise FifError(f"{COMPUTE_KEY}.grad_checkpointing=true: the backbone ({type(model).__name__}) has "
                           f"no set_grad_checkpointing (open_clip models have it)")
        model.set_grad_checkpointing(True)
    if settings.compile:
        import torch._inductor.config as inductor

        # Random ops (adapter dropout) draw from torch's generator as in eager mode, not from
        # inductor's own: the same masks, and the global random state advances as it would eagerly.
        inductor.fallback_random = True
        model.compile()
