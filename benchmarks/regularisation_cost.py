"""What EWC and SI cost on top of finetuning: the Fisher at each task's end, and per-step overhead.

    python benchmarks/regularisation_cost.py [--backbone mini_clip] [--batch 128] [--fim-samples 1024,4096]
                                             [--steps 10] [--device cpu]

Prints (numbers, not a test): seconds of one EWC Fisher (``end_task``) over each --fim-samples
count, in batches of --batch, next to the seconds of one finetuning step of --batch samples; and
the per-step time of finetune, EWC and SI once a penalty is active (after a first task). Batches
are fixed random image-text batches, so only compute is measured (no data loading).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator

import torch

from fif.config.settings import RunSettings
from fif.config import compose
from fif.data.samples.batches import Batch
from fif.methods import TaskInfo, build_method
from fif.models.backbone import build_backbone


def _batch(backbone, size: int, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    side = backbone.model.visual.image_size
    side = side[0] if isinstance(side, (tuple, list)) else side
    texts = backbone.tokenizer([f"a photo of thing {i % 7}" for i in range(size)])
    return Batch(torch.randn(size, 3, side, side, generator=g), texts, {"update": size})


def _method(name: str, backbone_name: str, device: str, batch: int):
    cfg = compose([f"continual.method={name}", f"device={device}", f"experiment.task.batch_size={batch}"])
    backbone = build_backbone(backbone_name, pretrained=backbone_name == "mini_clip")  # others: random weights
    model = backbone.model.to(device)
    return build_method(RunSettings.from_config(cfg), model, torch.device(device)), backbone


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _step_seconds(method, batch: Batch, steps: int, device: str) -> float:
    times = []
    for _ in range(steps + 1):
        _sync(device)
        start = time.perf_counter()
        method.observe(batch)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mini_clip")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--fim-samples", default="1024,4096")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    ewc, backbone = _method("ewc", args.backbone, args.device, args.batch)
    pool = [_batch(backbone, args.batch, s) for s in range(4)]

    def draw(n: int, b: int) -> Iterator[Batch]:
        for k in range(n // b):
            yield pool[k % len(pool)]

    ewc.begin_task(TaskInfo(0, 2, args.steps, sample_batches=draw))
    finetune_step = None
    print(f"{args.backbone} on {args.device}, batch {args.batch}")
    for n in (int(x) for x in args.fim_samples.split(",")):
        ewc.max_fim_samples = n
        _sync(args.device)
        start = time.perf_counter()
        ewc.end_task(TaskInfo(0, 2, args.steps, sample_batches=draw))
        _sync(args.device)
        seconds = time.perf_counter() - start
        print(f"EWC Fisher over {n} samples ({n // args.batch} batches): {seconds:.2f} s")
    for name in ("finetune", "ewc", "si"):
        method, _ = _method(name, args.backbone, args.device, args.batch)
        task = TaskInfo(0, 2, 2, sample_batches=draw)
        method.begin_task(task)
        method.observe(pool[0])
        method.observe(pool[1])
        if name == "ewc":
            method.max_fim_samples = args.batch
        method.end_task(task)
        method.begin_task(TaskInfo(1, 2, args.steps + 1))  # _step_seconds: one untimed step, then the timed ones
        seconds = _step_seconds(method, pool[2], args.steps, args.device)
        finetune_step = seconds if name == "finetune" else finetune_step
        print(f"{name:<8} step of {args.batch} samples: {seconds * 1000:.0f} ms "
              f"({seconds / finetune_step:.2f}x finetune)")


if __name__ == "__main__":
    main()
