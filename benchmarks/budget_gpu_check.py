"""On a CUDA machine: the counted peak memory beside the allocator's, and FLOPs of a real CUDA step.

For each method row (ViT-B/16 by default, batch 512, adapters of rank 4) it prints the peak
memory counted on fake tensors (bf16 activations: what a CUDA AMP step keeps) and the CUDA
allocator's peak over a real ``method.observe`` step (``torch.cuda.max_memory_allocated``), the
memory ratios to full finetuning of both, and the steps each buys at 1,420 full-finetuning steps;
then the FLOPs of one real bf16-autocast forward + backward on the GPU (flash attention) beside the
fake-tensor count.

    PYTHONPATH=src python3 benchmarks/budget_gpu_check.py [--arch ViT-B-16] [--batch-size 512]
"""

from __future__ import annotations

import argparse
import time
import traceback

import torch

from fif.config.settings import RunSettings
from fif.budget.archs import input_batch, meta_model
from fif.budget.flops import flop_counter, mha_fastpath_off
from fif.budget.maf import fullft_budget, maf, steps_for_budget
from fif.budget.memory import GB
from fif.budget.profile import profile_method
from fif.budget.table import ROWS
from fif.config import compose

CHECKED = ["finetune", "locked-image", "locked-text", "lnfit", "lora", "lora-ref", "dora-ref", "vera-ref", "ewc",
           "si", "dora"]
REFERENCE_PEAK_GB = {"finetune": 46.59, "locked-text": 37.58, "locked-image": 11.88, "lnfit": 30.56,
                     "lora-ref": 40.54, "dora-ref": 40.66, "vera-ref": 40.54, "ewc": 47.21, "si": 46.65}


def cuda_step_flops(model: torch.nn.Module, batch: int, device: torch.device) -> float:
    """GFLOPs per sample of one real bf16-autocast forward + backward of full finetuning on the GPU."""
    import open_clip

    real = model.to_empty(device=device)
    with torch.no_grad():
        for p in real.parameters():
            p.normal_(0, 0.02)
        for b in real.buffers():
            b.zero_()
    images, texts = input_batch(real, batch, device)
    with mha_fastpath_off(), flop_counter() as counter:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            image, text, scale = real(images, texts)[:3]
            loss = open_clip.ClipLoss()(image, text, scale)
        loss.backward()
    ops = sorted(str(op) for op in counter.get_flop_counts().get("Global", {}))
    print(f"counted CUDA ops: {', '.join(ops)}")
    return counter.get_total_flops() / batch / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="ViT-B-16")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--rows", default=",".join(CHECKED))
    args = parser.parse_args()
    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}; {args.arch}, batch {args.batch_size}")
    cfg = compose(["continual.lora.rank=4", "continual.dora.rank=4", "continual.vera.rank=4"])
    model = meta_model(args.arch)
    results = {}
    for label in args.rows.split(","):
        start = time.perf_counter()
        try:
            row_cfg = RunSettings.from_config(cfg).with_overrides(ROWS[label])
            counted = profile_method(row_cfg, model, label, args.batch_size, "bf16")
            measured = profile_method(row_cfg, model, label, args.batch_size, "bf16", memory="allocator",
                                      device=device)
            results[label] = (counted, measured)
            print(f"{label}: counted {counted.memory.peak / GB:.2f} GB, allocator {measured.memory.peak / GB:.2f} GB "
                  f"({time.perf_counter() - start:.1f} s)", flush=True)
        except Exception:  # report and go on (an out-of-memory row must not hide the others)
            print(f"{label}: failed\n{traceback.format_exc(limit=3)}", flush=True)
            torch.cuda.empty_cache()
    if "finetune" in results:
        full_count, full_alloc = results["finetune"]
        budget = fullft_budget(1420, full_count.gflops_per_step)
        print("\n| method | GFLOPs/sample | counted peak GB | allocator peak GB | counted/allocator | "
              "memory ratio (counted) | memory ratio (allocator) | reference memory ratio | steps (counted) | "
              "steps (allocator) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for label, (count, alloc) in results.items():
            ref = REFERENCE_PEAK_GB.get(label)
            steps = [steps_for_budget(budget, maf(count.gflops_per_step, p.memory.peak, f.memory.peak),
                                      count.end_of_task_gflops * p.memory.peak / f.memory.peak)
                     for p, f in ((count, full_count), (alloc, full_alloc))]
            reference = f"{ref / REFERENCE_PEAK_GB['finetune']:.3f}" if ref else ""
            print(f"| {label} | {count.gflops_per_sample:.3f} | {count.memory.peak / GB:.2f} | "
                  f"{alloc.memory.peak / GB:.2f} | {count.memory.peak / alloc.memory.peak:.3f} | "
                  f"{count.memory.peak / full_count.memory.peak:.3f} | "
                  f"{alloc.memory.peak / full_alloc.memory.peak:.3f} | {reference} | {steps[0]} | {steps[1]} |")
        start = time.perf_counter()
        cuda = cuda_step_flops(meta_model(args.arch), args.batch_size, device)
        print(f"\nfull finetuning GFLOPs/sample: fake-tensor count {full_count.gflops_per_sample:.4f}, "
              f"real CUDA step {cuda:.4f} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
