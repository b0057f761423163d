"""Merging methods on the mini benchmark: the evaluated weights are the formula applied to the task models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import fif.train.components as components
from conftest import train_tasks
from fif.config.settings import RunSettings
from fif.train.run import run_experiment
from fif.config import compose
from fif.errors import FifError
from fif.methods import build_method
from fif.models.backbone import build_backbone

SHORT = ["experiment.task.n_samples=256", "log.progress=false"]
State = dict[str, torch.Tensor]


def _cpu(model: torch.nn.Module) -> State:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def run_recorded(monkeypatch, tmp_path: Path, method: str, tasks: int, *overrides: str, whole: bool = False) -> dict:
    """Train ``tasks`` tasks; record the weights each task starts from ("init") and ends with ("theta").

    ``whole``: a whole run (evaluations, results.json); otherwise the training phases alone, which is
    all the merge formulas need."""
    record: dict = {"init": [], "theta": [], "eval": []}
    real_build = components.build_method

    def build(cfg, model, device, **context):
        m = real_build(cfg, model, device, **context)
        begin, end = m.begin_task, m.end_task

        def begin_task(task):
            record["init"].append(_cpu(m.model))
            begin(task)

        def end_task(task):
            record["theta"].append(_cpu(m.model))
            end(task)
            record["eval"].append(_cpu(m.eval_model()))

        m.begin_task, m.end_task = begin_task, end_task
        record["method"] = m
        return m

    monkeypatch.setattr(components, "build_method", build)
    cfg = compose([f"log.folder={tmp_path}", f"log.name={method}", f"continual.method={method}",
                   f"experiment.task.num={tasks}", *SHORT, *overrides])
    if whole:
        record["results"] = run_experiment(cfg, echo=lambda *_: None).results
    else:
        train_tasks(cfg)
    record["run_dir"] = tmp_path / method
    return record


def assert_state(actual: State, expected: State, exact: bool = False) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        if exact:
            assert torch.equal(actual[key], expected[key]), key
        else:
            assert torch.allclose(actual[key], expected[key], atol=1e-6, rtol=0), key


def combine(states: list[State], weights: list[float]) -> State:
    return {k: sum(w * s[k] for w, s in zip(weights, states)) for k in states[0]}


def test_ema_paint_trains_from_and_evaluates_the_running_average(monkeypatch, tmp_path, small):
    rec = run_recorded(monkeypatch, tmp_path, "ema_paint", 2, *small, whole=True)
    theta0, (theta1, theta2) = rec["init"][0], rec["theta"]
    m1 = {k: (theta1[k] + theta0[k]) / 2 for k in theta0}
    m2 = {k: (theta2[k] + m1[k]) / 2 for k in theta0}
    assert_state(rec["init"][1], m1, exact=True)  # task 2 starts from m_1
    assert_state(rec["eval"][0], m1, exact=True)
    assert_state(_cpu(rec["method"].eval_model()), m2, exact=True)  # final eval == (theta_2 + m_1) / 2
    assert not torch.equal(theta2["visual.proj"], m2["visual.proj"])
    assert rec["results"]["status"] == "complete" and len(rec["results"]["tasks"]) == 2


def test_ft_paint_merges_each_task_model_with_theta0(monkeypatch, tmp_path, mini_root):
    rec = run_recorded(monkeypatch, tmp_path, "ft_paint", 2)
    theta0, (theta1, theta2) = rec["init"][0], rec["theta"]
    assert_state(rec["init"][1], {k: (theta1[k] + theta0[k]) / 2 for k in theta0}, exact=True)
    assert_state(_cpu(rec["method"].eval_model()), {k: (theta2[k] + theta0[k]) / 2 for k in theta0}, exact=True)


def test_zs_paint_trains_every_task_from_theta0_and_evaluates_the_mean(monkeypatch, tmp_path, mini_root):
    rec = run_recorded(monkeypatch, tmp_path, "zs_paint", 3)
    theta0, thetas = rec["init"][0], rec["theta"]
    for init in rec["init"]:
        assert_state(init, theta0, exact=True)
    assert_state(rec["eval"][1], combine(thetas[:2], [0.5, 0.5]))
    assert_state(_cpu(rec["method"].eval_model()), combine(thetas, [1 / 3] * 3))
    files = sorted((rec["run_dir"] / "method").glob("task_*.safetensors"))
    assert [f.name for f in files] == ["task_0001.safetensors", "task_0002.safetensors", "task_0003.safetensors"]
    for path, theta in zip(files, thetas):
        assert_state(load_file(str(path)), theta, exact=True)
    # resume: a fresh method given the state dict evaluates the same merge and knows the checkpoints
    method = rec["method"]
    fresh = build_method(RunSettings.from_config(compose(["continual.method=zs_paint"])),
                         build_backbone("mini_clip").model, torch.device("cpu"))
    fresh.load_state_dict(method.state_dict())
    assert_state(_cpu(fresh.eval_model()), _cpu(method.eval_model()), exact=True)
    assert fresh.checkpoints == [str(f) for f in files] and fresh.tasks_done == 3
    assert_state(fresh.theta0, theta0, exact=True)
    files[0].unlink()
    with pytest.raises(FifError, match="task_0001.safetensors is missing"):
        fresh.load_state_dict(method.state_dict())


def test_offline_merge_continues_finetuning_and_evaluates_a_weighted_merge(monkeypatch, tmp_path, mini_root):
    rec = run_recorded(monkeypatch, tmp_path, "offline_merge", 3,
                       "continual.offline_merge.backbone_merge.weighting=linear",
                       "continual.offline_merge.head_merge.method=task_arithmetic")
    theta0, thetas = rec["init"][0], rec["theta"]
    for t in (1, 2):
        assert_state(rec["init"][t], thetas[t - 1], exact=True)  # plain continual finetuning
    merged = _cpu(rec["method"].eval_model())
    backbone = combine(thetas, [1 / 6, 2 / 6, 3 / 6])
    head = {k: theta0[k] + sum(thetas[i][k] - theta0[k] for i in range(3)) / 3 for k in theta0}
    for key in theta0:
        expected = backbone if key.startswith("visual.") else head  # the default split: the reference's towers
        assert torch.allclose(merged[key], expected[key], atol=1e-6, rtol=0), key
    assert not torch.equal(merged["visual.proj"], thetas[-1]["visual.proj"])


def test_merge_grid_cell_merge_of_all_init_latest_eval(monkeypatch, tmp_path, mini_root):
    rec = run_recorded(monkeypatch, tmp_path, "merge_grid", 3, "continual.merge_grid.init=merge_of_all",
                       "continual.merge_grid.eval=latest", "continual.merge_grid.include_zero_shot=true")
    theta0, thetas = rec["init"][0], rec["theta"]
    assert_state(rec["init"][1], combine([theta0, thetas[0]], [0.5, 0.5]), exact=True)
    assert_state(rec["init"][2], combine([theta0, *thetas[:2]], [1 / 3] * 3))
    for evaluated, theta in zip(rec["eval"], thetas):
        assert_state(evaluated, theta, exact=True)


@pytest.mark.parametrize("method, overrides, start", [
    ("zs_paint", ("continual.zs_paint.eval=unrolled",), "zero_shot"),  # the reference's zs_paint
    ("merge_grid", ("continual.merge_grid.init=zero_shot", "continual.merge_grid.unrolled_start=first_task"),
     "first_task"),  # the reference's double_merge_zs_unrolled
])
def test_unrolled_merge_starts_at_theta0_or_at_the_first_task_model(monkeypatch, tmp_path, mini_root, method,
                                                                    overrides, start):
    rec = run_recorded(monkeypatch, tmp_path, method, 2, *overrides)
    theta0, (theta1, theta2) = rec["init"][0], rec["theta"]
    assert_state(rec["init"][1], theta0, exact=True)  # every task trains from theta_0
    m1 = theta1 if start == "first_task" else {k: (theta1[k] + theta0[k]) / 2 for k in theta0}
    assert_state(rec["eval"][0], m1, exact=True)
    assert_state(rec["eval"][1], {k: (theta2[k] + m1[k]) / 2 for k in theta0}, exact=True)


def test_reference_offline_merge_trains_from_theta0_and_keeps_a_lone_task_model(monkeypatch, tmp_path, mini_root):
    rec = run_recorded(monkeypatch, tmp_path, "offline_merge", 2, "continual.offline_merge.init=zero_shot",
                       "continual.offline_merge.single_model=keep",
                       "continual.offline_merge.backbone_merge.method=task_arithmetic",
                       "continual.offline_merge.backbone_merge.scaling=0.3",
                       "continual.offline_merge.backbone_merge.aggregate=sum")
    theta0, (theta1, theta2) = rec["init"][0], rec["theta"]
    assert_state(rec["init"][1], theta0, exact=True)
    assert_state(rec["eval"][0], theta1, exact=True)  # one task model: evaluated as it is, not theta_0 + 0.3 tau_1
    for key in theta0:  # backbone: theta_0 + 0.3 (tau_1 + tau_2); head: the mean (the default interpolation)
        if key.startswith("visual."):
            expected = theta0[key] + 0.3 * ((theta1[key] - theta0[key]) + (theta2[key] - theta0[key]))
        else:
            expected = (theta1[key] + theta2[key]) / 2
        assert torch.allclose(rec["eval"][1][key], expected, atol=1e-6, rtol=0), key


@pytest.mark.parametrize("overrides, culprit", [
    (["continual.method=merge_grid", "continual.merge_grid.init=best"], "continual.merge_grid.init='best'"),
    (["continual.method=merge_grid", "continual.merge_grid.eval=zero_shot"], "continual.merge_grid.eval='zero_shot'"),
    (["continual.method=zs_paint", "continual.zs_paint.split=layers"], "continual.zs_paint.split='layers'"),
    (["continual.method=offline_merge", "continual.offline_merge.backbone_merge.method=slerp"],
     "continual.offline_merge.backbone_merge.method='slerp'"),
    (["continual.method=ema_paint", "continual.ema_paint.head_merge.weight=2"],
     "continual.ema_paint.head_merge.weight=2"),
    (["continual.method=zs_paint", "continual.zs_paint.eval=zero_shot"], "continual.zs_paint.eval='zero_shot'"),
    (["continual.method=merge_grid", "continual.merge_grid.unrolled_start=middle"],
     "continual.merge_grid.unrolled_start='middle'"),
    (["continual.method=offline_merge", "continual.offline_merge.single_model=drop"],
     "continual.offline_merge.single_model='drop'"),
    (["continual.method=ema_paint", "+continual.ema_paint.unrolled_strat=first_task"],
     "continual.ema_paint.unrolled_strat is not an option of ema_paint"),
])
def test_bad_merging_config_is_one_line_naming_the_key(overrides, culprit):
    cfg = compose(overrides)
    with pytest.raises(FifError) as error:
        build_method(RunSettings.from_config(cfg), build_backbone("mini_clip").model, torch.device("cpu"))
    assert culprit in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("split, head", [("projections", {"visual.proj", "text_projection", "logit_scale"}),
                                         ("towers", None)])
def test_backbone_and_head_follow_their_own_rules(split, head):
    model = build_backbone("mini_clip").model
    cfg = compose(["continual.method=ema_paint", f"continual.ema_paint.split={split}",
                   "continual.ema_paint.backbone_merge.weight=0.0", "continual.ema_paint.head_merge.weight=1.0"])
    method = build_method(RunSettings.from_config(cfg), model, torch.device("cpu"))
    older = method.theta0
    newer = {k: v + 1.0 if v.is_floating_point() else v for k, v in older.items()}
    merged = method.merge_pair(older, newer)
    head = head if head is not None else {k for k in older if not k.startswith("visual.")}
    assert 3 <= len(head) < len(older)
    for key in older:  # backbone weight 0: the older model; head weight 1: the newer one, bit for bit
        assert torch.equal(merged[key], newer[key] if key in head else older[key]), key


def test_offline_merge_without_a_work_folder_says_so():
    from fif.methods import TaskInfo

    method = build_method(RunSettings.from_config(compose(["continual.method=offline_merge"])), build_backbone("mini_clip").model,
                          torch.device("cpu"))
    with pytest.raises(FifError, match="needs a work folder"):
        method.end_task(TaskInfo(0, 2, 1))
