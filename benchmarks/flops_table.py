"""Cost tables of every method on real OpenCLIP architectures (no weights), beside the reference's.

Prints Markdown (pasted into docs/budget.md): for ViT-B/32 and ViT-B/16 at batch 512 with bf16
activations (a CUDA AMP step) and adapters of rank 4 (the reference's table), every method's
GFLOPs per sample, peak memory, MAF, ratios and steps at 1,420 full-finetuning steps per task;
the reference's ViT-B/16 numbers beside ours; then how long the fake-tensor count takes for the
big architectures on this machine.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/flops_table.py [--archs ViT-B-32,ViT-B-16] [--fp32]
"""

from __future__ import annotations

import argparse
import time

from fif.config.settings import RunSettings
from fif.budget.archs import meta_model
from fif.budget.memory import GB
from fif.budget.profile import profile_method
from fif.budget.table import ROWS, method_table
from fif.config import compose

# shared/reference/fif/README.md: ViT-B/16, GFLOPs per step of 512 (fwd+bwd), peak GB, MAF, steps at T=20
REFERENCE_B16 = {
    "finetune": (63394.76, 46.59, 63394.76, 1420),
    "locked-text": (57254.62, 37.58, 46170.12, 1949),
    "locked-image": (27176.67, 11.88, 6932.77, 12982),
    "lnfit": (43165.60, 30.56, 28308.00, 3179),
    "bitfit": (43165.60, 30.56, 28308.00, 3179),
    "lora-ref": (54479.25, 40.54, 47407.84, 1898),
    "dora-ref": (54479.82, 40.66, 47539.09, 1893),
    "vera-ref": (54479.34, 40.54, 47407.92, 1898),
    "ewc": (6276081.09, 47.21, 6358925.36, 14),
    "si": (63394.76, 46.65, 63477.17, 1418),
    "ema_paint": (63394.76, 46.59, 63394.76, 1420),
}
RANK_4 = ["continual.lora.rank=4", "continual.dora.rank=4", "continual.vera.rank=4"]
BIG = ["ViT-L-14", "ViT-H-14", "ViT-g-14", "convnext_base", "convnext_large_d"]


def markdown_table(arch: str, precision: str, batch: int, steps: float) -> str:
    start = time.perf_counter()
    model = meta_model(arch)
    table = method_table(RunSettings.from_config(compose(RANK_4)), model, dict(ROWS), steps, precision, batch_size=batch)
    seconds = time.perf_counter() - start
    lines = [f"**{arch}** ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters), batch {batch}, "
             f"{precision} activations, peak memory counted; steps at {steps:g} full-finetuning steps per task "
             f"({seconds:.0f} s for the {len(table)} rows on 2 CPU cores)", "",
             "| method | trainable M | GFLOPs/sample | GFLOPs/step | FLOP ratio | peak GB | MAF/step | MAF ratio "
             "| steps | end-of-task GFLOPs/task | reference GFLOPs/step | ref. FLOP ratio | ref. peak GB "
             "| ref. steps |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in table:
        p = row.profile
        ref = REFERENCE_B16.get(p.label) if arch == "ViT-B-16" else None
        ratio = ("(Fisher in every step)" if p.label == "ewc"
                 else f"{ref[0] / REFERENCE_B16['finetune'][0]:.4f}" if ref else "")
        ref_cells = f"{ref[0]:.2f} | {ratio} | {ref[1]:.2f} | {ref[3]}" if ref else " | | | "
        end_of_task = f"{p.end_of_task_gflops:.4g}" if p.end_of_task_gflops else "-"
        lines.append(f"| {p.label} | {p.trainable_parameters / 1e6:.3f} | {p.gflops_per_sample:.3f} | "
                     f"{p.gflops_per_step:.2f} | {row.flop_ratio:.4f} | {p.memory.peak / GB:.2f} | "
                     f"{row.step_maf:.2f} | {row.maf_ratio:.4f} | {row.steps} | {end_of_task} | {ref_cells} |")
    return "\n".join(lines)


def big_models(precision: str, batch: int) -> str:
    lines = ["| architecture | parameters M | GFLOPs/sample (fwd+bwd) | full-ft peak GB | lora peak GB | seconds |",
             "|---|---:|---:|---:|---:|---:|"]
    for arch in BIG:
        start = time.perf_counter()
        model = meta_model(arch)
        full = profile_method(RunSettings.from_config(compose(["continual.method=finetune"])), model, batch_size=batch, precision=precision)
        towers = "text" if arch.startswith("convnext") else "both"  # adapters need transformer blocks
        lora = profile_method(RunSettings.from_config(compose(["continual.method=lora", f"continual.lora.towers={towers}", *RANK_4])), model,
                              batch_size=batch, precision=precision)
        seconds = time.perf_counter() - start
        lines.append(f"| {arch} | {sum(p.numel() for p in model.parameters()) / 1e6:.1f} | "
                     f"{full.gflops_per_sample:.2f} | {full.memory.peak / GB:.1f} | {lora.memory.peak / GB:.1f} | "
                     f"{seconds:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="ViT-B-32,ViT-B-16")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--fullft-steps", type=float, default=1420)
    parser.add_argument("--fp32", action="store_true", help="fp32 activations instead of bf16")
    parser.add_argument("--no-big", action="store_true", help="skip the big-architecture timings")
    args = parser.parse_args()
    precision = "fp32" if args.fp32 else "bf16"
    for arch in args.archs.split(","):
        print(markdown_table(arch, precision, args.batch_size, args.fullft_steps), end="\n\n")
    if not args.no_big:
        print(f"Big architectures (finetune and lora r=4 rows, batch {args.batch_size}, {precision}):\n")
        print(big_models(precision, args.batch_size))


if __name__ == "__main__":
    main()
