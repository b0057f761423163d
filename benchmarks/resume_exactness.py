"""Check on this machine that a killed and resumed run reproduces the uninterrupted one.

    python benchmarks/resume_exactness.py [--kill-at N,M,...] [--folder DIR] [KEY=VALUE ...]

Runs ``fif run`` (with the overrides, checkpoints after every step) three ways: twice without
interruption (is the run deterministic at all on this device?), and once killed with SIGKILL
right after the checkpoint of each ``--kill-at`` global step and resumed each time. Prints, for
each comparison, whether results.json agrees exactly outside the timing fields, and if not the
first differing field and the largest difference. Useful on a GPU, where some kernels are not
deterministic: the resume is exact exactly when the uninterrupted run is reproducible.

    python benchmarks/resume_exactness.py experiment.task.num=2 experiment.task.n_samples=256 device=cuda
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from collections.abc import Iterator

from fif.train.checkpoint import KILL_ENV
from fif.train.resume import without_timing


def run(overrides: list[str], kill_at: int | None = None) -> tuple[int, float]:
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    if kill_at is not None:
        env[KILL_ENV] = str(kill_at)
    start = time.time()
    done = subprocess.run([sys.executable, "-m", "fif.cli", "run", *overrides], env=env, capture_output=True, text=True)
    if done.returncode not in (0, -signal.SIGKILL):
        sys.exit(f"fif run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.returncode, time.time() - start


def leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, f"{prefix}{key}.")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from leaves(value, f"{prefix}{index}.")
    else:
        yield prefix[:-1], node


def compare(a: Path, b: Path) -> str:
    left = dict(leaves(without_timing(json.loads((a / "results.json").read_text()))))
    right = dict(leaves(without_timing(json.loads((b / "results.json").read_text()))))
    differ = [k for k in sorted(left.keys() | right.keys()) if left.get(k) != right.get(k)]
    if not differ:
        return f"identical ({len(left)} fields)"
    numeric = [abs(left[k] - right[k]) for k in differ
               if isinstance(left.get(k), (int, float)) and isinstance(right.get(k), (int, float))]
    largest = f", largest difference {max(numeric):.3g}" if numeric else ""
    return f"{len(differ)} of {len(left)} fields differ, first {differ[0]}: {left.get(differ[0])!r} vs " \
           f"{right.get(differ[0])!r}{largest}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-at", default="1,3", help="global steps to kill after, comma-separated")
    parser.add_argument("--folder", default=None, help="where the runs go (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        common = [*args.overrides, f"log.folder={tmp}", "log.progress=false", "log.checkpoint_every_steps=1"]
        for name in ("uninterrupted_a", "uninterrupted_b"):
            _, seconds = run(common + [f"log.name={name}"])
            print(f"{name}: {seconds:.1f} s")
        resumed = common + ["log.name=resumed"]
        for index, kill_at in enumerate(int(k) for k in args.kill_at.split(",")):
            code, seconds = run(resumed + (["log.resume=true"] if index else []), kill_at=kill_at)
            print(f"killed after the checkpoint of global step {kill_at}: exit {code} ({seconds:.1f} s)")
        code, seconds = run(resumed + ["log.resume=true"])
        print(f"resumed to the end: exit {code} ({seconds:.1f} s)")
        root = Path(tmp)
        print(f"uninterrupted a vs b:         {compare(root / 'uninterrupted_a', root / 'uninterrupted_b')}")
        print(f"uninterrupted a vs resumed:   {compare(root / 'uninterrupted_a', root / 'resumed')}")


if __name__ == "__main__":
    main()
