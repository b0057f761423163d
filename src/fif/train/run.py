"""One continual-pretraining run as an object with phases: the flow of docs/architecture.md.

    run = Run(cfg)            with run:                           (cleanup always happens)
    run.build()                   components, run folder, trackers, results
    run.zero_shot()               or run.restore(checkpoint) for a resumed run
    for t in run.remaining_tasks():
        run.train_task(t)         begin, the budget's steps, end, buffer update (checkpoints inside)
        run.evaluate(t)           zero-shot scores after the task (subsets or full sets)
        run.record(t, point)      results.json, trackers, the task-end checkpoint
    run.finish()                  final / averaged, final_model.pt, checkpoints removed

``run_experiment(cfg)`` is that sequence, with ``log.resume`` deciding between zero_shot and
restore: resume is "build, restore, continue", not a second path through the loop. Each phase
can run on its own (tests train one task without evaluating it). ``close()`` (``with run:``)
closes the trackers and leaves the process group, also when a phase raises.

Failures. ``with run:`` hands every exception of every phase to ``close()``: once the run folder
is this run's (created and locked), results.json gets ``status: failed`` with the one-line reason
(``fif.results.RunResults.fail``; Ctrl-C: "interrupted") and events.jsonl (and every tracker) an
``error`` event; the exception then goes on to the CLI, which prints it as ``error: ...``. The
folder's lock (``fif.train.run_folder.RunLock``) is held from its creation, or from the start of a
resume, to ``close()``. A training step whose loss or gradient norm is not finite is never applied
(``fif.optim.step``); the run stops on it with one line naming the task, the step and the last
good checkpoint, unless ``experiment.optimizer.skip_nonfinite_steps`` still allows skipping it.
Checkpoints are only written of applied (finite) states, and a failed run deletes none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Iterator

from tqdm import tqdm

from fif.data.samples.loader import step_batches
from fif.data.samples.mixture import MixtureSampler, batch_split
from fif.data.samples.task_batches import task_batches
from fif.errors import FifError
from fif.eval.metrics import summarize
from fif.eval.transfer import transfer_metrics
from fif.methods import TaskInfo
from fif.optim.step import nonfinite
from fif.results import EVAL_EVENT_KEYS, RunResults, FILENAME as RESULTS_FILE
from fif.runtime.device import resolve_device, seed_everything
from fif.runtime.distributed import (SINGLE, DistContext, broadcast_object, init_distributed, launch_rank, rank_device,
                                     shard, shutdown)
from fif.config.settings import RunSettings
from fif.tracking import FanOutTracker, JsonlTracker, build_tracker
from fif.tracking.base import Tracker
from fif.train.checkpoint import Checkpointer, Position, list_checkpoints
from fif.train.components import RunComponents, build_components
from fif.train.resume import ResumePlan, plan_resume, resume_dir
from fif.train.run_folder import RunLock, create_run_dir, new_run_dir
from fif.train.run_state import gather_state, position_of, restore_data, restore_method
from fif.utils.io import atomic_torch_save

if TYPE_CHECKING:  # the composed config, handed on to RunSettings.from_config
    from omegaconf import DictConfig

STEP_LOG_EVERY = 10  # optimizer steps between "step" events (and always the task's last)
SKIPPED_FILES_SHOWN = 100  # corrupt files named in results.json (most skipped first)


@dataclass
class RunOutput:
    run_dir: Path
    results: dict[str, Any]


def _silent(*args: Any, **kwargs: Any) -> None:
    return None


def failure_line(error: BaseException) -> str:
    """The one line results.json keeps for a failed run: a FifError's text, else ``TypeName: message``."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    text = str(error) if isinstance(error, FifError) else f"{type(error).__name__}: {error}"
    lines = text.strip().splitlines()
    return lines[0] if lines else type(error).__name__


def skipped_record(counters: list, cap: int = SKIPPED_FILES_SHOWN) -> dict[str, Any]:
    """results.json's skipped_corrupt (how many samples were skipped) and the files (most skipped first)."""
    per_file: dict[str, int] = {}
    for counter in counters:
        for name, count in counter.items():
            per_file[name] = per_file.get(name, 0) + count
    return {"skipped_corrupt": sum(per_file.values()),
            "skipped_corrupt_files": dict(sorted(per_file.items(), key=lambda kv: (-kv[1], kv[0]))[:cap])}


