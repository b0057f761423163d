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

from fif.budget.plan import budget_settings, plan_task_budget
from fif.config import public_config, to_container
from fif.data.samples.batches import BatchBuilder
from fif.data.samples.buffer import ReplayBuffer
from fif.data.samples.catalogue import TrainingCatalogue
from fif.data.format.fif_format import ADAPTATION, EVALUATION, DatasetSpec
from fif.data.samples.mixture import MixtureSampler, batch_split
from fif.data.samples.pool import PoolStream, find_shards
from fif.data.format.registry import resolve_registry
from fif.data.format.streams import make_tasks, stream_source
from fif.errors import FifError
from fif.eval.metrics import average_over_tasks, summarize
from fif.eval.protocol import EvalProtocol
from fif.eval.suite import EvalSuite
from fif.methods import TaskInfo, build_method, method_class
from fif.models.backbone import build_backbone
from fif.tracking import FanOutTracker, build_tracker
from fif.train.checkpoint import Checkpointer, Position
from fif.runtime.distributed import (broadcast_object, check_batch_divisible, init_distributed, rank_device, shard,
                                   shutdown)
from fif.train.resume import plan_resume
from fif.train.run_state import gather_state, position_of, restore_data, restore_method
from fif.data.samples.task_batches import task_batches
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
        raise FifError(f"run folder {run_dir} already holds a run (results.json); choose another log.name, "
                       f"or continue it with log.resume=true")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def steps_per_task(cfg: DictConfig) -> int:
    """Steps per task from n_samples; 0 when experiment.task.budget decides them (plan_task_budget, later)."""
    task = cfg.experiment.task
    if task.batch_size < 1:
        raise FifError(f"experiment.task.batch_size={task.batch_size} must be at least 1")
    if budget_settings(cfg).unit is not None:
        return 0
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
    resume = plan_resume(cfg, echo)  # log.resume: the run to continue (None: a new run)
    if resume is not None and resume.finished is not None:
        echo(f"run {resume.run_dir} is already complete (results.json): nothing to resume")
        return RunOutput(resume.run_dir, resume.finished)
    resumed = resume.state if resume is not None else None  # the checkpoint to continue from
    if resume is not None:
        resume.state = None  # held in ``resumed`` alone, dropped once restored (a checkpoint can be GBs)
    device = resolve_device(str(cfg.device))
    dist_ctx = init_distributed(device)  # torchrun: one process per device, rank 0 writes and prints
    device = rank_device(device, dist_ctx)
    check_batch_divisible(int(cfg.experiment.task.batch_size), dist_ctx)
    if not dist_ctx.is_main:
        echo = lambda *args, **kwargs: None  # noqa: E731
    method_class(str(cfg.continual.method))  # fail on a typo before any data is read
    EvalProtocol.check(cfg)  # likewise the scheduler, validation-mode and subset keys
    steps = steps_per_task(cfg)
    mixture = {k: float(v) for k, v in cfg.experiment.dataset.data_mixture.items()}
    batch_split(int(cfg.experiment.task.batch_size), mixture)  # validate the shares before any work
    buffer = ReplayBuffer(str(cfg.experiment.dataset.buffer.policy), cfg.experiment.dataset.buffer.size, seed)
    skip_corrupt = bool(cfg.experiment.dataset.skip_corrupt)

    root = data_root(cfg, echo)
    ds_cfg = cfg.experiment.dataset
    registry = resolve_registry(ds_cfg.registry, root)
    entries, tasks = make_tasks(cfg, root, registry)
    protocol = EvalProtocol(cfg, root, registry, echo)  # validation splits and evaluation subsets

    bb = cfg.experiment.backbone
    backbone = build_backbone(bb.name, bb.checkpoint, bb.cache_dir, bool(bb.pretrained))
    model = backbone.model.to(device)
    layout = {"tar": bool(ds_cfg.tar), "resized": bool(ds_cfg.create_resized_variant_if_possible)}
    catalogue = TrainingCatalogue(root, registry, entries, ds_cfg.info_dir,
                                  preload=bool(ds_cfg.preload) and not ds_cfg.preload_test_only,
                                  skip_corrupt=skip_corrupt, source=stream_source(cfg),
                                  train_part=protocol.train_part, **layout)
    pool = (PoolStream(pool_shards(cfg, root), seed, int(ds_cfg.pool_shuffle_buffer), skip_corrupt=skip_corrupt)
            if mixture["pretraining"] > 0 else None)
    specs: list[DatasetSpec] = protocol.keep([s for s in registry.values() if s.role in (ADAPTATION, EVALUATION)])
    templates = list(cfg.evaluation.templates) if cfg.evaluation.templates else None
    suite = EvalSuite(root, specs, backbone.eval_transform, ds_cfg.info_dir,
                      preload=bool(ds_cfg.preload or ds_cfg.preload_test_only),
                      batch_size=int(cfg.evaluation.batch_size), num_workers=int(ds_cfg.num_workers),
                      templates=templates, skip_corrupt=skip_corrupt, splits=protocol.eval_splits, **layout)
    protocol.attach(suite)
    largest_task = (max(len(catalogue.task_indices(classes)) for classes in tasks)  # caps EWC's Fisher charge
                    if budget_settings(cfg).unit is not None else None)  # only a budget needs it
    plan = plan_task_budget(cfg, model, device, largest_task)  # before the method changes the model; fif.budget
    steps = plan.steps
    method = build_method(cfg, model, device)
    builder = BatchBuilder(catalogue, pool, backbone.train_transform, backbone.tokenizer, seed, skip_corrupt)

    run_dir = resume.run_dir if resume is not None else (make_run_dir(cfg) if dist_ctx.is_main else None)
    run_dir = broadcast_object(run_dir, dist_ctx)  # a timestamped name is rank 0's
    method.dist = suite.dist = dist_ctx
    method.work_dir = run_dir / "method"  # methods that keep files (task checkpoints) write here
    if resumed is None and dist_ctx.is_main:  # a resumed run keeps the config.yaml it started with
        atomic_write(run_dir / "config.yaml", lambda f: f.write(OmegaConf.to_yaml(public_config(cfg), resolve=True)))
    checkpoints = Checkpointer(run_dir / "checkpoints", cfg.log.keep_checkpoints, cfg.log.checkpoint_every_steps,
                               writer=dist_ctx.is_main)
    tracker = build_tracker(cfg, run_dir) if dist_ctx.is_main else FanOutTracker([])
    batch_size = int(cfg.experiment.task.batch_size)
    gflops_per_sample = plan.gflops_per_sample
    tracker.log("start", run_dir=str(run_dir), device=str(device), tasks=len(tasks), steps_per_task=steps,
                gflops_per_sample=gflops_per_sample, train_samples=len(catalogue))
    echo(f"run {run_dir}: {len(tasks)} tasks x {steps} steps of {batch_size} on {device} "
         f"({gflops_per_sample:.3f} GFLOPs per sample, {len(entries)} classes, {len(catalogue)} training samples)")
    tracker.log("budget", **plan.as_dict())
    echo(plan.describe())

    results: dict[str, Any] = {"config": to_container(public_config(cfg)), "status": "running", **protocol.record(),
                               "world_size": dist_ctx.world_size}

    def write_results() -> None:
        if dist_ctx.is_main:
            atomic_write_json(run_dir / "results.json", results)
    start = time.time()
    samples_seen, global_step, task_elapsed = 0, 0, 0.0

    def checkpoint(position: Position, task_seconds: float = 0.0) -> None:
        """Write the run's state at ``position`` (fif.train.checkpoint); the newest log.keep_checkpoints stay."""
        if checkpoints.enabled:
            skipped = {"builder": builder.skipped, "suite": suite.skipped}
            written = checkpoints.save(gather_state(position, to_container(public_config(cfg)), method, buffer, pool, skipped,
                                                    results, samples_seen, time.time() - start, task_seconds,
                                                    {"steps": steps, "gflops_per_sample": gflops_per_sample}),
                                       position)
            tracker.log("checkpoint", path=str(written.path), bytes=written.bytes, seconds=written.seconds,
                        **position.as_dict())

    if resumed is None:
        zero_shot = summarize(suite.evaluate(method.eval_model(), backbone.tokenizer, device), specs)
        results["zero_shot"] = zero_shot
        if protocol.subsets:  # the same subsets at zero-shot, to compare the subset points with
            results["zero_shot_subset"] = summarize(suite.evaluate(method.eval_model(), backbone.tokenizer, device,
                                                                   protocol.subsets.indices), specs)
        results["tasks"] = []
        tracker.log("eval", task=0, **{k: zero_shot[k] for k in ("A_KA", "A_ZS", "geometric_mean", "per_dataset")})
        echo(f"zero-shot        A_KA {zero_shot['A_KA']:6.2f}  A_ZS {zero_shot['A_ZS']:6.2f}  "
             f"GM {zero_shot['geometric_mean']:6.2f}")
        write_results()
        checkpoint(Position(0, 0, 0))
        resume_at = Position(0, 0, 0)
    else:  # continue exactly where the checkpoint stands (fif.train.run_state)
        resume_at = position_of(resumed)
        loop_state = restore_data(resumed, buffer, pool, builder, suite)
        results, samples_seen, global_step = loop_state["results"], loop_state["samples_seen"], resume_at.global_step
        started_world = int(results.get("world_size", 1))
        if started_world != dist_ctx.world_size:  # a different split of every batch: not the same run
            if not cfg.log.resume_force:
                raise FifError(f"run {run_dir} was started with {started_world} process(es) and resumes with "
                               f"{dist_ctx.world_size}: resume with the same world size (or log.resume_force=true)")
            echo(f"resuming a {started_world}-process run with {dist_ctx.world_size} processes (log.resume_force)")
            results["world_size"] = dist_ctx.world_size
        start, task_elapsed = time.time() - loop_state["elapsed"], loop_state["task_elapsed"]
        started = (loop_state["budget"]["steps"], loop_state["budget"]["gflops_per_sample"])
        if started != (steps, gflops_per_sample):  # the budget is the one the run started with
            echo(f"keeping the run's budget: {started[0]} steps per task, {started[1]:.4g} GFLOPs per sample "
                 f"(measured now: {steps}, {gflops_per_sample:.4g})")
            steps, gflops_per_sample = started
        tracker.log("resume", checkpoint=str(resume.checkpoint), **resume_at.as_dict(),
                    forced={k: [a, b] for k, (a, b) in resume.forced.items()})
        echo(f"resuming from {resume.checkpoint} ({resume_at.describe(len(tasks))})")
        if resume_at.step == 0:  # between tasks: the method as it was before begin_task
            warning = restore_method(resumed, method, strict_rng=not cfg.log.resume_force)
            resumed = None
            if warning:
                echo(warning)

    class_id = {entry: k for k, entry in enumerate(dict.fromkeys(entries))}  # class labels for the buffer
    for t, classes in enumerate(tasks[resume_at.task:], start=resume_at.task):
        task_indices = catalogue.task_indices(classes)
        task = TaskInfo(t, len(tasks), steps, sample_batches=task_batches(builder, task_indices, seed, t, steps))
        counts = batch_split(batch_size, mixture, buffer_empty=len(buffer) == 0, pool_available=pool is not None)
        sampler = MixtureSampler(seed, t, task_indices, buffer.indices(), counts)
        method.begin_task(task)
        first_step = 0
        if resumed is not None:  # inside this task: the method as it was after that step
            warning = restore_method(resumed, method, strict_rng=not cfg.log.resume_force)
            resumed, first_step = None, resume_at.step
            if warning:
                echo(warning)
        task_start = time.time() - (task_elapsed if first_step else 0.0)
        bar = tqdm(range(first_step, steps), desc=f"task {t + 1}/{len(tasks)}", unit="step", leave=False,
                   disable=not cfg.log.progress or not dist_ctx.is_main, dynamic_ncols=True)
        for step in bar:
            batch = builder.build(sampler.plan(step), t, step, slots=shard(batch_size, dist_ctx))  # this rank's part
            stats = method.observe(batch)
            samples_seen += batch_size
            rate = (step + 1) * batch_size / max(time.time() - task_start, 1e-9)
            bar.set_postfix(loss=f"{stats['loss']:.3f}", samples_s=f"{rate:.0f}")
            if step % 10 == 0 or step == steps - 1:
                tracker.log("step", task=t + 1, step=step, samples_seen=samples_seen, **stats)
            global_step += 1
            if checkpoints.due_inside_task(global_step, step + 1, steps):
                checkpoint(Position(t, step + 1, global_step), time.time() - task_start)
        bar.close()
        method.end_task(task)
        buffer.add_task(task_indices, [class_id[e] for e in classes for _ in catalogue.task_indices([e])])
        train_seconds = time.time() - task_start
        subset = protocol.at(t, len(tasks))  # None: full sets (always after the last task)
        summary = summarize(suite.evaluate(method.eval_model(), backbone.tokenizer, device, subset), specs)
        summary.update(task=t + 1, subset_evaluation=subset is not None, classes=len(classes),
                       samples_seen=samples_seen,
                       gflops=gflops_per_sample * samples_seen, seconds=time.time() - task_start,
                       train_seconds=train_seconds, buffer_samples=len(buffer))
        results["tasks"].append(summary)
        tracker.log("eval", task=t + 1, **{k: summary[k] for k in ("A_KA", "A_ZS", "geometric_mean", "per_dataset",
                                                                "gflops")},
                    seconds=summary["seconds"])
        echo(f"task {t + 1:>3}/{len(tasks):<3}   A_KA {summary['A_KA']:6.2f}  A_ZS {summary['A_ZS']:6.2f}  "
             f"GM {summary['geometric_mean']:6.2f}  ({len(classes)} classes, {steps} steps, "
             f"{steps * batch_size / train_seconds:.0f} samples/s, {summary['seconds']:.1f}s)")
        write_results()
        checkpoint(Position(t + 1, 0, global_step))

    last = results["tasks"][-1]
    results["final"] = {k: last[k] for k in ("A_KA", "A_ZS", "geometric_mean", "per_dataset", "details")}
    results["averaged"] = average_over_tasks(results["tasks"])
    results["seconds"] = time.time() - start
    if skip_corrupt:
        report_skipped(results, [builder.skipped, pool.skipped if pool else {}, suite.skipped], echo)
    results["status"] = "complete"
    if cfg.log.checkpoint and dist_ctx.is_main:
        atomic_torch_save(run_dir / "final_model.pt", {"model": method.final_state_dict(),
                                                       "backbone": str(bb.name)})
    write_results()
    checkpoints.clear()  # complete: results.json is the record (log.checkpoint=true keeps the weights)
    tracker.log("end", seconds=results["seconds"], averaged=results["averaged"], **results["final"])
    tracker.close()
    shutdown(dist_ctx)
    return RunOutput(run_dir, results)
