"""A method from another installed package, exactly as docs/adding-a-method.md writes it.

The page's Python block becomes ``fif_l2sp/__init__.py`` and its TOML block the package's entry
point, in a temporary folder holding a real installed distribution (``fif_l2sp-0.1.dist-info``
with METADATA and entry_points.txt; importlib.metadata finds it on the path as pip's would be
found). ``fif`` runs in subprocesses with that folder on PYTHONPATH: the method trains for two
tasks, its option is checked in one line, and a run killed mid-task resumes to the uninterrupted
run's results and weights.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_resume import killed, results_of
from fif.models.backbone import build_backbone
from fif.train.checkpoint import KILL_ENV
from fif.train.resume import without_timing

DOC = Path(__file__).resolve().parents[1] / "docs" / "adding-a-method.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page's example as an installed distribution in a folder of its own."""
    (python,), (toml,) = _blocks("python"), _blocks("toml")
    site = tmp_path_factory.mktemp("site")
    (site / "fif_l2sp").mkdir()
    (site / "fif_l2sp" / "__init__.py").write_text(python)
    meta = site / "fif_l2sp-0.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: fif-l2sp\nVersion: 0.1\n")
    entries = re.findall(r'^(\w+) = "([\w.]+)"$', toml, flags=re.M)  # the TOML table as entry_points.txt (INI)
    assert '[project.entry-points."fif.methods"]' in toml and entries
    (meta / "entry_points.txt").write_text("[fif.methods]\n" + "".join(f"{k} = {v}\n" for k, v in entries))
    return site


def _fif(site: Path, *args: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    if kill_at is not None:
        env[KILL_ENV] = str(kill_at)
    return subprocess.run([sys.executable, "-m", "fif.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def _tiny(registry: Path, folder: Path, name: str, *extra: str) -> list[str]:
    """2 tasks x 3 steps of 32 on the 3-dataset registry, a checkpoint after every step."""
    return ["run", f"experiment.dataset.registry={registry}", "experiment.dataset.sequence=null",
            "experiment.dataset.name=[SPRITES2D,COUNTING]", "experiment.task.num=2", "experiment.task.batch_size=32",
            "experiment.task.n_samples=96", "experiment.dataset.pool_shards=1",
            "experiment.dataset.pool_shuffle_buffer=200", "continual.method=l2sp", "continual.l2sp.alpha=0.5",
            "log.progress=false", "log.checkpoint_every_steps=1", "log.checkpoint=true", f"log.folder={folder}",
            f"log.name={name}", *extra]


def test_the_example_method_is_listed_and_its_option_checked(site):
    listed = _fif(site, "run", "--cfg")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert re.search(r"\n  l2sp:\n    alpha: 0\.01\n", listed.stdout), listed.stdout[-2000:]
    bad = _fif(site, "run", "continual.method=l2sp", "continual.l2sp.alpha=-1")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: continual.l2sp.alpha=-1 is not valid: expected a finite number >= 0"
    typo = _fif(site, "run", "continual.method=l2sp", "+continual.l2sp.alfa=1")
    assert typo.returncode == 2 and typo.stderr.strip().startswith("error: continual.l2sp.alfa is not an option of l2sp")


def test_the_example_method_trains_two_tasks_and_resumes_bit_identically(site, registry, tmp_path):
    whole = _fif(site, *_tiny(registry, tmp_path, "whole"))
    assert whole.returncode == 0, whole.stderr[-2000:]
    results = results_of(tmp_path / "whole")
    assert results["status"] == "complete" and len(results["tasks"]) == 2
    start = torch.load(tmp_path / "whole" / "final_model.pt", weights_only=False)["model"]
    assert results["config"]["continual"]["l2sp"] == {"alpha": 0.5}
    initial = build_backbone("mini_clip").model.state_dict()
    moved = [k for k in initial if not torch.equal(initial[k], start[k])]
    assert len(moved) > len(initial) // 2  # every parameter trains (buffers stay)

    first = _fif(site, *_tiny(registry, tmp_path, "cut"), kill_at=4)  # inside task 2
    assert killed(first), first.stderr[-2000:]
    resumed = _fif(site, *_tiny(registry, tmp_path, "cut", "log.resume=true"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert without_timing(results_of(tmp_path / "cut")) == without_timing(results)
    cut = torch.load(tmp_path / "cut" / "final_model.pt", weights_only=False)["model"]
    assert cut.keys() == start.keys() and all(torch.equal(cut[k], start[k]) for k in start)
