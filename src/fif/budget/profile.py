"""Profile one training step of a real method object: GFLOPs per sample and peak memory.

The method is built by ``build_method`` from the run config on a copy of the model, exactly as
``fif run`` builds it, so its own rules choose what trains (adapters, LayerNorms, locked towers
...). The profile is the method's steady state: a first task is begun and ended (EWC computes its
Fisher there, SI its importance; both then add their penalty to every later step), then one
step of the second task is counted: forward + contrastive loss + the method's extra loss +
backward. The end-of-task pass is counted too and reported separately (EWC's Fisher), since it
runs once per task, not once per step.

By default the copy is made of fake tensors (``fake=True``): the count needs no data and no
memory, so any architecture profiles on a CPU. ``fake=False`` runs the same on real tensors
(tests compare both). ``memory="allocator"`` (CUDA only) measures the peak with the allocator on a
real step of ``method.observe`` instead of counting it.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from dataclasses import dataclass
from typing import Any
from collections.abc import Iterator

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from fif.budget.archs import fake_clone, input_batch
from fif.budget.flops import flop_counter, mha_fastpath_off
from fif.budget.memory import MemoryBreakdown, SavedTensorMeter, cuda_peak_bytes, static_bytes, storage_bytes
from fif.data.samples.batches import Batch
from fif.config.blocks import MEMORY_SOURCES, PRECISIONS
from fif.config.settings import RunSettings
from fif.errors import FifError
from fif.methods import TaskInfo, build_method
from fif.methods.base import ContinualMethod, GradientMethod



@dataclass(frozen=True)
class MethodProfile:
    """Cost of one steady-state training step of one method (FLOPs per image-text pair)."""

    label: str
    method: str
    batch_size: int
    precision: str
    trainable_parameters: int
    forward_gflops: float  # per sample
    backward_gflops: float  # per sample
    end_of_task_gflops: float  # per task (EWC's Fisher pass: per-sample cost x the samples it asks for)
    end_of_task_samples: int  # samples the end-of-task pass asks for (an upper bound: capped at the task's size)
    memory: MemoryBreakdown

    @property
    def gflops_per_sample(self) -> float:
        return self.forward_gflops + self.backward_gflops

    @property
    def gflops_per_step(self) -> float:
        return self.gflops_per_sample * self.batch_size

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "method": self.method, "batch_size": self.batch_size,
                "precision": self.precision, "trainable_parameters": self.trainable_parameters,
                "forward_gflops_per_sample": self.forward_gflops, "backward_gflops_per_sample": self.backward_gflops,
                "gflops_per_sample": self.gflops_per_sample, "gflops_per_step": self.gflops_per_step,
                "end_of_task_gflops": self.end_of_task_gflops, "end_of_task_samples": self.end_of_task_samples,
                "memory": self.memory.as_dict()}


def autocast(precision: str) -> contextlib.AbstractContextManager:
    """fp32, or bfloat16 autocast on the CPU (the dtypes a CUDA AMP step keeps: matmul outputs in bf16)."""
    if precision not in PRECISIONS:
        raise FifError(f"precision={precision!r} is not valid: expected one of {', '.join(PRECISIONS)}")
    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


class _OneBatch:
    """``TaskInfo.sample_batches`` for profiling: records what the method asks for, yields one batch."""

    def __init__(self, images: torch.Tensor, texts: torch.Tensor) -> None:
        self.batch = Batch(images, texts, {"update": images.shape[0]})
        self.requested: list[int] = []

    def __call__(self, n_samples: int, batch_size: int) -> Iterator[Batch]:
        self.requested.append(int(n_samples))
        yield self.batch


def _finish_first_task(method: ContinualMethod, batches: _OneBatch, precision: str) -> int:
    """Begin and end task 0 (steady state: EWC's Fisher, SI's importance); the FLOPs of end_task.

    A method whose end_task is not counted (``profiles_end_of_task`` false: merging, which only
    merges host copies and writes task checkpoints) is not ended: 0.
    """
    if not method.profiles_end_of_task:
        return 0
    first = TaskInfo(0, 2, 1, sample_batches=batches)
    method.begin_task(first)
    with autocast(precision), flop_counter() as counter:
        method.end_task(first)
    return counter.get_total_flops()


def _count(method: GradientMethod, images: torch.Tensor, texts: torch.Tensor,
           precision: str) -> tuple[int, int, MemoryBreakdown]:
    """Forward and backward FLOPs of one step and its counted memory."""
    model = method.model
    method.begin_task(TaskInfo(1, 2, 1))
    weights, gradients, optimizer = static_bytes(model)
    meter = SavedTensorMeter(exclude=[*model.parameters(), *model.buffers(), images, texts])
    with meter, autocast(precision), flop_counter() as forward:
        total = method.training_losses(images, texts).total  # what observe backpropagates
    with flop_counter() as backward:
        if total.requires_grad:
            total.backward()
    memory = MemoryBreakdown(weights, gradients, optimizer, meter.bytes, storage_bytes([images, texts]))
    return forward.get_total_flops(), backward.get_total_flops(), memory


def _allocator_memory(settings: RunSettings, model: nn.Module, batch_size: int,
                      device: torch.device) -> MemoryBreakdown:
    """The CUDA allocator's peak over a real ``observe`` step (the method's own, AMP included)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        raise FifError(f"memory=allocator needs a CUDA device (got {device}); use memory=count on a CPU")
    before = torch.cuda.memory_allocated(device)
    with torch.random.fork_rng(devices=[device]):
        real = copy.deepcopy(model)
        if any(p.is_meta for p in real.parameters()):  # an architecture without weights: any values will do
            real = real.to_empty(device=device)
            with torch.no_grad():
                for parameter in real.parameters():
                    parameter.normal_(0, 0.02)
                for buffer in real.buffers():
                    buffer.zero_()
        real = real.to(device)
        method = build_method(settings, real, device)
        images, texts = input_batch(real, batch_size, device)
        batches = _OneBatch(images, texts)
        if method.profiles_end_of_task:
            method.begin_task(TaskInfo(0, 2, 2, sample_batches=batches))
            method.observe(batches.batch)
            method.end_task(TaskInfo(0, 2, 2, sample_batches=batches))
        method.begin_task(TaskInfo(1, 2, 2))
        method.observe(batches.batch)  # the first step allocates the optimizer state
        peak = cuda_peak_bytes(functools.partial(method.observe, batches.batch), device) - before
        weights, gradients, optimizer = static_bytes(real)
        del method, real, images, texts, batches
    torch.cuda.empty_cache()
    return MemoryBreakdown(weights, gradients, optimizer, 0, 0, source="allocator", measured_peak=peak)


