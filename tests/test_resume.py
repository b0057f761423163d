"""Exact resume: a run killed with SIGKILL at any checkpoint and resumed ends with the results.json
of the run never interrupted (every field but wall-clock time), for every method of the catalogue.

The kill is exact: FIF_KILL_AFTER_CHECKPOINT=N makes the run SIGKILL itself right after the
checkpoint of global step N is written (no cleanup, no flush), as a preemption would. Runs are
tiny: 2 tasks x 3 steps of 32 on a 3-dataset registry cut from the mini benchmark, a checkpoint
after every step (global steps 1, 2 inside task 1; 3 = task 1 done; 4, 5 inside task 2; 6 = done).
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fif.config import compose
from fif.data.samples.pool import PoolStream
from fif.errors import FifError
from fif.train.checkpoint import (KILL_ENV, Checkpointer, CheckpointError, Position, list_checkpoints, load_latest,
                                  read_checkpoint, write_checkpoint)
from fif.train.run import run_experiment
from fif.train.resume import config_differences, without_timing
from fif.train.rng import capture_rng, restore_rng

DEFAULT_METHODS = [  # finetune: the kill-chain test below
    ("lora", ("continual.lora.dropout=0.1",)),  # dropout draws from the global torch generator
    ("ewc", ()),
    ("ema_paint", ()),
    ("offline_merge", ()),
]
SLOW_METHODS = [
    ("finetune", ()), ("dora", ()), ("vera", ()), ("bitfit", ()), ("lnfit", ()), ("si", ()), ("ft_paint", ()),
    ("zs_paint", ()),
    ("merge_grid", ("continual.merge_grid.init=merge_of_all", "continual.merge_grid.eval=latest")),
    ("offline_merge", ("continual.offline_merge.backbone_merge.method=dare_ties",)),  # seeded random merge
    ("lora", ("continual.lora.merge_at_task_end=true",)),  # a fresh adapter (random init) per task
    ("finetune", ("experiment.backbone.freeze_features=true",)),  # locked-image
    ("finetune", ("experiment.backbone.freeze_head=true",)),  # locked-text
    ("finetune", ("experiment.dataset.buffer.policy=reservoir", "experiment.dataset.buffer.size=300")),
]


# ---------------------------------------------------------------------------- helpers
def tiny(registry: Path, folder: Path, name: str, method: str, *extra: str) -> list[str]:
    return [f"experiment.dataset.registry={registry}", "experiment.dataset.sequence=null",
            "experiment.dataset.name=[SPRITES2D,COUNTING]", "experiment.task.num=2", "experiment.task.batch_size=32",
            "experiment.task.n_samples=96", "experiment.dataset.pool_shards=1",
            "experiment.dataset.pool_shuffle_buffer=200", "continual.ewc.max_fim_samples=64",
            f"continual.method={method}", "log.progress=false", "log.checkpoint_every_steps=1",
            f"log.folder={folder}", f"log.name={name}", *extra]


def fif_run(overrides: list[str], kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    if kill_at is not None:
        env[KILL_ENV] = str(kill_at)
    return subprocess.run([sys.executable, "-m", "fif.cli", "run", *overrides], capture_output=True, text=True,
                          env=env, timeout=600)


def killed(result: subprocess.CompletedProcess) -> bool:
    return result.returncode == -signal.SIGKILL


def results_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def events_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


_references: dict[tuple[str, tuple[str, ...]], Path] = {}


@pytest.fixture(scope="module")
def reference(registry: Path, tmp_path_factory: pytest.TempPathFactory):
    """The uninterrupted run of (method, extra overrides), run once per module."""
    folder = tmp_path_factory.mktemp("reference")

    def get(method: str, extra: tuple[str, ...] = ()) -> Path:
        key = (method, extra)
        if key not in _references:
            name = f"{method}_{len(_references)}"
            run_experiment(compose(tiny(registry, folder, name, method, *extra)), echo=lambda *_: None)
            _references[key] = folder / name
        return _references[key]

    return get


def assert_same_results(resumed: Path, uninterrupted: Path) -> None:
    a, b = results_of(resumed), results_of(uninterrupted)
    assert a["status"] == b["status"] == "complete"
    assert without_timing(a) == without_timing(b)
    assert a["tasks"][-1]["samples_seen"] == 2 * 3 * 32


# ---------------------------------------------------------------------------- kill and resume
def test_sigkill_mid_task_at_a_task_end_and_just_after_it_resumes_bit_identically(registry, reference, tmp_path):
    uninterrupted = reference("finetune")
    overrides = tiny(registry, tmp_path, "chain", "finetune")
    run_dir = tmp_path / "chain"
    first = fif_run(overrides, kill_at=2)  # inside task 1
    assert killed(first), first.stderr
    for kill_at, resumed_from in ((3, 2), (4, 3), (None, 4)):  # task 1's end, first step of task 2, to the end
        # log.* keys may differ on resume (here log.checkpoint): they cannot change the numbers
        result = fif_run(overrides + ["log.resume=true", "log.checkpoint=true"], kill_at=kill_at)
        assert killed(result) if kill_at else result.returncode == 0, result.stderr
        assert f"resuming from {run_dir / 'checkpoints' / f'step_{resumed_from:09d}.pt'}" in result.stdout
    assert_same_results(run_dir, uninterrupted)
    events = [e["event"] for e in events_of(run_dir)]
    assert events.count("resume") == 3 and events.count("start") == 4 and events[-1] == "end"
    assert [e["global_step"] for e in events_of(run_dir) if e["event"] == "resume"] == [2, 3, 4]
    assert not (run_dir / "checkpoints").exists()  # a complete run keeps no resume checkpoints
    assert (run_dir / "final_model.pt").is_file() and not list(run_dir.rglob("*.tmp"))


def _case(method: str, extra: tuple[str, ...], slow: bool = False):
    label = "-".join([method, *(e.split("=")[0].split(".")[-1] + "=" + e.split("=")[1] for e in extra)])
    return pytest.param(method, extra, id=label, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("method, extra", [_case(m, e) for m, e in DEFAULT_METHODS]
                         + [_case(m, e, slow=True) for m, e in SLOW_METHODS])
def test_every_method_resumes_bit_identically(registry, reference, tmp_path, method, extra):
    """Killed at the first step of task 2: the checkpoint holds task 1's end-of-task state (merges,
    Fisher, buffer) and task 2's optimizer after one step."""
    uninterrupted = reference(method, extra)
    overrides = tiny(registry, tmp_path, "run", method, *extra)
    assert killed(first := fif_run(overrides, kill_at=4)), first.stderr
    # the resume in this process (the kill needs its own; the chain test above resumes in fresh ones)
    run_experiment(compose(overrides + ["log.resume=true"]), echo=lambda *_: None)
    assert_same_results(tmp_path / "run", uninterrupted)


