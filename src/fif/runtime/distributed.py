"""Multi-process training with torchrun + DistributedDataParallel: who am I, which slice is mine.

``torchrun --nproc_per_node=N -m fif.cli run ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; a plain
``fif run`` is world size 1 and never touches torch.distributed. Every rank builds the same global
batch plan (pure function of seed, task, step) and materialises only its contiguous slice; the
contrastive loss is computed against the gathered global batch (open_clip's ClipLoss with
``local_loss`` and ``gather_with_grad``), so N processes train the model one process would at the
same global batch, up to float reduction order.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from fif.errors import FifError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistContext()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launch_rank() -> int:
    """This process's rank as torchrun set it (0 without torchrun), known before the process group is joined."""
    return int(os.environ.get("RANK", "0"))


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group torchrun set up (gloo on CPU, nccl on CUDA); world size 1 without it."""
    if not launched_by_torchrun():
        return SINGLE
    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return DistContext(rank, world, local)


def rank_device(device: torch.device, ctx: DistContext) -> torch.device:
    """One GPU per rank: cuda -> cuda:LOCAL_RANK under torchrun."""
    if device.type == "cuda" and ctx.enabled and device.index is None:
        torch.cuda.set_device(ctx.local_rank)
        return torch.device("cuda", ctx.local_rank)
    return device


def shard(total: int, ctx: DistContext) -> range:
    """This rank's contiguous part of ``total`` items (earlier ranks get the remainder, one each)."""
    base, extra = divmod(total, ctx.world_size)
    start = ctx.rank * base + min(ctx.rank, extra)
    return range(start, start + base + (1 if ctx.rank < extra else 0))


def check_batch_divisible(batch_size: int, ctx: DistContext) -> None:
    if batch_size % ctx.world_size:
        raise FifError(f"experiment.task.batch_size={batch_size} must be divisible by the number of processes "
                       f"({ctx.world_size}): every rank takes an equal slice of the global batch")


def gather_rows(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Concatenate every rank's rows in rank order (ranks may hold different row counts)."""
    if not ctx.enabled:
        return tensor
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(ctx.world_size)]
    dist.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[: int(c.item())] for part, c in zip(parts, counts)])


def broadcast_object(obj, ctx: DistContext):
    """Rank 0's ``obj`` on every rank."""
    if not ctx.enabled:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