class Run:
    """The state of one run between its phases; see the module docstring for the order."""

    def __init__(self, cfg: DictConfig | RunSettings, echo: Callable[..., object] = print,
                 lock: RunLock | None = None) -> None:
        """``cfg``: the composed config (turned into settings by ``build``) or the settings themselves;
        ``lock``: the run folder's lock, already taken (a resume locks before reading its checkpoints)."""
        self.cfg, self.echo = cfg, echo
        self.settings: RunSettings | None = cfg if isinstance(cfg, RunSettings) else None
        self.lock = lock  # held by rank 0 from the run folder's creation to close()
        self.dist: DistContext = SINGLE
        self.tracker: Tracker = FanOutTracker([])
        self.parts: RunComponents | None = None
        self.run_dir: Path | None = None
        self.results: RunResults | None = None
        self.samples_seen = self.global_step = 0
        self.position = Position(0, 0, 0)  # where training continues: task, step in it, global step
        self.steps = 0
        self.gflops_per_sample = 0.0
        self.data_wait_seconds = 0.0  # the last train_task's time spent waiting for batches
        self.start = time.time()
        self._task_elapsed = 0.0  # seconds of the checkpointed task so far (resume inside a task)
        self._task_start = 0.0
        self._pending_method: dict[str, Any] | None = None  # restored once the task has begun
        self._closed = False
        self._complete_on_disk = False  # finish() saved status complete: a later error does not undo it
        self._tracking = False  # the trackers are built (else a failure's event goes to events.jsonl alone)
        self.skip_nonfinite_steps = 0  # experiment.optimizer.skip_nonfinite_steps (read by build)

    # ------------------------------------------------------------------ lifetime
    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        self.close(error)

    def close(self, error: BaseException | None = None) -> None:
        """Record ``error`` (the exception that ended the run, if any) as the run's failure, close the
        trackers, leave the process group and release the folder's lock (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            if error is not None:
                self._record_failure(error)
        finally:
            try:
                self.tracker.close()
            finally:
                try:
                    shutdown(self.dist)
                finally:
                    if self.lock is not None:
                        self.lock.release()

    def _record_failure(self, error: BaseException) -> None:
        """status failed + the reason in results.json, an ``error`` event: only in a folder this run owns."""
        owned = self.lock is not None and self.lock.held
        if not self.dist.is_main or not owned or self.run_dir is None or not self.run_dir.is_dir():
            return  # nothing of this run on disk (or another rank's job)
        line = failure_line(error)
        try:
            results = self.results
            if results is None and (self.run_dir / RESULTS_FILE).is_file():  # a resume that failed to build
                results = RunResults.read(self.run_dir)
            if results is not None and not self._complete_on_disk:
                results.fail(line)
                results.save(self.run_dir)
            tracker = self.tracker if self._tracking else JsonlTracker(self.run_dir)
            tracker.log("error", error=line, global_step=self.global_step, samples_seen=self.samples_seen)
            if not self._tracking:
                tracker.close()
        except Exception as problem:  # noqa: BLE001 - the original error matters more; say why it is not recorded
            self.echo(f"could not record the failure in {self.run_dir}: {failure_line(problem)}")

    # ------------------------------------------------------------------ phases
    def build(self, run_dir: Path | None = None, keep_config: bool = False) -> Run:
        """Seed, join the process group, build every component, then make the run folder and trackers.

        ``run_dir``: the folder of a run being resumed (None: a new one, named by ``log.*``);
        ``keep_config``: a resumed run keeps the config.yaml it started with.
        """
        if self.settings is None:  # every declared key checked, every section built: once
            self.settings = RunSettings.from_config(self.cfg)  # type: ignore[arg-type]
        settings = self.settings
        seed_everything(settings.experiment.seed)
        device = resolve_device(settings.options.device)
        self.dist = init_distributed(device)  # torchrun: one process per device, rank 0 writes and prints
        self.device = rank_device(device, self.dist)
        if not self.dist.is_main:
            self.echo = _silent
        self.skip_nonfinite_steps = settings.optimizer.skip_nonfinite_steps
        new = run_dir is None
        if new:  # log.folder a file, not writable, a run there, another process there: refused before any read
            run_dir = new_run_dir(settings, self.lock) if self.dist.is_main else None
        self.run_dir = broadcast_object(run_dir, self.dist)  # a timestamped name is rank 0's
        self.parts = build_components(settings, self.device, self.dist, self.run_dir / "method", self.echo)
        self.steps, self.gflops_per_sample = self.parts.plan.steps, self.parts.plan.gflops_per_sample
        self.checkpoints = Checkpointer(self.run_dir / "checkpoints", settings.log.keep_checkpoints,
                                        settings.log.checkpoint_every_steps, writer=self.dist.is_main)
        results = RunResults.start(settings.public_dict(),
                                   {**self.parts.protocol.record(), **self.parts.scope.record()}, self.dist.world_size)
        if self.dist.is_main:  # from here on the folder is this run's: a failure is recorded in it
            self.lock = create_run_dir(self.run_dir, settings, write_config=not keep_config, lock=self.lock,
                                       echo=self.echo, new=new)
        self.results = results
        if self.dist.is_main:
            self.tracker = build_tracker(settings, self.run_dir)
            self._tracking = True
        self._announce()
        return self

    def _announce(self) -> None:
        parts, batch_size = self._parts, self._parts.settings.batch_size
        self.tracker.log("start", run_dir=str(self.run_dir), device=str(self.device), tasks=len(parts.tasks),
                         steps_per_task=self.steps, gflops_per_sample=self.gflops_per_sample,
                         train_samples=len(parts.catalogue))
        self.echo(f"run {self.run_dir}: {len(parts.tasks)} tasks x {self.steps} steps of {batch_size} on "
                  f"{self.device} ({self.gflops_per_sample:.3f} GFLOPs per sample, {len(parts.entries)} classes, "
                  f"{len(parts.catalogue)} training samples)")
        self.tracker.log("budget", **parts.plan.as_dict())
        self.echo(parts.plan.describe())

    def zero_shot(self) -> dict[str, Any]:
        """Score the model before any update (full sets, and the fixed subsets when the run uses them)."""
        parts = self._parts
        point = self._evaluate_on()
        subset = self._evaluate_on(parts.protocol.subsets.indices) if parts.protocol.subsets else None
        self._results.record_zero_shot(point, subset)
        self.tracker.log("eval", task=0, **{k: point[k] for k in EVAL_EVENT_KEYS})
        self.echo(f"zero-shot        A_KA {point['A_KA']:6.2f}  A_ZS {point['A_ZS']:6.2f}  "
                  f"GM {point['geometric_mean']:6.2f}")
        self._write_results()
        self._checkpoint(Position(0, 0, 0))
        return point

    def restore(self, state: dict[str, Any], checkpoint: Path | None = None,
                forced: dict[str, tuple[Any, Any]] | None = None) -> None:
        """Continue exactly where ``state`` (a checkpoint) stands; the method now or once its task has begun."""
        parts = self._parts
        self.position = position_of(state)
        loop = restore_data(state, parts.buffer, parts.pool, parts.builder, parts.suite)
        self.results = RunResults(loop["results"])
        self.samples_seen, self.global_step = loop["samples_seen"], self.position.global_step
        self._check_world_size()
        self.start, self._task_elapsed = time.time() - loop["elapsed"], loop["task_elapsed"]
        self._keep_started_budget(loop["budget"])
        self.tracker.log("resume", checkpoint=str(checkpoint), **self.position.as_dict(),
                         forced={k: [a, b] for k, (a, b) in (forced or {}).items()})
        self.echo(f"resuming from {checkpoint} ({self.position.describe(len(parts.tasks))})")
        if self.position.step == 0:  # between tasks: the method as it was before begin_task
            self._restore_method(state)
        else:  # inside a task: the method as it was after that step (train_task restores it)
            self._pending_method = state

    def remaining_tasks(self) -> Iterator[int]:
        """The tasks still to train: all of them, or from the restored position on."""
        return iter(range(self.position.task, len(self._parts.tasks)))

    def train_task(self, t: int) -> float:
        """Task ``t``: begin, the budget's optimizer steps, end, buffer update. Returns its training seconds."""
        parts = self._parts
        classes = parts.tasks[t]
        task_indices = parts.catalogue.task_indices(classes)
        task = TaskInfo(t, len(parts.tasks), self.steps,
                        sample_batches=task_batches(parts.builder, task_indices, parts.settings.seed, t, self.steps,
                                                    parts.loader))
        counts = batch_split(parts.settings.batch_size, parts.settings.mixture, buffer_empty=len(parts.buffer) == 0,
                             pool_available=parts.pool is not None)
        sampler = MixtureSampler(parts.settings.seed, t, task_indices, parts.buffer.indices(), counts)
        parts.method.begin_task(task)
        first_step = 0
        if self._pending_method is not None:  # resumed inside this task
            self._restore_method(self._pending_method)
            self._pending_method, first_step = None, self.position.step
        self._task_start = time.time() - (self._task_elapsed if first_step else 0.0)
        self._steps(t, sampler, first_step)
        parts.method.end_task(task)
        parts.buffer.add_task(task_indices, self._class_labels(classes))
        return time.time() - self._task_start - self._results.within_eval_seconds(t + 1)

    def evaluate(self, t: int) -> dict[str, Any]:
        """The evaluation point after task ``t`` (fixed subsets during the stream, full sets at its end)."""
        return self._evaluate_on(self._parts.protocol.at(t, len(self._parts.tasks)))

    def record(self, t: int, point: dict[str, Any], train_seconds: float) -> dict[str, Any]:
        """Task ``t``'s point into results.json and the trackers, then the task-end checkpoint."""
        parts = self._parts
        classes = len(parts.tasks[t])
        subset = parts.protocol.at(t, len(parts.tasks)) is not None
        point = self._results.record_task(
            point, task=t + 1, subset_evaluation=subset, classes=classes, samples_seen=self.samples_seen,
            gflops=self.gflops_per_sample * self.samples_seen, seconds=time.time() - self._task_start,
            train_seconds=train_seconds, data_wait_seconds=self.data_wait_seconds,
            within_eval_seconds=self._results.within_eval_seconds(t + 1), buffer_samples=len(parts.buffer))
        self.tracker.log("eval", task=t + 1, **{k: point[k] for k in (*EVAL_EVENT_KEYS, "gflops")},
                         seconds=point["seconds"])
        rate = self.steps * parts.settings.batch_size / train_seconds
        self.echo(f"task {t + 1:>3}/{len(parts.tasks):<3}   A_KA {point['A_KA']:6.2f}  A_ZS {point['A_ZS']:6.2f}  "
                  f"GM {point['geometric_mean']:6.2f}  ({classes} classes, {self.steps} steps, "
                  f"{rate:.0f} samples/s, data wait {100 * self.data_wait_seconds / max(train_seconds, 1e-9):.0f}%, "
                  f"{point['seconds']:.1f}s)")
        self._write_results()
        self._checkpoint(Position(t + 1, 0, self.global_step))
        return point

    def finish(self) -> RunOutput:
        """Final and averaged points, status complete, final_model.pt (log.checkpoint); checkpoints removed."""
        parts, results = self._parts, self._results
        skipped = None
        if parts.settings.skip_corrupt:
            skipped = skipped_record([parts.builder.skipped, parts.suite.skipped])
            if skipped["skipped_corrupt_files"]:
                self.echo(f"skipped {skipped['skipped_corrupt']} corrupt samples in "
                          f"{len(skipped['skipped_corrupt_files'])} files (experiment.dataset.skip_corrupt=true; "
                          f"files in results.json)")
        results.finish(time.time() - self.start, skipped, transfer_metrics)
        if self._settings.log.checkpoint and self.dist.is_main:
            atomic_torch_save(self.run_dir / "final_model.pt", {"model": parts.method.final_state_dict(),
                                                                "backbone": self._settings.experiment.backbone.name})
        self._write_results()
        self._complete_on_disk = True
        self.checkpoints.clear()  # complete: results.json is the record (log.checkpoint=true keeps the weights)
        self.tracker.log("end", seconds=results.data["seconds"], averaged=results.data["averaged"],
                         **results.data["final"])
        return RunOutput(self.run_dir, results.data)

    # ------------------------------------------------------------------ inside the phases
    def _steps(self, t: int, sampler: MixtureSampler, first_step: int) -> None:
        """The optimizer steps of task ``t`` from ``first_step`` on (checkpoints where due).

        Batches come from ``parts.loader`` workers, prefetched; ``data_wait_seconds`` is the time this
        loop sat waiting for the next batch (the input pipeline's share of the task's training time).
        """
        parts, batch_size = self._parts, self._parts.settings.batch_size
        bar = tqdm(range(first_step, self.steps), desc=f"task {t + 1}/{len(parts.tasks)}", unit="step", leave=False,
                   disable=not self._settings.log.progress or not self.dist.is_main, dynamic_ncols=True)
        plans = ((step, sampler.plan(step)) for step in range(first_step, self.steps))
        candidates = {"update": sampler.task_indices, "buffer": sampler.buffer_indices}
        batches = step_batches(parts.builder, plans, t, candidates, parts.loader, slots=shard(batch_size, self.dist))
        self.data_wait_seconds = 0.0
        within = parts.protocol.within_steps(batch_size, self.steps)  # the stability-gap points of the task
        for step in bar:
            waiting = time.perf_counter()
            batch = next(batches)
            self.data_wait_seconds += time.perf_counter() - waiting
            stats = parts.method.observe(batch)
            self.samples_seen += batch_size
            rate = (step + 1) * batch_size / max(time.time() - self._task_start, 1e-9)
            bar.set_postfix(loss=f"{stats['loss']:.3f}", samples_s=f"{rate:.0f}")
            bad = nonfinite(stats)  # the update was not applied (fif.optim.step)
            skipped = self._results.count_nonfinite_step() if bad else self._results.skipped_nonfinite_steps
            if bad or step % STEP_LOG_EVERY == 0 or step == self.steps - 1:
                self.tracker.log("step", task=t + 1, step=step, samples_seen=self.samples_seen,
                                 data_wait=self.data_wait_seconds, **stats,
                                 **({"skipped_nonfinite_steps": skipped} if skipped else {}))
            if bad:
                self._nonfinite_step(t, step, bad, skipped)
            self.global_step += 1
            if step + 1 in within:  # before the checkpoint of this step: a resume never repeats it
                self._evaluate_within(t, step + 1)
            if self.checkpoints.due_inside_task(self.global_step, step + 1, self.steps):
                self._checkpoint(Position(t, step + 1, self.global_step), time.time() - self._task_start)
        bar.close()

    def _nonfinite_step(self, t: int, step: int, bad: dict[str, float], count: int) -> None:
        """A step whose update was skipped: tolerated while experiment.optimizer.skip_nonfinite_steps
        allows, else the run stops here with one line (the weights are those of the last applied step)."""
        what = ", ".join(f"{name} {value}" for name, value in bad.items())
        allowed = self.skip_nonfinite_steps
        where = f"task {t + 1}, step {step + 1}"
        if count <= allowed:
            self.echo(f"skipped the update of {where} ({what}): {count} of {allowed} allowed "
                      f"(experiment.optimizer.skip_nonfinite_steps)")
            return
        kept = list_checkpoints(self.checkpoints.folder) if self.checkpoints.enabled else []
        last = (f"the last good checkpoint is {kept[-1]}" if kept else
                "no checkpoint was written (log.keep_checkpoints=0)" if not self.checkpoints.enabled else
                "no checkpoint has been written yet")
        hint = ("set experiment.optimizer.skip_nonfinite_steps" if not allowed else
                f"raise experiment.optimizer.skip_nonfinite_steps (={allowed}, all used)")
        raise FifError(f"training diverged at {where} ({what}); {last}; lower experiment.optimizer.lr or {hint}")

    def _evaluate_within(self, t: int, done: int) -> None:
        """An evaluation after ``done`` steps of task ``t`` (evaluation.every_n_samples / gap_samples)."""
        parts, started = self._parts, time.perf_counter()
        subsets = parts.protocol.within_subsets
        point = self._evaluate_on(subsets)
        entry = self._results.record_within(
            point, task=t + 1, step=done, samples_in_task=done * parts.settings.batch_size,
            samples_seen=self.samples_seen, subset_evaluation=subsets is not None,
            seconds=time.perf_counter() - started)
        self.tracker.log("within", **{k: entry[k] for k in (*EVAL_EVENT_KEYS, "task", "step", "samples_seen")})
        self._write_results()

    def _class_labels(self, classes: list) -> list[int]:
        """A class label per training sample of ``classes`` (the buffer's class-balanced policy uses them)."""
        parts = self._parts
        class_id = {entry: k for k, entry in enumerate(dict.fromkeys(parts.entries))}
        return [class_id[e] for e in classes for _ in parts.catalogue.task_indices([e])]

    def _evaluate_on(self, subset: Any = None) -> dict[str, Any]:
        parts = self._parts
        scores = parts.suite.evaluate(parts.method.eval_model(), parts.backbone.tokenizer, self.device, subset)
        return summarize(scores, parts.specs, parts.scope.knowledge)

    def _checkpoint(self, position: Position, task_seconds: float = 0.0) -> None:
        """Write the run's state at ``position`` (fif.train.checkpoint); the newest log.keep_checkpoints stay."""
        if not self.checkpoints.enabled:
            return
        parts = self._parts
        skipped = {"builder": parts.builder.skipped, "suite": parts.suite.skipped}
        state = gather_state(position, self._settings.public_dict(), parts.method, parts.buffer, parts.pool,
                             skipped, self._results.data, self.samples_seen, time.time() - self.start, task_seconds,
                             {"steps": self.steps, "gflops_per_sample": self.gflops_per_sample})
        written = self.checkpoints.save(state, position)
        self.tracker.log("checkpoint", path=str(written.path), bytes=written.bytes, seconds=written.seconds,
                         **position.as_dict())

    def _write_results(self) -> None:
        if self.dist.is_main:
            self._results.save(self.run_dir)

    def _restore_method(self, state: dict[str, Any]) -> None:
        warning = restore_method(state, self._parts.method, strict_rng=not self._settings.log.resume_force)
        if warning:
            self.echo(warning)

    def _check_world_size(self) -> None:
        """A different process count splits every batch differently: not the same run (unless forced)."""
        started = self._results.world_size
        if started == self.dist.world_size:
            return
        if not self._settings.log.resume_force:
            raise FifError(f"run {self.run_dir} was started with {started} process(es) and resumes with "
                           f"{self.dist.world_size}: resume with the same world size (or log.resume_force=true)")
        self.echo(f"resuming a {started}-process run with {self.dist.world_size} processes (log.resume_force)")
        self._results.set_world_size(self.dist.world_size)

    def _keep_started_budget(self, budget: dict[str, Any]) -> None:
        """The budget is the one the run started with, even if a new measurement differs."""
        started = (budget["steps"], budget["gflops_per_sample"])
        if started != (self.steps, self.gflops_per_sample):
            self.echo(f"keeping the run's budget: {started[0]} steps per task, {started[1]:.4g} GFLOPs per sample "
                      f"(measured now: {self.steps}, {self.gflops_per_sample:.4g})")
            self.steps, self.gflops_per_sample = started

    @property
    def _settings(self) -> RunSettings:
        if self.settings is None:
            raise RuntimeError("Run.build() must come first")
        return self.settings

    @property
    def _parts(self) -> RunComponents:
        if self.parts is None:
            raise RuntimeError("Run.build() must come first")
        return self.parts

    @property
    def _results(self) -> RunResults:
        if self.results is None:
            raise RuntimeError("Run.build() must come first")
        return self.results


