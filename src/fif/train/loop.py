"""One continual-pretraining run: the flow of DESIGN.md from config to results.json.

config -> backbone -> stream -> budget -> for each task: begin, steps of mixed batches, end,
evaluate, log -> A_KA / A_ZS / GM per task -> results.json (written atomically after every task).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from fif.budget.flops import train_step_gflops_per_sample
from fif.config import to_container
from fif.data.batches import BatchBuilder
from fif.data.buffer import ReplayBuffer
from fif.data.catalogue import TrainingCatalogue
from fif.data.fif_format import ADAPTATION, EVALUATION, DatasetSpec
from fif.data.mixture import MixtureSampler, batch_split
from fif.data.pool import PoolStream, find_shards
from fif.data.registry import resolve_registry
from fif.data.streams import make_tasks, stream_source
from fif.errors import FifError
from fif.eval.metrics import average_over_tasks, summarize
from fif.eval.suite import EvalSuite
from fif.methods import TaskInfo, build_method, method_class
from fif.models.backbone import build_backbone
from fif.tracking.jsonl import JsonlTracker
from fif.train.task_batches import task_batches
from fif.utils.io import atomic_torch_save, atomic_write, atomic_write_json


@dataclass
class RunOutput:
    run_dir: Path
    results: dict[str, Any]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FifError(f"device={name} but no CUDA device is available")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def data_root(cfg: DictConfig, echo=print) -> Path:
    """The FiF data root; the mini benchmark is generated on first use."""
    if cfg.experiment.dataset.root:
        root = Path(cfg.experiment.dataset.root).expanduser()
        if not root.is_dir():
            raise FifError(f"experiment.dataset.root={root} does not exist")
        return root
    if "mini" in cfg:
        from fif.data.mini.build import build_datasets, default_root, is_built

        root = default_root(int(cfg.mini.seed))
        if not is_built(root):
            echo(f"generating the mini benchmark into {root} (first use, about 10 s)")
        return build_datasets(root, seed=int(cfg.mini.seed))
    raise FifError("experiment.dataset.root is not set (point it at a FiF data root, or use experiment=mini)")


def pool_shards(cfg: DictConfig, root: Path) -> list[Path]:
    ds = cfg.experiment.dataset
    limit = int(ds.pool_shards) if ds.pool_shards else None
    if ds.pretraining_pool:
        return find_shards(Path(ds.pretraining_pool).expanduser(), limit)
    if "mini" in cfg:
        from fif.data.mini.build import pool_shards as mini_pool_shards

        return mini_pool_shards(root, limit or 4, seed=int(cfg.mini.seed))
    raise FifError("experiment.dataset.data_mixture.pretraining > 0 needs experiment.dataset.pretraining_pool "
                   "(a folder of webdataset tar shards)")


def make_run_dir(cfg: DictConfig) -> Path:
    name = cfg.log.name or f"{cfg.continual.method}_{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = Path(cfg.log.folder).expanduser() / str(name)
    if (run_dir / "results.json").exists():
        raise FifError(f"run folder {run_dir} already holds a run (results.json); choose another log.name")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def steps_per_task(cfg: DictConfig) -> int:
    task = cfg.experiment.task
    if task.batch_size < 1:
        raise FifError(f"experiment.task.batch_size={task.batch_size} must be at least 1")
    steps = int(task.n_samples) // int(task.batch_size)
    if steps < 1:
        raise FifError(f"experiment.task.n_samples={task.n_samples} is smaller than one batch "
                       f"(experiment.task.batch_size={task.batch_size})")
    return steps


def report_skipped(results: dict[str, Any], counters: list, echo=print, cap: int = 100) -> None:
    """skipped_corrupt (how many samples were skipped) and the files (most skipped first, capped)."""
    per_file: dict[str, int] = {}
    for counter in counters:
        for name, count in counter.items():
            per_file[name] = per_file.get(name, 0) + count
    results["skipped_corrupt"] = sum(per_file.values())
    results["skipped_corrupt_files"] = dict(sorted(per_file.items(), key=lambda kv: (-kv[1], kv[0]))[:cap])
    if per_file:
        echo(f"skipped {results['skipped_corrupt']} corrupt samples in {len(per_file)} files "
             f"(experiment.dataset.skip_corrupt=true; files in results.json)")


def run_experiment(cfg: DictConfig, echo=print) -> RunOutput:
    """Run one experiment end to end and return its run folder and results."""
    seed = int(cfg.experiment.seed)
    seed_everything(seed)
    device = resolve_device(str(cfg.device))
    method_class(str(cfg.continual.method))  # fail on a typo before any data is read
    steps = steps_per_task(cfg)
    mixture = {k: float(v) for k, v in cfg.experiment.dataset.data_mixture.items()}
    batch_split(int(cfg.experiment.task.batch_size), mixture)  # validate the shares before any work
    buffer = ReplayBuffer(str(cfg.experiment.dataset.buffer.policy), cfg.experiment.dataset.buffer.size, seed)
    skip_corrupt = bool(cfg.experiment.dataset.skip_corrupt)

    root = data_root(cfg, echo)
    ds_cfg = cfg.experiment.dataset
    registry = resolve_registry(ds_cfg.registry, root)
    entries, tasks = make_tasks(cfg, root, registry)

    bb = cfg.experiment.backbone
    backbone = build_backbone(bb.name, bb.checkpoint, bb.cache_dir, bool(bb.pretrained))
    model = backbone.model.to(device)
    layout = {"tar": bool(ds_cfg.tar), "resized": bool(ds_cfg.create_resized_variant_if_possible)}
    catalogue = TrainingCatalogue(root, registry, entries, ds_cfg.info_dir,
                                  preload=bool(ds_cfg.preload) and not ds_cfg.preload_test_only,
                                  skip_corrupt=skip_corrupt, source=stream_source(cfg), **layout)
    pool = (PoolStream(pool_shards(cfg, root), seed, int(ds_cfg.pool_shuffle_buffer), skip_corrupt=skip_corrupt)
            if mixture["pretraining"] > 0 else None)
    specs: list[DatasetSpec] = [s for s in registry.values() if s.role in (ADAPTATION, EVALUATION)]
    templates = list(cfg.evaluation.templates) if cfg.evaluation.templates else None
    suite = EvalSuite(root, specs, backbone.eval_transform, ds_cfg.info_dir,
                      preload=bool(ds_cfg.preload or ds_cfg.preload_test_only),
                      batch_size=int(cfg.evaluation.batch_size), num_workers=int(ds_cfg.num_workers),
                      templates=templates, skip_corrupt=skip_corrupt, **layout)
    method = build_method(cfg, model, device)
    builder = BatchBuilder(catalogue, pool, backbone.train_transform, backbone.tokenizer, seed, skip_corrupt)

    run_dir = make_run_dir(cfg)
    method.work_dir = run_dir / "method"  # methods that keep files (task checkpoints) write here
    atomic_write(run_dir / "config.yaml", lambda f: f.write(OmegaConf.to_yaml(cfg, resolve=True)))
    tracker = JsonlTracker(run_dir)
    batch_size = int(cfg.experiment.task.batch_size)
    probe = builder.build(MixtureSampler(seed, 0, catalogue.task_indices(tasks[0]), [],
                                         {"update": 2, "buffer": 0, "pretraining": 0}).plan(0), -1, -1)
    gflops_per_sample = train_step_gflops_per_sample(
        method.eval_model(), {n for n, p in model.named_parameters() if p.requires_grad}, probe.images, probe.texts)
    tracker.log("start", run_dir=str(run_dir), device=str(device), tasks=len(tasks), steps_per_task=steps,
                gflops_per_sample=gflops_per_sample, train_samples=len(catalogue))
    echo(f"run {run_dir}: {len(tasks)} tasks x {steps} steps of {batch_size} on {device} "
         f"({gflops_per_sample:.3f} GFLOPs per sample, {len(entries)} classes, {len(catalogue)} training samples)")

    results: dict[str, Any] = {"config": to_container(cfg), "status": "running"}
    start = time.time()
    zero_shot = summarize(suite.evaluate(method.eval_model(), backbone.tokenizer, device), specs)
    results["zero_shot"] = zero_shot
    results["tasks"] = []
    tracker.log("eval", task=0, **{k: zero_shot[k] for k in ("A_KA", "A_ZS", "geometric_mean")})
    echo(f"zero-shot        A_KA {zero_shot['A_KA']:6.2f}  A_ZS {zero_shot['A_ZS']:6.2f}  "
         f"GM {zero_shot['geometric_mean']:6.2f}")
    atomic_write_json(run_dir / "results.json", results)

    class_id = {entry: k for k, entry in enumerate(dict.fromkeys(entries))}  # class labels for the buffer
    samples_seen = 0
    for t, classes in enumerate(tasks):
        task_indices = catalogue.task_indices(classes)
        task = TaskInfo(t, len(tasks), steps, sample_batches=task_batches(builder, task_indices, seed, t, steps))
        counts = batch_split(batch_size, mixture, buffer_empty=len(buffer) == 0, pool_available=pool is not None)
        sampler = MixtureSampler(seed, t, task_indices, buffer.indices(), counts)
        method.begin_task(task)
        task_start = time.time()
        bar = tqdm(range(steps), desc=f"task {t + 1}/{len(tasks)}", unit="step", leave=False,
                   disable=not cfg.log.progress, dynamic_ncols=True)
        for step in bar:
            batch = builder.build(sampler.plan(step), t, step)
            stats = method.observe(batch)
            samples_seen += len(batch)
            rate = (step + 1) * batch_size / max(time.time() - task_start, 1e-9)
            bar.set_postfix(loss=f"{stats['loss']:.3f}", samples_s=f"{rate:.0f}")
            if step % 10 == 0 or step == steps - 1:
                tracker.log("step", task=t + 1, step=step, samples_seen=samples_seen, **stats)
        bar.close()
        method.end_task(task)
        buffer.add_task(task_indices, [class_id[e] for e in classes for _ in catalogue.task_indices([e])])
        train_seconds = time.time() - task_start
        summary = summarize(suite.evaluate(method.eval_model(), backbone.tokenizer, device), specs)
        summary.update(task=t + 1, classes=len(classes), samples_seen=samples_seen,
                       gflops=gflops_per_sample * samples_seen, seconds=time.time() - task_start,
                       train_seconds=train_seconds, buffer_samples=len(buffer))
        results["tasks"].append(summary)
        tracker.log("eval", task=t + 1, **{k: summary[k] for k in ("A_KA", "A_ZS", "geometric_mean")},
                    seconds=summary["seconds"])
        echo(f"task {t + 1:>3}/{len(tasks):<3}   A_KA {summary['A_KA']:6.2f}  A_ZS {summary['A_ZS']:6.2f}  "
             f"GM {summary['geometric_mean']:6.2f}  ({len(classes)} classes, {steps} steps, "
             f"{steps * batch_size / train_seconds:.0f} samples/s, {summary['seconds']:.1f}s)")
        atomic_write_json(run_dir / "results.json", results)

    last = results["tasks"][-1]
    results["final"] = {k: last[k] for k in ("A_KA", "A_ZS", "geometric_mean", "per_dataset", "details")}
    results["averaged"] = average_over_tasks(results["tasks"])
    results["seconds"] = time.time() - start
    if skip_corrupt:
        report_skipped(results, [builder.skipped, pool.skipped if pool else {}, suite.skipped], echo)
    results["status"] = "complete"
    if cfg.log.checkpoint:
        atomic_torch_save(run_dir / "final_model.pt", {"model": method.final_state_dict(),
                                                       "backbone": str(bb.name)})
    atomic_write_json(run_dir / "results.json", results)
    tracker.log("end", seconds=results["seconds"], **results["final"])
    tracker.close()
    return RunOutput(run_dir, results)