def test_a_run_fed_by_loader_workers_resumes_bit_identically_to_the_one_process_run(registry, reference, tmp_path):
    """Two workers build the batches ahead (the pool stream read past the checkpoint): killed inside
    task 1, the resumed run continues the pool after the last batch trained on, not after the prefetched ones."""
    uninterrupted = reference("finetune")  # train_workers auto: 0 on the CPU
    overrides = tiny(registry, tmp_path, "run", "finetune", "experiment.dataset.train_workers=2",
                     "experiment.dataset.prefetch=3")
    assert killed(first := fif_run(overrides, kill_at=2)), first.stderr
    result = fif_run(overrides + ["log.resume=true"])
    assert result.returncode == 0, result.stderr
    resumed, plain = results_of(tmp_path / "run"), results_of(uninterrupted)
    for results in (resumed, plain):
        for key in ("train_workers", "prefetch"):
            results["config"]["experiment"]["dataset"].pop(key)
    assert resumed["status"] == "complete" and without_timing(resumed) == without_timing(plain)


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(registry, reference, tmp_path):
    uninterrupted = reference("finetune")
    overrides = tiny(registry, tmp_path, "run", "finetune")
    assert killed(first := fif_run(overrides, kill_at=5)), first.stderr
    folder = tmp_path / "run" / "checkpoints"
    assert [p.name for p in list_checkpoints(folder)] == ["step_000000004.pt", "step_000000005.pt"]  # keep 2
    newest = folder / "step_000000005.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    result = fif_run(overrides + ["log.resume=true"])
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "unusable" in line]
    assert len(lines) == 1 and str(newest) in lines[0] and "falling back" in lines[0]
    assert f"resuming from {folder / 'step_000000004.pt'}" in result.stdout
    assert (folder / "step_000000005.pt.corrupt").is_file()  # kept for inspection, never read again
    assert_same_results(tmp_path / "run", uninterrupted)


# ---------------------------------------------------------------------------- refusals and no-ops
def test_resume_refuses_a_different_config_in_one_line_naming_the_keys(registry, reference):
    run_dir = reference("finetune")
    base = tiny(registry, run_dir.parent, run_dir.name, "finetune", "log.resume=true")
    with pytest.raises(FifError) as error:
        run_experiment(compose(base + ["experiment.optimizer.lr=1e-3", "experiment.task.num=3"]), echo=lambda *_: None)
    message = str(error.value)
    assert "\n" not in message and "log.resume_force=true" in message
    assert "experiment.optimizer.lr (run: 0.0002, now: 0.001)" in message and "experiment.task.num" in message
    said: list[str] = []  # forced: the differing keys are reported, then the (complete) run is left alone
    output = run_experiment(compose(base + ["experiment.optimizer.lr=1e-3", "log.resume_force=true"]), echo=said.append)
    assert any("experiment.optimizer.lr" in line for line in said) and output.results["status"] == "complete"


def test_resuming_a_complete_run_says_so_and_changes_nothing(registry, reference):
    run_dir = reference("finetune")
    before = (run_dir / "results.json").read_bytes()
    result = fif_run(tiny(registry, run_dir.parent, run_dir.name, "finetune", "log.resume=true"))
    assert result.returncode == 0, result.stderr
    assert f"run {run_dir} is already complete" in result.stdout and "final" in result.stdout
    assert (run_dir / "results.json").read_bytes() == before


