"""Learning-rate schedules and meta-schedules at their key points, and `fif schedules plot`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fif.config.settings import RunSettings
from fif.config import compose
from fif.errors import FifError
from fif.optim.schedules import Schedule, learning_rate
from fif.config.blocks import SCHEDULES

LR, RATIO = 1e-4, 1e-3
FLOOR = LR * RATIO
S, T = 100, 5  # steps per task, tasks
W, C = 10, 10  # ceil(0.1 * 100)


def make(name: str, **options) -> Schedule:
    return Schedule(**{"name": name, "lr": LR, "min_lr_ratio": RATIO, **options})


def cosine_value(n: int, steps: int, w: int, peak: float) -> float:
    """The reference's cosine_with_linear_warmup (from the formula, for comparison)."""
    if n < w:
        return peak * (n + 1) / w
    return FLOOR + (1 + math.cos(math.pi * (n - w + 1) / (steps - w))) / 2 * (peak - FLOOR)


# ----------------------------------------------------------------------------- within a task
def test_cosine_with_linear_warmup_key_points():
    s = make("cosine_with_linear_warmup")
    assert s(0, 0, S, T) == pytest.approx(LR / W)
    assert s(0, W - 1, S, T) == pytest.approx(LR)  # end of warmup: the peak
    assert s(0, W, S, T) == pytest.approx(FLOOR + (1 + math.cos(math.pi / (S - W))) / 2 * (LR - FLOOR))
    assert s(0, S - 1, S, T) == pytest.approx(FLOOR)  # end of task: the floor
    decay = [s(0, n, S, T) for n in range(W - 1, S)]
    assert all(a > b for a, b in zip(decay, decay[1:]))
    assert [s(3, n, S, T) for n in range(S)] == [s(0, n, S, T) for n in range(S)]  # re-warmed every task


def test_warmup_as_steps_and_the_single_task_function():
    s = make("cosine_with_linear_warmup", warmup=4)
    assert s(0, 3, S, T) == pytest.approx(LR) and s(0, 0, S, T) == pytest.approx(LR / 4)
    for n in (0, 3, 50, 99):
        assert learning_rate("cosine_with_linear_warmup", n, S, LR, warmup=4, min_lr_ratio=RATIO) == s(0, n, S, T)


def test_constant_warms_up_then_holds():
    s = make("constant")
    assert s(0, 0, S, T) == pytest.approx(LR / W)
    assert [s(t, n, S, T) for t in range(T) for n in range(W - 1, S)] == pytest.approx([LR] * T * (S - W + 1))


