"""``fif flops``: the compute and memory cost of every method on one backbone, and the steps a budget buys.

Kept apart from cli/main.py so the entry point stays a short table of commands.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _model_name(args: argparse.Namespace, cfg) -> str:
    """--arch, else the configured backbone (its local-dir checkpoint folder, if one is set)."""
    if args.arch:
        return args.arch
    backbone = cfg.experiment.backbone
    if backbone.checkpoint and Path(str(backbone.checkpoint)).expanduser().is_dir():
        return f"local-dir:{Path(str(backbone.checkpoint)).expanduser()}"
    return str(backbone.name)


def cmd_flops(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import torch

    from fif.budget.archs import meta_model
    from fif.budget.plan import resolve_memory, resolve_precision
    from fif.budget.table import format_table, method_table, parse_rows
    from fif.config import compose
    from fif.errors import FifError
    from fif.runtime.device import resolve_device
    from fif.config.settings import RunSettings
    from fif.utils.io import atomic_write_json

    cfg = compose(args.overrides)
    run = RunSettings.from_config(cfg)
    settings, task = run.budget, run.task
    device = resolve_device(args.device or str(cfg.device))
    precision = resolve_precision(args.precision or settings.precision, device)
    memory = resolve_memory(args.memory or settings.memory, device)
    batch_size = int(args.batch_size or task.batch_size)
    if batch_size < 2:
        raise FifError(f"--batch-size {batch_size} is too small for a contrastive step (at least 2)")
    if args.fullft_steps is not None:
        fullft_steps = float(args.fullft_steps)
    elif settings.unit == "fullft_steps":
        fullft_steps = float(settings.amount)
    else:
        fullft_steps = float(replace(task, batch_size=batch_size).steps_from_samples)
    if fullft_steps <= 0:
        raise FifError(f"--fullft-steps {fullft_steps:g} must be positive")
    rows = parse_rows(args.methods, args.row or [])
    name = _model_name(args, cfg)
    model = meta_model(name)
    charge = settings.charge_end_of_task and not args.no_charge_end_of_task
    progress = (lambda label: print(f"profiling {label} ...", file=sys.stderr)) if args.verbose else None
    skipped: dict[str, str] = {}
    table = method_table(run, model, rows, fullft_steps, precision, memory, batch_size, charge,
                         device if memory == "allocator" else None, progress, skipped)
    params = sum(p.numel() for p in model.parameters())
    title = (f"{name} ({params / 1e6:.1f}M parameters): batch {batch_size}, {precision} activations, memory "
             f"{'counted' if memory == 'count' else 'allocator peak on ' + str(device)}; steps for "
             f"{fullft_steps:g} full-finetuning steps per task")
    print(format_table(table, title, fullft_steps), end="")
    for label, reason in skipped.items():
        print(f"{label}: not profiled: {reason}")
    if args.json:
        atomic_write_json(args.json, {"architecture": name, "parameters": params, "batch_size": batch_size,
                                      "precision": precision, "memory": memory, "fullft_steps": fullft_steps,
                                      "charge_end_of_task": charge, "torch": torch.__version__,
                                      "rows": [row.as_dict() for row in table], "skipped": skipped})
        print(f"wrote {args.json}")
    return 0


def add_parser(subparsers) -> None:
    """Register ``fif flops``."""
    flops = subparsers.add_parser(
        "flops", help="GFLOPs, peak memory, MAF and budget steps of every method on one backbone",
        description="Profile one training step (forward + backward, trainable parameters only) of each method on "
                    "the configured backbone, or on --arch with no weights at all (counted on fake tensors: any "
                    "open_clip architecture, in seconds, nothing downloaded). Prints GFLOPs per image-text pair, "
                    "the peak memory of a step, Memory-Adjusted FLOPs (MAF = GFLOPs x peak memory / full "
                    "finetuning's) and the steps a budget of --fullft-steps full-finetuning steps buys. Overrides "
                    "use the same KEY=VALUE syntax as `fif run` and apply to every row.")
    flops.add_argument("--arch", help="architecture: a backbone name (openclip_vit_b16, mini_clip, local-dir:/p) or "
                                      "an open_clip one (ViT-B-32, ViT-g-14, convnext_base); default: the "
                                      "configured experiment.backbone")
    flops.add_argument("--methods", default="all",
                       help="comma-separated rows, or all (default): each registered method by its "
                            "continual.method name (merge_grid's cells are the named merging methods), "
                            "locked-image and locked-text (finetune with one tower locked) "
                            "and NAME-ref for each adapter method (the reference's adapter compute, e.g. lora-ref); "
                            "an unknown name lists every row")
    flops.add_argument("--row", action="append", metavar="LABEL=KEY=VALUE,...",
                       help="an extra row, e.g. 'lora r64=continual.method=lora,continual.lora.rank=64' (repeatable)")
    flops.add_argument("--batch-size", type=int, help="samples per step (default: experiment.task.batch_size)")
    flops.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                       help="activations in the count: bf16 = the dtypes of a CUDA AMP step, fp32 = a CPU run "
                            "(default: experiment.task.budget.precision, auto = as the run on --device trains)")
    flops.add_argument("--memory", choices=["auto", "count", "allocator"],
                       help="count (anywhere) or allocator (the CUDA allocator's peak of a real step; needs a GPU) "
                            "(default: experiment.task.budget.memory, auto = allocator on CUDA)")
    flops.add_argument("--device", help="cpu | cuda | cuda:N (default: the config's device)")
    flops.add_argument("--fullft-steps", type=float,
                       help="budget per task, as full-finetuning steps (default: experiment.task.budget.amount "
                            "with unit fullft_steps, else n_samples // batch size)")
    flops.add_argument("--no-charge-end-of-task", action="store_true",
                       help="do not take once-per-task compute (EWC's Fisher) out of the budget")
    flops.add_argument("--json", help="also write the table as JSON to this file")
    flops.add_argument("-v", "--verbose", action="store_true", help="say which row is being profiled")
    flops.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides, e.g. continual.lora.rank=4")
    flops.set_defaults(func=cmd_flops)
