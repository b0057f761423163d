"""Learning-rate schedules within a task and across the stream (meta-schedules).

The learning rate is a pure function of (task t, step n in the task, steps per task S, number of
tasks T, config): a resumed run gets exactly the same value and ``fif schedules plot`` can draw
the whole stream without training. Notation: lr0 = ``experiment.optimizer.lr``, floor =
lr0 * ``min_lr_ratio`` (the reference's ``cosine_lr_mul``, 1e-3), W = warmup steps (``warmup`` < 1:
ceil(warmup * S); else that many steps), C = cooldown steps (likewise; never more than S - W).

Within a task (``experiment.scheduler.name``), with p the task's peak (lr0 unless ``meta`` says):
    constant                  n < W: p (n+1)/W, then p
    cosine_with_linear_warmup n < W: p (n+1)/W, then floor + (1 + cos(pi (n-W+1)/(S-W)))/2 (p - floor)
    warmup_stable_cooldown    warmup, p, then the last C steps cool from p to floor (linear or 1-sqrt)
    rsqrt                     warmup, then floor + sqrt(W/n) (p - floor); the last C steps scale that
                              value by (C - k - 1)/C (k = step in the cooldown), reaching 0 (reference)

Across tasks (``experiment.scheduler.meta``): the peak p_t of task t (t from 0)
    constant  p_t = lr0 (re-warmed every task: the reference's default protocol)
    linear    p_t = floor + (1 - t/T) (lr0 - floor)
    cosine    p_t = floor + (1 + cos(pi t/T))/2 (lr0 - floor)
    rsqrt     p_t = floor + (lr0 - floor) / sqrt(t + 1)

Whole-stream schedules (``name``; ``meta`` must stay constant), the reference's definitions:
    cosine_with_linear_warmup_and_recovery (autoregressive): p_0 = lr0, for t >= 1
        p_t = floor + (1 + cos(pi e/E))/2 (lr0 - floor), e = t (S-W) + 1, E = (t+1)(S-W);
        then cosine_with_linear_warmup with peak p_t.
    cosine_with_linear_warmup_and_dynamic_recovery: warmup to p_t as above; after the warmup the
        plain cosine_with_linear_warmup of a (t+1) S-step schedule (its warmup ceil(warmup (t+1) S))
        at global step t S + n: a global cosine stretched over the tasks seen so far.
    rsqrt_with_recovery: base_t = floor + v_t (lr0 - floor), v_0 = 1;
        autoregressive v_t = sqrt((t+1) W) / sqrt(t S + W); continued v_t = sqrt(W) / sqrt(t (S-C) - (t-1) W);
        then rsqrt with peak base_t. recovered: base stays lr0 and the within-task multiplier is
        sqrt(W / (n + t (S-C-W))); for t >= 1 the warmup rises to the multiplier the reference
        computes at n = t (S-C-W), i.e. sqrt(W / (2 t (S-C-W))) (kept as the reference has it).
    wsd (warmup-stable-decay across the stream; the reference lists it but never implemented it):
        one warmup of W steps at the start of the stream, lr0 until the last D steps of the
        stream (``wsd.decay``: a fraction of all steps < 1, or a number of final tasks), which
        cool from lr0 to floor (``cooldown_shape``). With ``wsd.task_cooldown`` every task also
        ends with a C-step cooldown to floor and the next task re-warms over W steps (the lr is
        the smaller of the stream value and that per-task shape), so the model evaluated after
        each task is an annealed one, as in "infinite" learning-rate schedules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fif.errors import FifError
from fif.config.settings import SCHEDULER_KEY as KEY
from fif.config.blocks import WITHIN_TASK
from fif.config.settings import SchedulerSettings


def warmup_steps(total_steps: int, warmup: float | int) -> int:
    """Warmup given as a fraction of the task (< 1) or as a number of steps (>= 1)."""
    if warmup < 1:
        return math.ceil(warmup * total_steps)
    return min(int(warmup), total_steps)


def cooldown_steps(total_steps: int, cooldown: float | int, warmup: int) -> int:
    """Cooldown steps, fraction (< 1) or steps (>= 1); the cooldown never eats into the warmup."""
    return max(0, min(warmup_steps(total_steps, cooldown), total_steps - warmup))


def _cool(start: float, end: float, fraction: float, shape: str) -> float:
    """From ``start`` (fraction 0) to ``end`` (fraction 1): linear or 1-sqrt (Hägele et al. 2024)."""
    if shape == "1-sqrt":
        return end + (start - end) * (1 - math.sqrt(fraction))
    return start + (end - start) * fraction


def _cosine(n: int, steps: int, w: int, peak: float, floor: float) -> float:
    if n < w:
        return peak * (n + 1) / w
    progress = (n - w + 1) / max(1, steps - w)
    return floor + (1 + math.cos(math.pi * progress)) / 2 * (peak - floor)


def within_task(name: str, n: int, steps: int, w: int, c: int, peak: float, floor: float,
                cooldown_shape: str = "linear") -> float:
    """One task's shape at step ``n`` of ``steps``, rising to ``peak`` and decaying towards ``floor``."""
    if name == "cosine_with_linear_warmup":
        return _cosine(n, steps, w, peak, floor)
    if name == "rsqrt":
        return _rsqrt(n, steps, max(w, 1), c, peak, peak, floor, lambda k: math.sqrt(max(w, 1) / k))
    if n < w:
        return peak * (n + 1) / w
    if name == "warmup_stable_cooldown" and c and n >= steps - c:
        return _cool(peak, floor, (n - (steps - c) + 1) / c, cooldown_shape)
    return peak  # constant, or warmup_stable_cooldown before its cooldown


