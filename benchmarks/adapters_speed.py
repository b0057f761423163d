"""Training speed of the adapter methods vs full finetuning on a CLIP backbone.

    python benchmarks/adapters_speed.py [--backbone mini_clip] [--batch 128] [--steps 20] [--device cpu]
                                        [--methods finetune,lora,dora,vera]

Prints (numbers, not a test), per method: trainable parameters, GFLOPs per sample of one training
step (fwd + bwd, counted by fif.budget.flops as the run does), and training samples/s of full
``observe`` steps (forward, CLIP loss, backward, clipping, AdamW) on fixed random image-text
batches, after --warmup untimed steps; the median of --repeats timings.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from fif.config.settings import RunSettings
from fif.budget.flops import train_step_gflops_per_sample
from fif.config import compose
from fif.data.samples.batches import Batch
from fif.methods import TaskInfo, build_method
from fif.models.backbone import build_backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mini_clip")
    parser.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", default="finetune,lora,dora,vera")
    parser.add_argument("overrides", nargs="*", help="extra config overrides, e.g. continual.lora.rank=16")
    args = parser.parse_args()

    device = torch.device(args.device)
    backbone = build_backbone(args.backbone, pretrained=args.pretrained)
    size = backbone.model.visual.image_size
    size = size if isinstance(size, (tuple, list)) else (size, size)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, *size, generator=generator)
    texts = backbone.tokenizer([f"a photo of object number {i}" for i in range(args.batch)])
    batch = Batch(images, texts, {"update": args.batch})
    print(f"{args.backbone}, batch {args.batch}, {args.steps} steps x {args.repeats} on {device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'method':<10}{'trainable':>12}{'GFLOPs/sample':>15}{'samples/s':>12}")
    methods = {}
    for name in args.methods.split(","):
        cfg = compose([f"continual.method={name}", f"experiment.backbone.name={args.backbone}",
                       f"experiment.task.batch_size={args.batch}", *args.overrides])
        model = copy.deepcopy(backbone.model).to(device)
        method = build_method(RunSettings.from_config(cfg), model, device)
        method.begin_task(TaskInfo(0, 1, args.warmup + args.steps * args.repeats))
        for _ in range(args.warmup):
            method.observe(batch)
        methods[name] = method
    rates: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):  # interleaved, so load from other processes hits every method alike
        for name, method in methods.items():
            rates[name].append(_samples_per_second(method, batch, args.steps, device))
    for name, method in methods.items():
        trainable = {n for n, p in method.model.named_parameters() if p.requires_grad}
        gflops = train_step_gflops_per_sample(method.model, trainable, images[:8], texts[:8])
        count = sum(p.numel() for n, p in method.model.named_parameters() if n in trainable)
        print(f"{name:<10}{count:>12,}{gflops:>15.4f}{statistics.median(rates[name]):>12.1f}")


def _samples_per_second(method, batch: Batch, steps: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        method.observe(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * len(batch) / (time.perf_counter() - start)

if __name__ == "__main__":
    main()
