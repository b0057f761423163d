"""Shared fixtures: an isolated mini-benchmark cache per test session, and run helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "fif"


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generate the mini benchmark into a session temp folder, never into the user's cache."""
    cache = tmp_path_factory.mktemp("fif_cache")
    os.environ["FIF_CACHE"] = str(cache)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach huggingface.co (download tests use a loopback hub)
    return cache


@pytest.fixture(scope="session")
def mini_root(isolated_cache: Path) -> Path:
    from fif.data.mini.build import build_datasets, default_root, pool_shards

    root = build_datasets(default_root(0))
    pool_shards(root, 4)
    return root


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference data files not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="session")
def registry(mini_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry of two adaptation datasets and one evaluation dataset of the mini benchmark: evaluation is cheap."""
    full = json.loads((mini_root / "datasets.json").read_text())
    path = tmp_path_factory.mktemp("registry") / "datasets.json"
    path.write_text(json.dumps({k: full[k] for k in ("sprites2d", "counting", "primshapes")}))
    return path


@pytest.fixture(scope="session")
def small(registry: Path) -> list[str]:
    """Overrides that stream the two adaptation datasets of the 3-dataset registry: for tests of a run's
    mechanics (phases, resume, DDP, trackers), where evaluating all 14 mini datasets only costs time."""
    return [f"experiment.dataset.registry={registry}", "experiment.dataset.sequence=null",
            "experiment.dataset.name=[SPRITES2D,COUNTING]"]


@pytest.fixture(scope="module")
def mini():
    """The shipped mini CLIP and one fixed batch of 8 random images with captions (one per test module:
    tests may train the model)."""
    import torch

    from fif.data.samples.batches import Batch
    from fif.models.backbone import build_backbone

    backbone = build_backbone("mini_clip")
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 32, 32, generator=generator)
    texts = backbone.tokenizer([f"a photo of a {w} shape" for w in
                                ("red", "blue", "green", "round", "square", "small", "large", "striped")])
    return backbone, Batch(images, texts, {"update": 8})


@pytest.fixture
def cli(capsys):
    """Run the real `fif` entry point in this process (a subprocess would re-import torch each time)."""
    from fif.cli import main

    def call(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return call


@pytest.fixture
def in_process(capsys):
    """``run_cli`` without the subprocess: the real `fif` entry point in this process, answered as a
    CompletedProcess (a subprocess costs ~5 s of imports; tests of kills, signals and env keep run_cli)."""
    from fif.cli import main

    def call(*args: str) -> subprocess.CompletedProcess:
        code = main(list(args))
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(["fif", *args], code, captured.out, captured.err)
    return call


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fif.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=dict(os.environ), timeout=900)


def train_tasks(cfg, tasks: int | None = None):
    """Build a run and train its first ``tasks`` tasks (all by default) without evaluating anything.

    The phases of fif.train.run.Run alone: what a test of training needs, without the zero-shot
    and per-task evaluations of a whole run. Returns the closed Run (method, buffer, counters)."""
    from fif.train.run import Run

    with Run(cfg, echo=lambda *_, **__: None) as run:
        run.build()
        for t in list(run.remaining_tasks())[:tasks]:
            run.train_task(t)
    return run


def read_results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


@pytest.fixture(scope="session")
def tracked_runs(tmp_path_factory: pytest.TempPathFactory, small: list[str]) -> Path:
    """Two short real runs for the tracking and report tests, made once per session in one folder:
    ``replay`` (default mixture; TensorBoard and offline W&B on) and ``no_replay`` (update data
    only, lr 1e-3, so its scores move differently; an evaluation inside each task on subsets, the
    report's stability-gap figure)."""
    from fif.config import compose
    from fif.train.run import run_experiment

    folder = tmp_path_factory.mktemp("tracked_runs")
    wandb_home = tmp_path_factory.mktemp("wandb_home")
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off",
           **{f"WANDB_{k}_DIR": str(wandb_home / k.lower()) for k in ("CONFIG", "CACHE", "DATA")}}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    base = ["experiment.task.num=2", "experiment.task.n_samples=256", "log.progress=false", f"log.folder={folder}",
            *small]  # the 3-dataset registry: two adaptation datasets streamed, one held out
    try:
        run_experiment(compose([*base, "log.name=replay", "log.tensorboard=true", "log.use=true",
                                "log.wandb_mode=offline"]), echo=lambda *_: None)
        run_experiment(compose([*base, "log.name=no_replay", "experiment.dataset.data_mixture.update=1.0",
                                "experiment.dataset.data_mixture.buffer=0.0",
                                "experiment.dataset.data_mixture.pretraining=0.0", "experiment.optimizer.lr=1e-3",
                                "evaluation.every_n_samples=128", "evaluation.validate_on_subset=0.2"]),
                       echo=lambda *_: None)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return folder
