"""Peak memory of one training step: counted anywhere, or read from the CUDA allocator.

On a GPU the allocator knows the peak (``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats``). A CPU has no such statistics, so the peak is counted: the weights,
their gradients, the optimizer state (AdamW: two fp32 tensors per trainable parameter) and the
tensors autograd saves for the backward pass. Those last ones are seen through
``torch.autograd.graph.saved_tensors_hooks``; several saved tensors can share one storage (views,
a weight saved by two ops), so each storage is counted once, and storages that are already counted
as weights are left out. The count works on fake tensors too (their storages have sizes but no
data), which is how a 1.4B-parameter model is counted in seconds on a laptop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any
from collections.abc import Callable, Iterable

import torch

ADAM_STATE_TENSORS = 2  # exp_avg and exp_avg_sq, each the size of the parameter
GB = 1e9


def storage_key(tensor: torch.Tensor) -> int:
    """Identity of the storage behind ``tensor`` (shared by all its views)."""
    return tensor.untyped_storage()._cdata


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    seen: dict[int, int] = {}
    for tensor in tensors:
        seen[storage_key(tensor)] = tensor.untyped_storage().nbytes()
    return sum(seen.values())


class SavedTensorMeter:
    """Counts the bytes autograd saves for backward while active (each storage once).

    ``exclude`` holds tensors whose storages are counted elsewhere (weights, the input batch).
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        self.excluded = {storage_key(t) for t in exclude}
        self.storages: dict[int, int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda saved: saved)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        key = storage_key(tensor)
        if key not in self.excluded:
            self.storages[key] = tensor.untyped_storage().nbytes()
        return tensor

    @property
    def bytes(self) -> int:
        return sum(self.storages.values())

    def __enter__(self) -> SavedTensorMeter:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes of one training step's peak; ``source`` says how it was obtained (count | allocator)."""

    weights: int  # every parameter and buffer of the model (frozen ones included)
    gradients: int  # one gradient per trainable parameter
    optimizer: int  # AdamW state
    activations: int  # tensors saved for backward (weights and the batch excluded)
    batch: int  # the input images and token ids
    source: str = "count"
    measured_peak: int | None = None  # the allocator's peak (source=allocator)

    @property
    def peak(self) -> int:
        if self.measured_peak is not None:
            return self.measured_peak
        return self.weights + self.gradients + self.optimizer + self.activations + self.batch

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "peak": self.peak}


def static_bytes(model: torch.nn.Module) -> tuple[int, int, int]:
    """(weights, gradients, AdamW state) bytes for ``model`` with its current ``requires_grad`` flags."""
    weights = storage_bytes([*model.parameters(), *model.buffers()])
    trainable = [p for p in model.parameters() if p.requires_grad]
    gradients = sum(p.numel() * p.element_size() for p in trainable)
    optimizer = sum(ADAM_STATE_TENSORS * p.numel() * 4 for p in trainable)  # fp32 state (AdamW on fp32 params)
    return weights, gradients, optimizer


def cuda_peak_bytes(step: Callable[[], None], device: torch.device) -> int:
    """The allocator's peak while ``step`` runs (everything already allocated counts)."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device)
