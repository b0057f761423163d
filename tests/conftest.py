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


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fif.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=dict(os.environ), timeout=900)


def read_results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())