def _lock_resumed(settings: RunSettings, echo: Callable[..., object]) -> RunLock | None:
    """log.resume of an existing folder: lock it before its checkpoints are read (rank 0 of torchrun only)."""
    folder = resume_dir(settings.log)
    if folder is None or not folder.is_dir() or launch_rank() != 0:
        return None
    return RunLock.acquire(folder, echo)


def run_experiment(cfg: DictConfig | RunSettings, echo: Callable[..., object] = print) -> RunOutput:
    """Run one experiment end to end (or continue it, ``log.resume``) and return its folder and results."""
    settings = cfg if isinstance(cfg, RunSettings) else RunSettings.from_config(cfg)  # checked once, first
    lock = _lock_resumed(settings, echo)
    try:
        resume: ResumePlan | None = plan_resume(settings, echo)  # log.resume: the run to continue (None: a new run)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    if resume is not None and resume.finished is not None:
        if lock is not None:
            lock.release()
        echo(f"run {resume.run_dir} is already complete (results.json): nothing to resume")
        return RunOutput(resume.run_dir, resume.finished)
    with Run(settings, echo, lock) as run:
        state = resume.state if resume is not None else None
        run.build(resume.run_dir if resume is not None else None, keep_config=state is not None)
        if state is not None:
            resume.state = None  # dropped once restored (a checkpoint can be GBs)
            run.restore(state, resume.checkpoint, resume.forced)
            del state
        else:
            run.zero_shot()
        if settings.evaluation.zero_shot_only:  # the reference's zeroshot_only: score, train nothing
            return run.finish()
        for t in run.remaining_tasks():
            train_seconds = run.train_task(t)
            run.record(t, run.evaluate(t), train_seconds)
        return run.finish()
