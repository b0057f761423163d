"""EWC and SI, checked by their numbers on the mini CLIP.

Unit checks use small synthetic batches (so the direct computations are exact and fast); the
end-to-end checks run the loop on the mini benchmark.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import open_clip
import pytest
import torch

from fif.config.settings import RunSettings
from fif.config import compose
from fif.data.samples.batches import Batch
from fif.errors import FifError
from fif.methods import TaskInfo, build_method
from fif.models.backbone import build_backbone
from conftest import train_tasks

CPU = torch.device("cpu")
WORDS = ["red", "circle", "square", "blue", "green", "star", "photo", "small", "large", "stripes"]


def make_batch(seed: int, size: int = 8) -> Batch:
    """Random images with short captions (real tokenizer): a deterministic, valid CLIP batch."""
    g = torch.Generator().manual_seed(seed)
    tokenizer = build_backbone("mini_clip").tokenizer
    picks = torch.randint(len(WORDS), (size, 3), generator=g).tolist()
    captions = [" ".join(WORDS[i] for i in row) for row in picks]
    return Batch(torch.randn(size, 3, 32, 32, generator=g), tokenizer(captions), {"update": size})


def make_method(*overrides: str):
    cfg = compose(["device=cpu", "experiment.scheduler.name=constant", *overrides])
    model = build_backbone("mini_clip").model
    return build_method(RunSettings.from_config(cfg), model, CPU), model


class FakeTaskData:
    """Stands in for the loop's TaskInfo.sample_batches: fixed batches, records what was asked."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches, self.calls = batches, []

    def __call__(self, n_samples: int, batch_size: int) -> Iterator[Batch]:
        self.calls.append((n_samples, batch_size))
        yield from self.batches[: min(n_samples, sum(len(b) for b in self.batches)) // batch_size]


def train_task(method, index: int, batches: list[Batch], steps: int, data=None) -> TaskInfo:
    task = TaskInfo(index, 3, steps, sample_batches=data)
    method.begin_task(task)
    for step in range(steps):
        method.observe(batches[step % len(batches)])
    method.end_task(task)
    return task


def params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def clip_loss(model, batch: Batch) -> torch.Tensor:
    image, text, scale = model(batch.images, batch.texts)[:3]
    return open_clip.ClipLoss()(image, text, scale)


# ----------------------------------------------------------------------------------------- EWC
def test_ewc_fisher_is_the_mean_squared_batch_gradient():
    method, model = make_method("continual.method=ewc", "continual.ewc.fim_batch_size=4",
                                "continual.ewc.max_fim_samples=12")
    batches = [make_batch(s, 4) for s in range(5)]
    data = FakeTaskData(batches)
    method.begin_task(TaskInfo(0, 2, 1, sample_batches=data))
    method.end_task(TaskInfo(0, 2, 1, sample_batches=data))
    assert data.calls == [(12, 4)]  # up to max_fim_samples, in batches of fim_batch_size
    direct = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for batch in batches[:3]:
        model.zero_grad()
        clip_loss(model, batch).backward()
        for n, p in model.named_parameters():
            direct[n] += p.grad.pow(2) / 3
    assert method.fisher.keys() == direct.keys()
    for n, f in method.fisher.items():
        assert (f >= 0).all()
        torch.testing.assert_close(f, direct[n], rtol=1e-4, atol=1e-12)
    total = sum(f.sum().item() for f in method.fisher.values())
    assert total > 0
    print(f"\nFisher trace over 3 batches of 4: {total:.4g}")


def test_ewc_fisher_accumulates_with_decay_gamma():
    method, _ = make_method("continual.method=ewc", "continual.ewc.fim_batch_size=4", "continual.ewc.gamma=0.5")
    data = FakeTaskData([make_batch(s, 4) for s in range(2)])
    method.end_task(TaskInfo(0, 3, 1, sample_batches=data))
    first = {n: f.clone() for n, f in method.fisher.items()}
    method.end_task(TaskInfo(1, 3, 1, sample_batches=data))  # same weights, same data: F_t is F_1 again
    for n, f in method.fisher.items():
        torch.testing.assert_close(f, 1.5 * first[n])


def test_ewc_penalty_is_zero_at_the_anchor_and_quadratic_along_a_high_fisher_direction():
    method, model = make_method("continual.method=ewc", "continual.ewc.fim_batch_size=4", "continual.ewc.e_lambda=50")
    assert method.extra_loss() is None  # no finished task yet: no penalty
    method.end_task(TaskInfo(0, 2, 1, sample_batches=FakeTaskData([make_batch(s, 4) for s in range(3)])))
    assert method.extra_loss().item() == 0.0
    anchor = params(model)
    # direction: the Fisher itself, scaled to unit norm (all weight on the high-Fisher coordinates)
    norm = torch.sqrt(sum(f.pow(2).sum() for f in method.fisher.values()))
    direction = {n: f / norm for n, f in method.fisher.items()}

    def penalty_at(t: float) -> torch.Tensor:
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(anchor[n] + t * direction[n])
        return method.extra_loss()

    base = penalty_at(1.0).item()
    expected = 50 / 2 * sum((method.fisher[n] * direction[n].pow(2)).sum() for n in direction).item()
    assert base > 0 and base == pytest.approx(expected, rel=1e-5)
    for t in (0.25, 0.5, 2.0, 3.0, -1.5):
        assert penalty_at(t).item() == pytest.approx(t * t * base, rel=1e-4), t
    # the gradient of the penalty is e_lambda * F * (theta - theta*) (theta - theta* as stored: float32 rounding)
    penalty = penalty_at(2.0)
    penalty.backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, 50 * method.fisher[n] * (p.detach() - anchor[n]), rtol=1e-5, atol=1e-12)


