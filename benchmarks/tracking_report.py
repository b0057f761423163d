"""What tracking backends cost per logged event, and how long ``fif report`` takes for N runs.

    python benchmarks/tracking_report.py [--events 2000] [--runs RUN ...] [--backends jsonl,tensorboard,wandb]

Prints (numbers, not a test): per backend, seconds to start, microseconds per ``step`` event and
seconds to close; W&B runs offline in a temporary folder (never online). With --runs (run or
sweep folders, as ``fif report`` takes them), also the seconds to load them, render the page and
write it, and the page's size.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def bench_backend(name: str, folder: Path, events: int) -> str:
    from fif.tracking.jsonl import JsonlTracker
    from fif.tracking.tensorboard import TensorBoardTracker
    from fif.tracking.wandb import WandbTracker

    makers = {"jsonl": lambda: JsonlTracker(folder / "jsonl"),
              "tensorboard": lambda: TensorBoardTracker(folder / "tensorboard"),
              "wandb": lambda: WandbTracker(folder / "wandb", "fif-benchmark", mode="offline")}
    start = time.perf_counter()
    tracker = makers[name]()
    started = time.perf_counter()
    for i in range(events):
        tracker.log("step", task=1, step=i, samples_seen=128 * (i + 1), loss=1.0 / (i + 1), lr=1e-4)
    logged = time.perf_counter()
    tracker.close()
    closed = time.perf_counter()
    return (f"{name:<12} start {started - start:5.2f} s   {(logged - started) / events * 1e6:6.0f} us per step event"
            f"   close {closed - logged:5.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="step events logged per backend")
    parser.add_argument("--backends", default="jsonl,tensorboard,wandb")
    parser.add_argument("--runs", nargs="*", default=[], help="run or sweep folders to render a report of")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for key in ("CONFIG", "CACHE", "DATA"):
            os.environ[f"WANDB_{key}_DIR"] = str(folder / f"wandb_{key.lower()}")
        os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_CONSOLE="off")
        for name in args.backends.split(","):
            print(bench_backend(name, folder, args.events))
        if args.runs:
            from fif.report.html import write_report
            from fif.report.runs import collect_runs

            start = time.perf_counter()
            records = collect_runs(args.runs)
            loaded = time.perf_counter()
            path = write_report(records, folder / "report.html")
            written = time.perf_counter()
            print(f"report of {len(records)} runs: load {loaded - start:.2f} s, render + write "
                  f"{written - loaded:.2f} s, {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
