"""Bad numerics: a diverging run stops in one line naming task and step, keeps its good checkpoints
and records itself as failed; ``experiment.optimizer.skip_nonfinite_steps`` tolerates a few bad steps.

Real runs of the mini benchmark (the issue's ``experiment.optimizer.lr=1e6``: step 1 is finite,
step 2's loss is NaN) and real steps of the shipped mini CLIP.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path

import open_clip
import pytest
import torch

from bad_input_helpers import SHORT_RUN, files_under, one_line_error
from fif.cli import main
from fif.config import compose
from fif.errors import FifError
from fif.optim.adamw import build_adamw
from fif.optim.step import contrastive_step, nonfinite, step_losses
from fif.results import RunResults
from fif.train.checkpoint import list_checkpoints, read_checkpoint
from fif.train.run import Run

DIVERGE = ("experiment.optimizer.lr=1e6", "log.checkpoint_every_steps=1")
DIVERGED = (r"^error: training diverged at task 1, step 2 \(loss nan, grad_norm nan\); the last good checkpoint "
            r"is (?P<checkpoint>\S+step_000000001\.pt); lower experiment\.optimizer\.lr or set "
            r"experiment\.optimizer\.skip_nonfinite_steps$")


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def _all_finite(state: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


class _Capture:
    """capsys for a module-scoped fixture (pytest's is per test): sys.stdout/stderr redirected meanwhile."""

    def __enter__(self) -> _Capture:
        self._out, self._err = io.StringIO(), io.StringIO()
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(contextlib.redirect_stdout(self._out))
        self._stack.enter_context(contextlib.redirect_stderr(self._err))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def readouterr(self) -> tuple[str, str]:
        return self._out.getvalue(), self._err.getvalue()


@pytest.fixture(scope="module")
def diverged(tmp_path_factory, mini_root) -> tuple[Path, str]:
    """One diverging run through the CLI (in this process): its folder and its error line."""
    runs = tmp_path_factory.mktemp("numerics")
    capsys = _Capture()
    with capsys:
        line = one_line_error(capsys, ["run", *SHORT_RUN, f"log.folder={runs}", "log.name=div", *DIVERGE], DIVERGED)
    return runs / "div", line


def test_a_diverging_run_stops_with_one_line_and_records_failed(diverged):
    run_dir, line = diverged
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "failed" and results["error"] == line.removeprefix("error: ")
    assert results["skipped_nonfinite_steps"] == 1 and results["tasks"] == []  # task 1 never ended
    events = _events(run_dir)
    assert events[-1]["event"] == "error" and events[-1]["error"] == results["error"]
    steps = [e for e in events if e["event"] == "step"]
    assert [(e["task"], e["step"]) for e in steps] == [(1, 0), (1, 1)]  # nothing ran past the bad step
    assert math.isfinite(steps[0]["loss"]) and math.isnan(steps[1]["loss"])
    assert steps[1]["skipped_nonfinite_steps"] == 1 and "skipped_nonfinite_steps" not in steps[0]
    assert "eval" not in {e["event"] for e in events[events.index(steps[0]):]}  # no score of a NaN model
    assert not (run_dir / ".lock").exists() and not any(".tmp" in f for f in files_under(run_dir))


def test_the_good_checkpoints_stay_and_hold_finite_weights(diverged):
    run_dir, line = diverged
    kept = list_checkpoints(run_dir / "checkpoints")
    assert [p.name for p in kept] == ["step_000000000.pt", "step_000000001.pt"]
    assert str(kept[-1]) == re.match(DIVERGED, line)["checkpoint"]
    before, after = (read_checkpoint(p)["method"]["model"] for p in kept)  # digest, keys and format verified
    assert _all_finite(before) and _all_finite(after)
    moved = sum(not torch.equal(before[k], after[k]) for k in before)
    assert moved > 0.9 * len(before)  # step 1 (lr 1e6) was applied and kept; step 2 never was


def test_fif_results_shows_the_run_failed_with_its_reason(diverged, capsys):
    run_dir, line = diverged
    assert main(["results", str(run_dir), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["status"] == "failed" and row["detail"] == line.removeprefix("error: ")
    assert row["tasks_done"] == 0 and row["zero_shot_GM"] is not None and row["final_GM"] is None
    assert main(["results", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "failed (training diverged" in out and "1 runs (0 complete, 1 failed, 0 unfinished)" in out


def test_skip_nonfinite_steps_tolerates_n_then_stops(tmp_path, mini_root):
    """lr 1e6, one bad step allowed: task 1's step 2 is skipped (the task ends), task 2's step 1 stops the run."""
    notes: list[str] = []
    cfg = compose([*SHORT_RUN, f"log.folder={tmp_path}", "log.name=skip", "experiment.optimizer.lr=1e6",
                   "experiment.optimizer.skip_nonfinite_steps=1", "log.keep_checkpoints=0"])
    run = Run(cfg, echo=lambda *a, **k: notes.append(" ".join(map(str, a))))
    with pytest.raises(FifError) as raised:
        with run:  # the phases without evaluations: what this test checks is the step loop
            run.build()
            for t in run.remaining_tasks():
                run.train_task(t)
    assert str(raised.value) == (
        "training diverged at task 2, step 1 (loss nan, grad_norm nan); no checkpoint was written "
        "(log.keep_checkpoints=0); lower experiment.optimizer.lr or raise experiment.optimizer.skip_nonfinite_steps "
        "(=1, all used)")
    assert [n for n in notes if n.startswith("skipped")] == [
        "skipped the update of task 1, step 2 (loss nan, grad_norm nan): 1 of 1 allowed "
        "(experiment.optimizer.skip_nonfinite_steps)"]
    assert run.global_step == 2 and run.samples_seen == 3 * 128  # task 1's 2 steps, task 2's first (its batch seen)
    assert _all_finite(run.parts.method.model.state_dict())  # no skipped update reached the weights
    results = RunResults.read(tmp_path / "skip")
    assert results.failed and results.error == str(raised.value) and results.skipped_nonfinite_steps == 2
    steps = [e for e in _events(tmp_path / "skip") if e["event"] == "step"]
    assert [(e["task"], e["step"], e.get("skipped_nonfinite_steps")) for e in steps] == [
        (1, 0, None), (1, 1, 1), (2, 0, 2)]


def _tiny_step(mini, extra_loss=None, images=None):
    """One real contrastive step of a copy of the mini CLIP; returns (step, weights before, after, optimizer)."""
    import copy

    backbone, batch = mini
    model = copy.deepcopy(backbone.model)
    optimizer = build_adamw(list(model.named_parameters()), 1e-3, 0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = step_losses(model, open_clip.ClipLoss(), batch.images if images is None else images, batch.texts,
                         (lambda: extra_loss(model)) if extra_loss else None)
    step = contrastive_step(optimizer, 1e-3, lambda: losses, model=model, parameters=model.parameters(),
                            clip_grad_norm=1.0)
    return step, before, model.state_dict(), optimizer


def test_a_nan_loss_step_leaves_weights_and_optimizer_untouched(mini):
    images = mini[1].images.clone()
    images[0, 0, 0, 0] = float("nan")  # one NaN pixel poisons the batch's loss
    step, before, after, optimizer = _tiny_step(mini, images=images)
    assert not step.applied and math.isnan(step.values["loss"]) and nonfinite(step.values)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert optimizer.state == {} and all(p.grad is None for p in optimizer.param_groups[0]["params"])


def test_a_nonfinite_gradient_under_a_finite_loss_is_caught_too(mini):
    """sqrt(|w - w|) is 0 (a finite extra loss) with a NaN gradient: the norm catches what the loss does not."""
    def kink(model):
        weight = model.logit_scale
        return torch.sqrt((weight - weight.detach()).abs()).sum()

    step, before, after, _ = _tiny_step(mini, extra_loss=kink)
    assert step.values["extra_loss"] == 0.0 and math.isfinite(step.values["loss"])
    assert math.isnan(step.values["grad_norm"]) and not step.applied
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_finite_step_is_applied_and_its_norm_is_the_clipping_norm(mini):
    step, before, after, optimizer = _tiny_step(mini)
    assert step.applied and nonfinite(step.values) == {} and step.values["grad_norm"] > 0
    assert step.values["loss"] == float(step.loss.detach())
    assert sum(not torch.equal(before[k], after[k]) for k in before) > 0 and optimizer.state


def test_failed_then_completed_results_drop_the_error():
    results = RunResults({"status": "running", "zero_shot": {"A_KA": 1.0, "A_ZS": 2.0, "geometric_mean": 1.5,
                                                              "per_dataset": {}}, "tasks": []})
    results.fail("training diverged at task 1, step 2 (loss nan)")
    assert results.failed and results.error.startswith("training diverged")
    results.finish(1.0)
    assert results.complete and results.error is None and "error" not in results.data
    assert results.data["skipped_nonfinite_steps"] == 0


def test_a_bad_skip_nonfinite_steps_value_is_one_line(tmp_path, capsys, mini_root):
    one_line_error(capsys, ["run", *SHORT_RUN, f"log.folder={tmp_path}", "experiment.optimizer.skip_nonfinite_steps=-1"],
                   r"^error: experiment\.optimizer\.skip_nonfinite_steps=-1 is not valid: expected a whole number >= 0")
    assert files_under(tmp_path) == []
