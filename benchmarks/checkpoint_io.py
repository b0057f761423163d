"""Size and time of resume checkpoints for a config: gather, write (sha256 + fsync + rename), verify-load.

    python benchmarks/checkpoint_io.py [--buffer-samples N] [--folder DIR] [KEY=VALUE ...]

Builds the config's backbone and method, trains one step on a synthetic batch (so AdamW holds its
moments, as inside a task), then writes and reads back the checkpoint the run loop would write
inside a task and at a task end (where the optimizer is left out), with a replay buffer of
``--buffer-samples`` indices. Examples:

    python benchmarks/checkpoint_io.py                                           # the default (mini) run
    python benchmarks/checkpoint_io.py experiment=fif experiment.backbone.pretrained=false \\
        --buffer-samples 2500000                                                  # ViT-B/32, full FiF buffer
    python benchmarks/checkpoint_io.py continual.method=ema_paint                 # + theta_0 and the running merge
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from fif.config.settings import RunSettings
from fif.config import compose, to_container
from fif.data.samples.batches import Batch
from fif.data.samples.buffer import ReplayBuffer
from fif.methods import TaskInfo, build_method
from fif.models.backbone import build_backbone
from fif.train.checkpoint import Position, read_checkpoint, write_checkpoint
from fif.runtime.device import resolve_device
from fif.train.run_state import gather_state


def synthetic_batch(backbone, size: int) -> Batch:
    pixels = backbone.model.visual.image_size
    side = pixels[0] if isinstance(pixels, (tuple, list)) else pixels
    texts = backbone.tokenizer([f"a photo of thing {i}" for i in range(size)])
    return Batch(torch.randn(size, 3, side, side), texts, {"update": size, "buffer": 0, "pretraining": 0})


def measure(label: str, state_fn, folder: Path) -> None:
    start = time.perf_counter()
    state = state_fn()
    gathered = time.perf_counter() - start
    path = folder / f"{label}.pt"
    written = write_checkpoint(path, state)
    start = time.perf_counter()
    read_checkpoint(path)
    loaded = time.perf_counter() - start
    print(f"{label:<10} {written.bytes / 2**20:10.1f} MiB   gather {gathered:6.3f} s   write {written.seconds:6.3f} s "
          f"({written.bytes / 2**20 / max(written.seconds, 1e-9):7.0f} MiB/s)   verify+load {loaded:6.3f} s")
    path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buffer-samples", type=int, default=7820, help="indices held by the replay buffer")
    parser.add_argument("--batch", type=int, default=4, help="synthetic batch of the one training step")
    parser.add_argument("--folder", default=None, help="where to write (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = compose(args.overrides)
    device = resolve_device(str(cfg.device))
    bb = cfg.experiment.backbone
    backbone = build_backbone(bb.name, bb.checkpoint, bb.cache_dir, bool(bb.pretrained))
    model = backbone.model.to(device)
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        method = build_method(RunSettings.from_config(cfg), model, device, work_dir=Path(tmp) / "method")
        task = TaskInfo(0, 2, 10)
        method.begin_task(task)
        method.observe(synthetic_batch(backbone, args.batch))
        buffer = ReplayBuffer("all", None, 0)
        buffer.add_task(list(range(args.buffer_samples)))
        params = sum(p.numel() for p in model.parameters())
        trained = sum(p.numel() for p in method.trainable_parameters())
        print(f"{bb.name} / {cfg.continual.method} on {device}: {params / 1e6:.2f} M parameters "
              f"({trained / 1e6:.2f} M trained), buffer {args.buffer_samples} indices")
        config = to_container(cfg)

        def state() -> dict:
            return gather_state(Position(task.index, method.step_in_task, method.step_in_task), config, method,
                                buffer, None, {"builder": {}, "suite": {}}, {"tasks": []}, 0, 0.0, 0.0,
                                {"steps": task.steps, "gflops_per_sample": 0.0})

        measure("mid-task", state, Path(tmp))
        method.step_in_task = task.steps  # the task's steps are done: the optimizer is left out
        method.end_task(task)
        measure("task-end", state, Path(tmp))


if __name__ == "__main__":
    main()
