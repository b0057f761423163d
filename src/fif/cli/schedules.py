"""``fif schedules plot``: draw learning-rate schedules over a whole stream, task boundaries marked.

The learning rate is a pure function of (task, step, steps per task, tasks, config)
(fif.optim.schedules), so the plot needs no data and no model: only the config.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# --all: every within-task shape, every meta rule (on the cosine shape) and every whole-stream schedule.
VARIANTS: list[tuple[str, list[str]]] = [
    ("constant", ["experiment.scheduler.name=constant"]),
    ("cosine_with_linear_warmup", ["experiment.scheduler.name=cosine_with_linear_warmup"]),
    ("warmup_stable_cooldown", ["experiment.scheduler.name=warmup_stable_cooldown"]),
    ("rsqrt", ["experiment.scheduler.name=rsqrt"]),
    *[(f"cosine_with_linear_warmup-meta_{meta}",
       ["experiment.scheduler.name=cosine_with_linear_warmup", f"experiment.scheduler.meta={meta}"])
      for meta in ("linear", "cosine", "rsqrt")],
    ("cosine_with_linear_warmup_and_recovery", ["experiment.scheduler.name=cosine_with_linear_warmup_and_recovery"]),
    ("cosine_with_linear_warmup_and_dynamic_recovery",
     ["experiment.scheduler.name=cosine_with_linear_warmup_and_dynamic_recovery"]),
    *[(f"rsqrt_with_recovery-{mode}",
       ["experiment.scheduler.name=rsqrt_with_recovery", f"experiment.scheduler.recovery_mode={mode}"])
      for mode in ("autoregressive", "continued", "recovered")],
    ("wsd", ["experiment.scheduler.name=wsd"]),
    ("wsd-task_cooldown", ["experiment.scheduler.name=wsd", "experiment.scheduler.wsd.task_cooldown=true"]),
]
SCHEDULER_KEYS = ("experiment.scheduler.name=", "experiment.scheduler.meta=", "experiment.scheduler.recovery_mode=",
                  "experiment.scheduler.wsd.task_cooldown=")


def plot_stream(schedule, steps: int, num_tasks: int, path: Path, title: str) -> Path:
    """One PNG of lr against global step, dotted lines at task boundaries (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fif.utils.io import atomic_write

    values = schedule.stream(steps, num_tasks)
    figure, axis = plt.subplots(figsize=(7.0, 2.6), dpi=90)
    axis.plot(range(len(values)), values, linewidth=1.1, color="#1f5fa8")
    for boundary in range(steps, steps * num_tasks, steps):
        axis.axvline(boundary, color="#999999", linewidth=0.6, linestyle=":")
    axis.set_xlim(0, len(values))
    axis.set_ylim(0, max(values.max(), schedule.lr) * 1.05)
    axis.set_xlabel(f"global step ({num_tasks} tasks x {steps} steps; dotted: task boundaries)", fontsize=8)
    axis.set_ylabel("learning rate", fontsize=8)
    axis.tick_params(labelsize=7)
    axis.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    axis.yaxis.get_offset_text().set_fontsize(7)
    axis.set_title(title, fontsize=8)
    figure.tight_layout()
    try:
        atomic_write(path, lambda f: figure.savefig(f, format="png"), binary=True)
    finally:
        plt.close(figure)
    return path


def _file_stem(schedule) -> str:
    """The configured schedule's file name: its name, plus the meta rule or recovery mode that shapes it."""
    if schedule.name == "rsqrt_with_recovery":
        return f"{schedule.name}-{schedule.recovery_mode}"
    if schedule.name == "wsd" and schedule.wsd_task_cooldown:
        return "wsd-task_cooldown"
    return schedule.name + (f"-meta_{schedule.meta}" if schedule.meta != "constant" else "")


def cmd_plot(args: argparse.Namespace) -> int:
    from fif.config import compose
    from fif.errors import FifError
    from fif.optim.schedules import Schedule
    from fif.config.settings import TaskSettings

    overrides = list(args.overrides)
    if args.all and any(o.startswith(SCHEDULER_KEYS) for o in overrides):
        raise FifError("--all draws every schedule; drop the experiment.scheduler.name/meta/recovery_mode/wsd."
                       "task_cooldown overrides (or drop --all to draw the configured one)")
    base = compose(overrides)  # validates every override once, with one-line errors
    task = TaskSettings.from_config(base)
    steps = args.steps if args.steps is not None else task.steps_from_samples
    num_tasks = task.num
    if steps < 1 or num_tasks < 1:
        raise FifError(f"steps per task = {steps} (--steps, or experiment.task.n_samples // batch_size) and "
                       f"experiment.task.num={num_tasks} must both be at least 1")
    variants = VARIANTS if args.all else [(None, [])]
    out = Path(args.out)
    for label, extra in variants:
        schedule = Schedule.from_config(compose([*overrides, *extra]) if extra else base)
        name = label or _file_stem(schedule)
        path = plot_stream(schedule, steps, num_tasks, out / f"{name}.png",
                           f"{schedule.describe()}; lr={schedule.lr:g}, floor={schedule.floor:g}")
        peaks = ", ".join(f"{schedule.peak(t, steps, num_tasks):.3g}" for t in range(min(num_tasks, 6)))
        more = ", ..." if num_tasks > 6 else ""
        print(f"wrote {path}  (task peaks: {peaks}{more}; last step: {schedule(num_tasks - 1, steps - 1, steps, num_tasks):.3g})")
    return 0


def add_parser(subparsers) -> None:
    """Register ``fif schedules plot``."""
    schedules = subparsers.add_parser("schedules", help="learning-rate schedules").add_subparsers(
        dest="schedules_command", required=True)
    plot = schedules.add_parser(
        "plot", help="draw the configured learning-rate schedule (or all of them) over the stream",
        description="Draw learning rate against global step for the configured schedule (or, with --all, every "
                    "schedule and meta-schedule) over experiment.task.num tasks of n_samples/batch_size steps, "
                    "task boundaries marked. Overrides use the same KEY=VALUE syntax as `fif run`.")
    plot.add_argument("--out", default="schedules", help="output folder for the PNGs (default: ./schedules)")
    plot.add_argument("--all", action="store_true", help="draw every schedule, meta-schedule and recovery mode")
    plot.add_argument("--steps", type=int, default=None,
                      help="steps per task (default: experiment.task.n_samples // experiment.task.batch_size)")
    plot.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides, e.g. experiment=fif "
                                                   "experiment.scheduler.name=wsd experiment.task.num=10")
    plot.set_defaults(func=cmd_plot)
