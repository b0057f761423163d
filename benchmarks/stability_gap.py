"""What evaluations inside tasks show (the stability gap) and what they cost, on the mini benchmark.

    python benchmarks/stability_gap.py [--every 640] [--subset 0.2] [--tasks 10] [--out runs/stability_gap]

Runs the default mini experiment twice with the same fixed subsets (evaluation.validate_on_subset):
without and with evaluation.every_n_samples. Prints (numbers, not a test) both wall times, the
seconds the points inside tasks took and their share of the run, and per task the A_KA / A_ZS at
its start (the previous task's end), the lowest point inside it and its end: the dip and the
recovery. ``fif report OUT/with OUT/without`` draws the curve.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _run(out: Path, name: str, extra: list[str]) -> tuple[dict, float]:
    from fif.config import compose
    from fif.train.run import run_experiment

    started = time.perf_counter()
    results = run_experiment(compose([f"log.folder={out}", f"log.name={name}", "log.progress=false", *extra]),
                             echo=lambda *_: None).results
    return results, time.perf_counter() - started


def _gap_rows(results: dict) -> list[str]:
    start = results.get("zero_shot_subset") or results["zero_shot"]
    rows = []
    for task in results["tasks"]:
        inside = [w for w in results["within_task"] if w["task"] == task["task"]]
        cells = []
        for metric in ("A_KA", "A_ZS"):
            low = min(w[metric] for w in inside) if inside else float("nan")
            cells.append(f"{metric} {start[metric]:6.2f} -> min {low:6.2f} -> end {task[metric]:6.2f}")
        rows.append(f"  task {task['task']:>2}: " + "   ".join(cells) + f"   ({len(inside)} points inside)")
        start = task
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=640, help="evaluation.every_n_samples (default 640)")
    parser.add_argument("--subset", type=float, default=0.2, help="evaluation.validate_on_subset (default 0.2)")
    parser.add_argument("--tasks", type=int, default=10, help="experiment.task.num (default 10, the mini default)")
    parser.add_argument("--out", type=Path, default=Path("runs/stability_gap"), help="where the two runs go")
    args = parser.parse_args()
    common = [f"evaluation.validate_on_subset={args.subset}", f"experiment.task.num={args.tasks}"]
    without, plain_seconds = _run(args.out, "without", common)
    with_gap, gap_seconds = _run(args.out, "with", [*common, f"evaluation.every_n_samples={args.every}"])
    inside = sum(w["seconds"] for w in with_gap["within_task"])
    print(f"without points inside tasks: {plain_seconds:7.1f} s")
    print(f"with every {args.every} samples:    {gap_seconds:7.1f} s ({gap_seconds / plain_seconds:.2f}x); "
          f"{len(with_gap['within_task'])} points inside tasks took {inside:.1f} s = "
          f"{100 * inside / with_gap['seconds']:.1f}% of the run")
    same = all(a["per_dataset"] == b["per_dataset"] for a, b in zip(with_gap["tasks"], without["tasks"]))
    print(f"task-end scores identical with and without them: {same}")
    print("\n".join(_gap_rows(with_gap)))
    print(f"fif report {args.out / 'with'} {args.out / 'without'} --out stability_gap.html")


if __name__ == "__main__":
    main()
