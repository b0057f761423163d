"""The run's phases one at a time: build, zero-shot, one task's training, evaluation, record, restore.

Each test drives ``fif.train.run.Run`` directly instead of a whole ``fif run``, so it checks one
phase's effect with numbers (samples seen, weights moved, buffer filled, files written).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fif.config import compose
from fif.results import RunResults
from fif.train.checkpoint import load_latest
from fif.train.run import Run, run_experiment

SHORT = ["experiment.task.num=2", "experiment.task.n_samples=256", "experiment.task.batch_size=64",
         "log.progress=false", "device=cpu"]


def quiet(*args, **kwargs) -> None:
    return None


@pytest.fixture(scope="module")
def make_cfg(small: list[str]):
    """A short run's config on the 3-dataset registry (conftest): the phases do not depend on the datasets."""
    def make(tmp_path: Path, name: str, *extra: str):
        return compose([*SHORT, *small, f"log.folder={tmp_path}", f"log.name={name}", *extra])
    return make


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def whole(tmp_path_factory, make_cfg) -> dict:
    """The results of the same short run made whole (run_experiment), to compare the phases with."""
    return run_experiment(make_cfg(tmp_path_factory.mktemp("whole"), "whole"), quiet).results


def test_build_alone_writes_the_config_but_no_results(tmp_path, make_cfg, mini_root):
    with Run(make_cfg(tmp_path, "built"), quiet) as run:
        run.build()
        assert run.steps == 256 // 64 and run.parts is not None and len(run.parts.tasks) == 2
        assert list(run.remaining_tasks()) == [0, 1]
    files = {p.name for p in (tmp_path / "built").iterdir()}
    assert files == {"config.yaml", "events.jsonl"}  # results.json comes with the first evaluation
    events = [json.loads(line)["event"] for line in (tmp_path / "built" / "events.jsonl").read_text().splitlines()]
    assert events == ["start", "budget"]


def test_one_task_trains_without_any_evaluation(tmp_path, make_cfg, mini_root, monkeypatch):
    with Run(make_cfg(tmp_path, "train_only", "log.keep_checkpoints=0"), quiet) as run:
        run.build()
        method = run.parts.method
        evaluated = []
        monkeypatch.setattr(run.parts.suite, "evaluate", lambda *a, **k: evaluated.append(a))
        before = _weights(method.model)
        seconds = run.train_task(0)
        after = _weights(method.model)
    assert evaluated == [] and seconds > 0
    assert run.samples_seen == 4 * 64 and run.global_step == 4 and method.step_in_task == 4
    assert sum(not torch.equal(before[k], after[k]) for k in before) > 0.9 * len(before)  # finetune moves all
    assert len(run.parts.buffer) == len(run.parts.catalogue.task_indices(run.parts.tasks[0]))
    assert run.results.tasks == [] and not (tmp_path / "train_only" / "results.json").exists()


def test_phases_and_a_restore_equal_a_whole_run(tmp_path, make_cfg, whole):
    """build, zero_shot, train_task, evaluate, record; then a second Run: build, restore, continue, finish."""
    cfg = make_cfg(tmp_path, "restored")
    with Run(cfg, quiet) as first:
        first.build()
        zero = first.zero_shot()
        seconds = first.train_task(0)
        first.record(0, first.evaluate(0), seconds)
        seen = first.samples_seen
    checkpoint, state = load_latest(tmp_path / "restored" / "checkpoints", quiet)
    with Run(cfg, quiet) as second:
        second.build(tmp_path / "restored", keep_config=True)
        second.restore(state, checkpoint)
        assert list(second.remaining_tasks()) == [1]
        assert second.samples_seen == seen and second.global_step == 4
        assert len(second.results.tasks) == 1 and len(second.parts.buffer) == len(first.parts.buffer)
        seconds = second.train_task(1)
        second.record(1, second.evaluate(1), seconds)
        resumed = second.finish().results
    assert zero["per_dataset"] == whole["zero_shot"]["per_dataset"]
    assert [t["per_dataset"] for t in resumed["tasks"]] == [t["per_dataset"] for t in whole["tasks"]]
    assert resumed["averaged"] == whole["averaged"] and resumed["status"] == "complete"


def test_a_failing_phase_still_closes_the_trackers(tmp_path, make_cfg, mini_root, monkeypatch):
    run = Run(make_cfg(tmp_path, "failing"), quiet)
    with pytest.raises(RuntimeError, match="step failed"):
        with run:
            run.build()

            def fail(batch):
                raise RuntimeError("step failed")

            monkeypatch.setattr(run.parts.method, "observe", fail)
            run.train_task(0)
    jsonl = run.tracker.trackers[0]
    assert jsonl._file.closed
    # nothing claims the run finished: it is recorded failed, with the error's one line
    assert RunResults(run.results.data).status == "failed" and run.results.data["error"] == "RuntimeError: step failed"