def test_ewc_anchor_moves_to_the_end_of_task_weights():
    method, model = make_method("continual.method=ewc", "continual.ewc.fim_batch_size=4")
    batches = [make_batch(s, 8) for s in range(2)]
    data = FakeTaskData([make_batch(10 + s, 4) for s in range(2)])
    initial = params(model)
    anchors = []
    for t in range(2):
        train_task(method, t, batches, steps=3, data=data)
        now = params(model)
        assert all(torch.equal(method.anchor[n], now[n]) for n in now)
        anchors.append({n: a.clone() for n, a in method.anchor.items()})
    moved = lambda a, b: sum(not torch.equal(a[n], b[n]) for n in a)  # noqa: E731
    assert moved(anchors[0], initial) > 0 and moved(anchors[1], anchors[0]) > 0
    method.begin_task(TaskInfo(2, 3, 2))
    stats = method.observe(batches[0])
    assert stats["extra_loss"] == 0.0  # first step of a task starts at the anchor
    stats = method.observe(batches[1])
    assert stats["extra_loss"] > 0.0


def test_ewc_state_dict_restores_fisher_and_anchor():
    method, _ = make_method("continual.method=ewc", "continual.ewc.fim_batch_size=4")
    train_task(method, 0, [make_batch(0)], steps=2, data=FakeTaskData([make_batch(1, 4), make_batch(2, 4)]))
    state = method.state_dict()
    other, _ = make_method("continual.method=ewc", "continual.ewc.fim_batch_size=4")
    other.load_state_dict(state)
    assert all(torch.equal(other.fisher[n], f) for n, f in method.fisher.items())
    assert all(torch.equal(other.anchor[n], a) for n, a in method.anchor.items())
    assert other.fisher_seconds == method.fisher_seconds and len(other.fisher_seconds) == 1


# ------------------------------------------------------------------------------------------ SI
def test_si_path_integral_equals_the_loss_decrease():
    """On one fixed batch, sum(omega) = -integral of g . dtheta = L(start) - L(end) to first order."""
    method, model = make_method("continual.method=si", "experiment.optimizer.lr=2e-5",
                                "experiment.optimizer.weight_decay=0.0", "experiment.optimizer.clip_grad_norm=0")
    batch = make_batch(0, 16)
    with torch.no_grad():
        before = clip_loss(model, batch).item()
    method.begin_task(TaskInfo(0, 2, 20))
    for _ in range(20):
        method.observe(batch)
    with torch.no_grad():
        after = clip_loss(model, batch).item()
    path = sum(w.sum().item() for w in method.small_omega.values())
    print(f"\nloss decrease {before - after:.5f}, path integral {path:.5f}")
    assert before - after > 0.01
    assert path == pytest.approx(before - after, rel=0.05)


def test_si_omega_is_nonnegative_and_grows_where_parameters_moved_and_reduced_the_loss():
    method, model = make_method("continual.method=si", "experiment.optimizer.weight_decay=0.0")
    batches = [make_batch(s, 8) for s in range(3)]
    start = params(model)
    train_task(method, 0, batches, steps=4)
    first = {n: o.clone() for n, o in method.omega.items()}
    moved = {n: (params(model)[n] - start[n]).abs() > 0 for n in start}
    assert all((o >= 0).all() for o in first.values())
    assert sum((o > 0).sum().item() for o in first.values()) > 0
    # tokens no caption uses get no gradient, never move, and get no importance
    used = torch.unique(torch.cat([b.texts.flatten() for b in batches]))
    unused = torch.ones(first["token_embedding.weight"].shape[0], dtype=torch.bool)
    unused[used] = False
    assert unused.any() and not moved["token_embedding.weight"][unused].any()
    assert (first["token_embedding.weight"][unused] == 0).all()
    # a second task adds to Omega exactly where its path integral was positive
    method.begin_task(TaskInfo(1, 3, 3))
    for step in range(3):
        method.observe(batches[step])
    omega_task2 = {n: o.clone() for n, o in method.small_omega.items()}
    method.end_task(TaskInfo(1, 3, 3))
    for n, o in method.omega.items():
        assert (o >= first[n]).all()
        assert ((o > first[n]) <= (omega_task2[n] > 0)).all()  # grows only where the path integral was positive
    grew = sum((method.omega[n] > first[n]).sum().item() for n in first)
    assert grew > 0
    assert all((w == 0).all() for w in method.small_omega.values())  # omega reset for the next task