@pytest.mark.parametrize("shape", ["linear", "1-sqrt"])
def test_warmup_stable_cooldown(shape):
    s = make("warmup_stable_cooldown", cooldown=0.1, cooldown_shape=shape)
    assert s(0, W - 1, S, T) == pytest.approx(LR)
    assert all(s(0, n, S, T) == LR for n in range(W, S - C))  # stable
    assert s(0, S - 1, S, T) == pytest.approx(FLOOR)  # cooled to the floor at the task's end
    half = s(0, S - C + C // 2 - 1, S, T)  # half-way through the cooldown
    expected = LR + (FLOOR - LR) * 0.5 if shape == "linear" else FLOOR + (LR - FLOOR) * (1 - math.sqrt(0.5))
    assert half == pytest.approx(expected)
    cool = [s(0, n, S, T) for n in range(S - C - 1, S)]
    assert all(a > b for a, b in zip(cool, cool[1:]))


def test_rsqrt_key_points():
    s = make("rsqrt")
    assert s(0, W - 1, S, T) == pytest.approx(LR)
    assert s(0, W, S, T) == pytest.approx(LR)  # sqrt(W/W) = 1: continuous after the warmup
    assert s(0, 4 * W, S, T) == pytest.approx(FLOOR + 0.5 * (LR - FLOOR))  # sqrt(W / 4W) = 1/2
    before = FLOOR + math.sqrt(W / (S - C)) * (LR - FLOOR)
    assert s(0, S - C, S, T) == pytest.approx(before * (C - 1) / C)  # first cooldown step
    assert s(0, S - 1, S, T) == 0.0  # the reference's cooldown ends at 0
    assert make("rsqrt", warmup=0)(0, 0, S, T) == pytest.approx(LR)  # warmup 0 is taken as one step


# ----------------------------------------------------------------------------- across tasks (meta)
@pytest.mark.parametrize("meta, factor", [
    ("linear", lambda t: 1 - t / T),
    ("cosine", lambda t: (1 + math.cos(math.pi * t / T)) / 2),
    ("rsqrt", lambda t: 1 / math.sqrt(t + 1)),
])
def test_meta_schedule_sets_each_tasks_peak(meta, factor):
    s = make("cosine_with_linear_warmup", meta=meta)
    peaks = []
    for t in range(T):
        peak = FLOOR + factor(t) * (LR - FLOOR)
        assert s.peak(t, S, T) == pytest.approx(peak)
        assert s(t, W - 1, S, T) == pytest.approx(peak)  # the warmup reaches it
        assert s(t, S - 1, S, T) == pytest.approx(FLOOR)  # and the task still decays to the floor
        assert s(t, 50, S, T) == pytest.approx(cosine_value(50, S, W, peak))
        peaks.append(peak)
    assert peaks[0] == pytest.approx(LR) and all(a > b for a, b in zip(peaks, peaks[1:]))


# ----------------------------------------------------------------------------- the reference's stream schedules
def test_cosine_with_recovery_peaks_follow_the_autoregressive_cosine():
    s = make("cosine_with_linear_warmup_and_recovery")
    assert s.peak(0, S, T) == LR
    for t in range(1, T):
        e, es = t * (S - W) + 1, (t + 1) * (S - W)
        peak = FLOOR + (1 + math.cos(math.pi * e / es)) / 2 * (LR - FLOOR)
        assert s.peak(t, S, T) == pytest.approx(peak)
        assert s(t, 0, S, T) == pytest.approx(peak / W)
        assert s(t, W - 1, S, T) == pytest.approx(peak)
        assert s(t, 60, S, T) == pytest.approx(cosine_value(60, S, W, peak))
        assert s(t, S - 1, S, T) == pytest.approx(FLOOR)
    assert s.peak(1, S, T) == pytest.approx(FLOOR + (1 + math.cos(math.pi * 91 / 180)) / 2 * (LR - FLOOR))
    peaks = [s.peak(t, S, T) for t in range(T)]
    assert all(a > b for a, b in zip(peaks, peaks[1:]))


def test_dynamic_recovery_follows_a_global_cosine_after_each_warmup():
    s = make("cosine_with_linear_warmup_and_dynamic_recovery")
    recovery = make("cosine_with_linear_warmup_and_recovery")
    assert [s(0, n, S, T) for n in range(S)] == [recovery(0, n, S, T) for n in range(S)]
    for t in range(1, T):
        total = (t + 1) * S
        assert s(t, W - 1, S, T) == pytest.approx(recovery.peak(t, S, T))  # warmup to the recovered peak
        for n in (W, 50, S - 1):
            assert s(t, n, S, T) == pytest.approx(cosine_value(t * S + n, total, math.ceil(0.1 * total), LR))
        assert s(t, S - 1, S, T) == pytest.approx(FLOOR)  # the stretched cosine ends with the task


@pytest.mark.parametrize("mode", ["autoregressive", "continued", "recovered"])
def test_rsqrt_with_recovery_modes(mode):
    s = make("rsqrt_with_recovery", recovery_mode=mode)
    assert [s(0, n, S, T) for n in range(S)] == [make("rsqrt")(0, n, S, T) for n in range(S)]  # task 0: rsqrt
    for t in range(1, T):
        if mode == "autoregressive":
            v = math.sqrt((t + 1) * W) / math.sqrt(t * S + W)
        elif mode == "continued":
            v = math.sqrt(W) / math.sqrt(t * (S - C) - (t - 1) * W)
        else:
            v = math.sqrt(W / (2 * t * (S - C - W)))
        target = FLOOR + v * (LR - FLOOR)
        assert s(t, W - 1, S, T) == pytest.approx(target)  # warmup peak of task t
        if mode == "recovered":  # base stays lr0, the multiplier is offset by t (S - C - W)
            expected = FLOOR + math.sqrt(W / (50 + t * (S - C - W))) * (LR - FLOOR)
        else:
            expected = FLOOR + math.sqrt(W / 50) * (target - FLOOR)
        assert s(t, 50, S, T) == pytest.approx(expected)
        assert s(t, S - 1, S, T) == 0.0
    peaks = [s(t, W - 1, S, T) for t in range(T)]
    assert all(a > b for a, b in zip(peaks, peaks[1:]))


def test_wsd_across_the_stream():
    s = make("wsd")
    values = s.stream(S, T)
    total, decay = S * T, math.ceil(0.2 * S * T)
    assert values[0] == pytest.approx(LR / W) and values[W - 1] == pytest.approx(LR)
    assert np.all(values[W:total - decay] == LR)  # one warmup only: the next tasks start at the peak
    assert s(1, 0, S, T) == LR
    assert values[-1] == pytest.approx(FLOOR)
    assert values[total - decay] == pytest.approx(LR + (FLOOR - LR) / decay)
    assert np.all(np.diff(values[W - 1:]) <= 0)  # never rises after the warmup
    by_tasks = make("wsd", wsd_decay=2).stream(S, T)  # decay >= 1: number of final tasks
    assert np.all(by_tasks[W:(T - 2) * S] == LR) and by_tasks[(T - 2) * S] < LR


def test_wsd_with_a_cooldown_at_every_task_end():
    s = make("wsd", wsd_task_cooldown=True)
    plain = make("wsd")
    for t in range(T):
        assert s(t, S - 1, S, T) == pytest.approx(FLOOR)  # every task ends annealed
        assert s(t, 0, S, T) == pytest.approx(min(LR / W, plain(t, 0, S, T)))  # and the next re-warms
        assert s(t, 50, S, T) == plain(t, 50, S, T)
    assert np.all(s.stream(S, T) <= plain.stream(S, T) + 1e-18)


@pytest.mark.parametrize("name", SCHEDULES)
def test_every_schedule_is_a_pure_function_within_bounds(name):
    s = make(name)
    values = s.stream(S, T)
    assert values.shape == (S * T,) and np.all(values >= 0) and np.all(values <= LR * (1 + 1e-12))
    again = Schedule.from_config(compose(["experiment.optimizer.lr=1e-4", f"experiment.scheduler.name={name}"]))
    assert np.array_equal(again.stream(S, T), values)  # from the config: the same values
    assert again(T - 1, 37, S, T) == values[(T - 1) * S + 37]  # any point alone equals the stream's


# ----------------------------------------------------------------------------- config and errors
def test_reference_alias_cosine_lr_mul():
    cfg = compose(["experiment.scheduler.cosine_lr_mul=0.01"])
    assert Schedule.from_config(cfg).min_lr_ratio == 0.01
    assert Schedule.from_config(compose([])).min_lr_ratio == 1e-3


@pytest.mark.parametrize("options, culprit", [
    ({"name": "cosine"}, "experiment.scheduler.name='cosine'"),
    ({"meta": "exponential"}, "experiment.scheduler.meta='exponential'"),
    ({"name": "wsd", "meta": "cosine"}, "experiment.scheduler.meta='cosine' applies to the within-task"),
    ({"name": "cosine_with_linear_warmup_and_recovery", "recovery_mode": "continued"}, "recovery_mode='continued'"),
    ({"recovery_mode": "sideways"}, "autoregressive, continued, recovered"),
    ({"cooldown_shape": "cubic"}, "linear, 1-sqrt"),
    ({"warmup": -1}, "experiment.scheduler.warmup=-1"),
    ({"min_lr_ratio": 2.0}, "experiment.scheduler.min_lr_ratio=2.0"),
])
def test_bad_scheduler_config_names_the_key(options, culprit):
    with pytest.raises(FifError) as error:
        make(**{"name": "cosine_with_linear_warmup", **options})
    assert culprit in str(error.value)
    assert "\n" not in str(error.value)


def test_method_uses_the_stream_schedule():
    """GradientMethod.current_lr is the schedule at (task, step): what a resumed run recomputes."""
    from fif.methods import TaskInfo, build_method
    from fif.models.backbone import build_backbone
    import torch

    cfg = compose(["experiment.scheduler.name=rsqrt_with_recovery", "experiment.optimizer.lr=1e-3"])
    method = build_method(RunSettings.from_config(cfg), build_backbone("mini_clip").model, torch.device("cpu"))
    method.begin_task(TaskInfo(3, 6, 40))
    method.step_in_task = 17
    expected = Schedule.from_config(cfg)(3, 17, 40, 6)
    assert method.current_lr() == expected
    assert expected == pytest.approx(1e-6 + math.sqrt(4 / 17) * (1e-6 + math.sqrt(16 / 124) * (1e-3 - 1e-6) - 1e-6))


# ----------------------------------------------------------------------------- fif schedules plot
def test_plot_command_writes_pngs(tmp_path, capsys):
    from matplotlib.image import imread

    from fif.cli import main

    assert main(["schedules", "plot", "--out", str(tmp_path), "experiment.scheduler.name=wsd",
                 "experiment.task.num=4", "--steps", "50"]) == 0
    image = imread(tmp_path / "wsd.png")
    assert image.shape[:2] == (234, 630) and image[..., :3].std() > 0.05  # drawn, not blank
    assert "task peaks" in capsys.readouterr().out
    assert main(["schedules", "plot", "--all", "--out", str(tmp_path / "all"), "experiment.task.num=3",
                 "--steps", "30"]) == 0
    files = sorted(p.name for p in (tmp_path / "all").glob("*.png"))
    assert len(files) == 14 and "rsqrt_with_recovery-recovered.png" in files
    assert all(2_000 < (tmp_path / "all" / f).stat().st_size < 100_000 for f in files)


def test_plot_command_bad_input_is_one_line(tmp_path, capsys):
    from fif.cli import main

    assert main(["schedules", "plot", "--out", str(tmp_path), "experiment.scheduler.name=nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: experiment.scheduler.name='nope'")
    assert not list(tmp_path.glob("*.png"))
