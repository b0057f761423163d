"""torchrun + DDP on the CPU (gloo, 2 processes): the same model as one process at equal global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import read_results, run_cli
from fif.config import compose
from fif.train.run import run_experiment
from fif.runtime.distributed import DistContext, shard

SHORT = ["experiment.task.num=2", "experiment.task.n_samples=256", "experiment.task.batch_size=32",
         "log.progress=false", "log.checkpoint=true", "device=cpu"]


@pytest.fixture(scope="module")
def overrides(small: list[str]) -> list[str]:
    """A short run on the 3-dataset registry (conftest): sharding does not depend on which datasets."""
    return [*SHORT, *small]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    return _torchrun_env({}, nproc, *args)


def _torchrun_env(extra_env: dict[str, str], nproc: int, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra_env)
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               f"--master_port={_free_port()}", "-m", "fif.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


def test_shards_cover_the_batch_in_order():
    for total, world in [(32, 2), (7, 2), (10, 3), (2, 4)]:
        parts = [shard(total, DistContext(rank, world, rank)) for rank in range(world)]
        assert [i for part in parts for i in part] == list(range(total))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.fixture(scope="module")
def one_and_two_processes(tmp_path_factory, overrides) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ddp")
    run_experiment(compose([*overrides, f"log.folder={folder}", "log.name=one"]), echo=lambda *_: None)
    double = _torchrun(2, "run", *overrides, f"log.folder={folder}", "log.name=two")
    assert double.returncode == 0, double.stderr[-3000:]
    return folder / "one", folder / "two"


def test_two_processes_train_the_one_process_model(one_and_two_processes):
    one, two = one_and_two_processes
    weights_one = torch.load(one / "final_model.pt", weights_only=False)["model"]
    weights_two = torch.load(two / "final_model.pt", weights_only=False)["model"]
    assert weights_one.keys() == weights_two.keys()
    for name, tensor in weights_one.items():
        assert torch.allclose(tensor, weights_two[name], rtol=1e-4, atol=1e-5), name


def test_two_processes_score_as_one(one_and_two_processes):
    one, two = (read_results(path) for path in one_and_two_processes)
    assert one["zero_shot"]["per_dataset"] == two["zero_shot"]["per_dataset"]  # same weights, sharded evaluation
    for task_one, task_two in zip(one["tasks"], two["tasks"]):
        assert task_one["samples_seen"] == task_two["samples_seen"]
        assert task_two["A_KA"] == pytest.approx(task_one["A_KA"], abs=1.0)
        assert task_two["A_ZS"] == pytest.approx(task_one["A_ZS"], abs=1.0)
    assert two["world_size"] == 2 and one["world_size"] == 1


def test_only_rank_zero_writes(one_and_two_processes):
    _, two = one_and_two_processes
    runs = sorted(p.name for p in two.parent.iterdir())
    assert runs == ["one", "two"]
    assert (two / "results.json").is_file() and (two / "events.jsonl").is_file()


def test_batch_must_split_evenly(tmp_path, overrides):
    result = _torchrun(2, "run", *overrides, "experiment.task.batch_size=33", f"log.folder={tmp_path}")
    assert result.returncode != 0
    assert "must be divisible by the number of processes (2)" in result.stdout + result.stderr


def test_a_killed_two_process_run_resumes_bit_identically(one_and_two_processes, overrides, tmp_path):
    from fif.train.resume import without_timing

    _, two = one_and_two_processes
    killed = _torchrun_env({"FIF_KILL_AFTER_CHECKPOINT": "3"}, 2, "run", *overrides, f"log.folder={tmp_path}",
                           "log.name=two", "log.checkpoint_every_steps=3")
    assert killed.returncode != 0 and read_results(tmp_path / "two")["status"] == "running"
    resumed = _torchrun(2, "run", *overrides, f"log.folder={tmp_path}", "log.name=two",
                        "log.checkpoint_every_steps=3", "log.resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    expected, got = read_results(two), read_results(tmp_path / "two")
    assert without_timing(got) == without_timing(expected)


def test_resume_refuses_another_world_size(tmp_path, overrides):
    killed = _torchrun_env({"FIF_KILL_AFTER_CHECKPOINT": "3"}, 2, "run", *overrides, f"log.folder={tmp_path}",
                           "log.name=r", "log.checkpoint_every_steps=3")
    assert killed.returncode != 0
    single = run_cli("run", *overrides, f"log.folder={tmp_path}", "log.name=r", "log.resume=true",
                     "log.checkpoint_every_steps=3")
    assert single.returncode == 2
    assert "was started with 2 process(es) and resumes with 1: resume with the same world size" in single.stderr