def profile_method(settings: RunSettings, model: nn.Module, label: str | None = None, batch_size: int | None = None,
                   precision: str = "fp32", fake: bool = True, memory: str = "count",
                   device: torch.device | None = None) -> MethodProfile:
    """Profile ``settings.method`` (with its options) on a copy of ``model``.

    ``model`` is left untouched (weights, flags, RNG). ``batch_size`` defaults to the run's.
    """
    if memory not in MEMORY_SOURCES:
        raise FifError(f"memory={memory!r} is not valid: expected one of {', '.join(MEMORY_SOURCES)}")
    batch_size = int(batch_size or settings.task.batch_size)
    if batch_size < 2:
        raise FifError(f"batch size {batch_size} is too small to profile a contrastive step (at least 2)")
    name = settings.method
    mode = FakeTensorMode() if fake else contextlib.nullcontext()
    with torch.random.fork_rng(devices=[]), mha_fastpath_off(), mode:
        clone = fake_clone(model) if fake else copy.deepcopy(model)
        method = build_method(settings, clone, torch.device("cpu") if fake else next(clone.parameters()).device)
        trainable = sum(p.numel() for p in clone.parameters() if p.requires_grad)
        images, texts = input_batch(clone, batch_size, next(clone.parameters()).device)
        batches = _OneBatch(images, texts)
        end_flops = _finish_first_task(method, batches, precision)
        forward, backward, counted = _count(method, images, texts, precision)
    if batches.requested:  # a per-sample pass (EWC's Fisher): scale one batch to the samples asked for
        end_of_task = end_flops / batch_size * batches.requested[0] / 1e9
    else:
        end_of_task = end_flops / 1e9
    if memory == "allocator":
        try:
            counted = _allocator_memory(settings, model, batch_size, device or torch.device("cuda"))
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise FifError(f"{label or name}: a training step of {batch_size} does not fit on {device} (counted "
                           f"peak {counted.peak / 1e9:.1f} GB): measure with memory=count") from None
    return MethodProfile(label or name, name, batch_size, precision, trainable, forward / batch_size / 1e9,
                         backward / batch_size / 1e9, end_of_task, batches.requested[0] if batches.requested else 0,
                         counted)