def test_resume_needs_a_run_to_name(tmp_path):
    with pytest.raises(FifError, match="log.resume=true .* log.name is not set"):
        run_experiment(compose([f"log.folder={tmp_path}", "log.resume=true"]), echo=lambda *_: None)
    with pytest.raises(FifError, match=re.escape(f"log.resume={tmp_path / 'nothing'}: ") + ".* not a run folder"):
        run_experiment(compose([f"log.resume={tmp_path / 'nothing'}"]), echo=lambda *_: None)


def test_config_differences_ignore_logging_keys():
    saved = {"log": {"progress": True, "name": "a"}, "experiment": {"seed": 0, "task": {"num": 2}},
             "device": "auto", "x": {"flag": True}}
    now = {"log": {"progress": False, "name": "b"}, "experiment": {"seed": 0, "task": {"num": 3}, "new": 1},
           "device": "auto", "x": {"flag": 1}}
    assert config_differences(saved, now) == {"experiment.new": (None, 1), "experiment.task.num": (2, 3),
                                              "x.flag": (True, 1)}


# ---------------------------------------------------------------------------- the parts
def test_checkpoint_files_are_verified_and_the_newest_k_kept(tmp_path):
    keeper = Checkpointer(tmp_path, keep=2, every=1)
    state = {"format": 1, "position": {}, "config": {}, "method": {"w": torch.arange(1000.0)}, "buffer": {},
             "pool": None, "rng": capture_rng(), "loop": {}}
    for step in (0, 1, 2, 3):
        written = keeper.save(state, Position(0, step, step))
        assert written.bytes == written.path.stat().st_size
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000000002.pt", "step_000000003.pt"]
    assert torch.equal(read_checkpoint(tmp_path / "step_000000003.pt")["method"]["w"], torch.arange(1000.0))
    newest = tmp_path / "step_000000003.pt"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit inside a tensor: torch.load would not notice
    newest.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        read_checkpoint(newest)
    said: list[str] = []
    path, _ = load_latest(tmp_path, said.append)
    assert path.name == "step_000000002.pt" and len(said) == 1 and "step_000000003.pt is unusable" in said[0]
    write_checkpoint(tmp_path / "step_000000009.pt", {"format": 1, "method": {}})  # no position, rng, ...
    with pytest.raises(CheckpointError, match="missing keys position, config, buffer, pool, rng, loop"):
        read_checkpoint(tmp_path / "step_000000009.pt")
    (tmp_path / "step_000000002.pt").write_bytes(b"")
    with pytest.raises(FifError, match="no usable checkpoint"):
        load_latest(tmp_path, said.append)


def test_every_global_random_state_comes_back():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # a cached Gaussian is part of NumPy's state
    buffer = io.BytesIO()
    torch.save(capture_rng(), buffer)
    expected = (random.random(), np.random.randn(), np.random.rand(), torch.rand(4))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    again = (random.random(), np.random.randn(), np.random.rand(), torch.rand(4))
    assert expected[:3] == again[:3] and torch.equal(expected[3], again[3])


def _shard(path: Path, count: int, corrupt: int) -> Path:
    with tarfile.open(path, "w") as tar:
        for key in range(count):
            image = io.BytesIO()
            Image.new("RGB", (4, 4), (key * 30 % 256, 0, 0)).save(image, format="PNG")
            payload = image.getvalue()[:20] if key == corrupt else image.getvalue()
            for ext, data in (("png", payload), ("txt", f"{path.stem} {key}".encode())):
                info = tarfile.TarInfo(f"{key:04d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_pool_stream_continues_exactly_mid_epoch_and_across_epochs(tmp_path):
    shards = [_shard(tmp_path / f"s{i}.tar", 7, corrupt=3) for i in range(2)]  # 14 raw samples an epoch
    whole = PoolStream(shards, seed=1, shuffle_buffer=5, skip_corrupt=True)
    expected = [record.where for record in whole.take(40)]
    for cut in (0, 1, 13, 14, 15, 30):
        before = PoolStream(shards, seed=1, shuffle_buffer=5, skip_corrupt=True)
        before.take(cut)
        after = PoolStream(shards, seed=1, shuffle_buffer=5, skip_corrupt=True)
        after.load_state_dict(before.state_dict())
        assert after.state_dict() == before.state_dict()  # a checkpoint right after a restore loses nothing
        assert [record.where for record in after.take(40 - cut)] == expected[cut:], cut
        assert (after.epoch, after.consumed) == (whole.epoch, whole.consumed)
    ahead = PoolStream(shards, seed=1, shuffle_buffer=5)
    ahead.take(3)
    settled = ahead.live_state()
    ahead.take(9)  # a loader read ahead; training has used only the first 3
    ahead.settle(settled)
    resumed = PoolStream(shards, seed=1, shuffle_buffer=5)
    resumed.load_state_dict(ahead.state_dict())
    assert [record.where for record in resumed.take(5)] == expected[3:8]
    with pytest.raises(FifError, match="seed=1 but this run has 2"):
        PoolStream(shards, seed=2, shuffle_buffer=5).load_state_dict(whole.state_dict())