def test_si_omega_formula_and_anchor():
    method, model = make_method("continual.method=si", "continual.si.xi=0.01")
    start = params(model)
    batches = [make_batch(s, 8) for s in range(2)]
    method.begin_task(TaskInfo(0, 2, 2))
    for b in batches:
        method.observe(b)
    omega = {n: w.clone() for n, w in method.small_omega.items()}
    method.end_task(TaskInfo(0, 2, 2))
    end = params(model)
    for n, o in method.omega.items():
        expected = omega[n].clamp(min=0) / ((end[n] - start[n]).pow(2) + 0.01)
        torch.testing.assert_close(o, expected)
        assert torch.equal(method.anchor[n], end[n])
    assert method.extra_loss().item() == 0.0


def test_si_path_integral_uses_the_task_loss_gradient_without_the_penalty():
    method, model = make_method("continual.method=si", "continual.si.c=1000")
    batches = [make_batch(s, 8) for s in range(2)]
    train_task(method, 0, batches, steps=2)
    method.begin_task(TaskInfo(1, 2, 3))
    method.observe(batches[0])  # move away from the anchor so the penalty has a gradient
    captured = {}
    original = method.after_backward

    def spy():
        original()
        captured.update({n: g.clone() for n, g in method._step_grad.items()})

    method.after_backward = spy
    theta = params(model)
    stats = method.observe(batches[1])
    assert stats["extra_loss"] > 0
    reference, _ = make_method("continual.method=finetune")
    reference.model.load_state_dict(model.state_dict())
    with torch.no_grad():
        for n, p in reference.model.named_parameters():
            p.copy_(theta[n])
    grads = torch.autograd.grad(clip_loss(reference.model, batches[1]), list(reference.model.parameters()))
    for (n, _), g in zip(reference.model.named_parameters(), grads):
        torch.testing.assert_close(captured[n], g, rtol=1e-3, atol=1e-6)


def test_si_frozen_tower_gets_no_importance_and_stays_put():
    method, model = make_method("continual.method=si", "experiment.backbone.freeze_features=true")
    start = params(model)
    train_task(method, 0, [make_batch(s, 8) for s in range(2)], steps=2)
    assert method.omega and not any(n.startswith("visual.") for n in method.omega)
    assert all(torch.equal(p, start[n]) for n, p in params(model).items() if n.startswith("visual."))
    assert sum((o > 0).sum().item() for o in method.omega.values()) > 0


def test_si_state_dict_restores_omegas_and_anchor():
    method, _ = make_method("continual.method=si")
    batches = [make_batch(s, 8) for s in range(2)]
    train_task(method, 0, batches, steps=2)
    method.begin_task(TaskInfo(1, 2, 2))
    method.observe(batches[0])
    other, _ = make_method("continual.method=si")
    other.load_state_dict(method.state_dict())
    for mine, theirs in ((method.omega, other.omega), (method.small_omega, other.small_omega),
                         (method.anchor, other.anchor)):
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[n], theirs[n]) for n in mine)


# ------------------------------------------------------------------------------ options, loop
@pytest.mark.parametrize("override, culprit", [
    ("continual.ewc.e_lambda=-1", "continual.ewc.e_lambda=-1"),
    ("continual.ewc.gamma=-0.5", "continual.ewc.gamma=-0.5"),
    ("continual.ewc.fim_batch_size=1", "continual.ewc.fim_batch_size=1"),
    ("continual.ewc.fim_batch_size=abc", "continual.ewc.fim_batch_size='abc'"),
    ("continual.si.xi=0", "continual.si.xi=0"),
    ("continual.si.c=-2", "continual.si.c=-2"),
])
def test_bad_options_are_one_line_errors(override, culprit):
    method = override.split(".")[1]
    with pytest.raises(FifError) as error:
        make_method(f"continual.method={method}", override)
    assert culprit in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("method", ["ewc", "si"])
def test_runs_on_the_mini_benchmark_with_a_penalty_from_the_second_task(tmp_path, mini_root, method):
    cfg = compose([f"log.folder={tmp_path}", f"log.name={method}", "log.progress=false", "experiment.task.num=2",
                   "experiment.task.n_samples=512", f"continual.method={method}", "continual.ewc.max_fim_samples=256"])
    run = train_tasks(cfg)  # the training phases alone: the penalty shows in the step events
    assert run.global_step == 2 * (512 // 128) and len(run.parts.method.importance) > 0
    steps = [json.loads(line) for line in (run.run_dir / "events.jsonl").read_text().splitlines()]
    steps = [e for e in steps if e["event"] == "step"]
    assert steps and all("extra_loss" not in e for e in steps if e["task"] == 1)
    second = [e["extra_loss"] for e in steps if e["task"] == 2]
    assert second and second[0] == 0.0 and max(second) > 0
