"""Where and in which precision a run computes: the device, autocast, TF32, global seeding.

The bottom layer: methods, evaluation and data import it; it imports nothing of the project but
its errors.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from fif.errors import FifError


def resolve_device(name: str) -> torch.device:
    """``device=auto|cpu|cuda|cuda:N`` as a torch device; cuda without one is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FifError(f"device={name} but no CUDA device is available")
    return torch.device(name)


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA (the reference trains with AMP); exact fp32 on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def allow_tf32(device: torch.device, enabled: bool) -> None:
    """On CUDA: let fp32 matmuls and cuDNN convolutions (those outside bf16 autocast) use TF32 tensor
    cores, or forbid it; on any other device nothing changes (torch's process-wide flags stay as they are)."""
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (a run's start)."""
    if not 0 <= seed <= 2**32 - 1:
        raise FifError(f"experiment.seed={seed} is not valid: expected a whole number in [0, 4294967295] "
                       "(NumPy's seed range)")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