def _rsqrt(n: int, steps: int, w: int, c: int, warm_to: float, base: float, floor: float, multiplier) -> float:
    """Warmup to ``warm_to``, then floor + multiplier(n) (base - floor), linearly to 0 over the last c steps."""
    if n < w:
        return warm_to * (n + 1) / w
    value = floor + multiplier(n) * (base - floor)
    if c and n >= steps - c:
        return value * (c - (n - (steps - c)) - 1) / c
    return value


def learning_rate(name: str, step: int, total_steps: int, peak_lr: float, warmup: float | int = 0.1,
                  min_lr_ratio: float = 1e-3, cooldown: float | int = 0.1, cooldown_shape: str = "linear") -> float:
    """The learning rate at ``step`` (0-based) of a single task of ``total_steps`` steps."""
    if name not in WITHIN_TASK:
        raise FifError(f"{KEY}.name={name!r} is not a within-task schedule (expected one of: {', '.join(WITHIN_TASK)})")
    w = warmup_steps(total_steps, warmup)
    c = cooldown_steps(total_steps, cooldown, max(w, 1) if name == "rsqrt" else w)
    return within_task(name, step, total_steps, w, c, peak_lr, peak_lr * min_lr_ratio, cooldown_shape)


@dataclass(frozen=True)
class Schedule(SchedulerSettings):
    """A validated ``experiment.scheduler`` block (fif.config.settings.SchedulerSettings) that computes the
    learning rate: call it as ``schedule(task, step, steps, num_tasks)``."""

    # ------------------------------------------------------------------ values
    @property
    def floor(self) -> float:
        return self.lr * self.min_lr_ratio

    def steps(self, steps: int) -> tuple[int, int]:
        """(W, C) for tasks of ``steps`` steps (rsqrt-type schedules need W >= 1: sqrt(W/n))."""
        w = warmup_steps(steps, self.warmup)
        if self.name in ("rsqrt", "rsqrt_with_recovery"):
            w = max(w, 1)
        return w, cooldown_steps(steps, self.cooldown, w)

    def peak(self, task: int, steps: int, num_tasks: int) -> float:
        """The value task ``task``'s warmup rises to (for wsd: the stream's value at the task's start)."""
        lr0, floor = self.lr, self.floor
        w, c = self.steps(steps)
        if self.name in WITHIN_TASK:
            if self.meta == "constant":
                return lr0
            position = task / max(1, num_tasks)
            factor = {"linear": 1 - position, "cosine": (1 + math.cos(math.pi * position)) / 2,
                      "rsqrt": 1 / math.sqrt(task + 1)}[self.meta]
            return floor + factor * (lr0 - floor)
        if task == 0:
            return lr0
        if self.name.startswith("cosine_with_linear_warmup_and"):
            span = max(1, steps - w)
            progress = (task * span + 1) / ((task + 1) * span)
            return floor + (1 + math.cos(math.pi * progress)) / 2 * (lr0 - floor)
        if self.name == "rsqrt_with_recovery":
            if self.recovery_mode == "autoregressive":
                v = math.sqrt((task + 1) * w) / math.sqrt(task * steps + w)
            elif self.recovery_mode == "continued":
                v = math.sqrt(w) / math.sqrt(task * (steps - c) - (task - 1) * w)
            else:  # recovered: the reference evaluates its multiplier at n = t (S-C-W), offset t (S-C-W) included
                v = math.sqrt(w / max(2 * task * (steps - c - w), w))
            return floor + v * (lr0 - floor)
        return self._wsd_stream(task * steps, steps, num_tasks)  # wsd

    def __call__(self, task: int, step: int, steps: int, num_tasks: int) -> float:
        """The learning rate at step ``step`` (0-based) of task ``task`` (0-based)."""
        if steps < 1 or not 0 <= step < steps or not 0 <= task < max(1, num_tasks):
            raise FifError(f"learning rate asked for task {task}, step {step} of a stream of {num_tasks} tasks "
                           f"x {steps} steps")
        w, c = self.steps(steps)
        floor, peak = self.floor, self.peak(task, steps, num_tasks)
        if self.name in WITHIN_TASK:
            return within_task(self.name, step, steps, w, c, peak, floor, self.cooldown_shape)
        if self.name == "cosine_with_linear_warmup_and_recovery":
            return _cosine(step, steps, w, peak, floor)
        if self.name == "cosine_with_linear_warmup_and_dynamic_recovery":
            if step < w:
                return peak * (step + 1) / w
            total = (task + 1) * steps
            return _cosine(task * steps + step, total, warmup_steps(total, self.warmup), self.lr, floor)
        if self.name == "rsqrt_with_recovery":
            if self.recovery_mode == "recovered":
                offset = task * (steps - c - w)
                return _rsqrt(step, steps, w, c, peak, self.lr, floor, lambda k: math.sqrt(w / (k + offset)))
            return _rsqrt(step, steps, w, c, peak, peak, floor, lambda k: math.sqrt(w / k))
        value = self._wsd_stream(task * steps + step, steps, num_tasks)
        if self.wsd_task_cooldown:
            value = min(value, within_task("warmup_stable_cooldown", step, steps, w, c, self.lr, floor,
                                           self.cooldown_shape))
        return value

    def _wsd_stream(self, g: int, steps: int, num_tasks: int) -> float:
        """The stream-level warmup-stable-decay value at global step ``g``."""
        total = steps * max(1, num_tasks)
        w = warmup_steps(steps, self.warmup)
        decay = math.ceil(self.wsd_decay * total) if self.wsd_decay < 1 else int(self.wsd_decay) * steps
        decay = max(0, min(decay, total - w))
        if g < w:
            return self.lr * (g + 1) / w
        if decay and g >= total - decay:
            return _cool(self.lr, self.floor, (g - (total - decay) + 1) / decay, self.cooldown_shape)
        return self.lr

    def stream(self, steps: int, num_tasks: int) -> np.ndarray:
        """Every value of a stream of ``num_tasks`` tasks x ``steps`` steps, in order (plots, tests)."""
        return np.array([self(t, n, steps, num_tasks) for t in range(num_tasks) for n in range(steps)])

    def describe(self) -> str:
        """A one-line summary of the options that shape this schedule (plot titles)."""
        parts = [self.name]
        if self.name in WITHIN_TASK and self.meta != "constant":
            parts.append(f"meta={self.meta}")
        if self.name == "rsqrt_with_recovery":
            parts.append(f"recovery_mode={self.recovery_mode}")
        parts.append(f"warmup={self.warmup:g}")
        if self.name in ("warmup_stable_cooldown", "rsqrt", "rsqrt_with_recovery") or self.wsd_task_cooldown:
            parts.append(f"cooldown={self.cooldown:g}")
        if self.name == "wsd":
            parts.append(f"decay={self.wsd_decay:g}" + (", task_cooldown" if self.wsd_task_cooldown else ""))
        return ", ".join(parts)
