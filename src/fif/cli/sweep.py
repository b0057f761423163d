"""``fif run -m``: run a sweep and print one table of A_KA / A_ZS / GM for all its runs.

Kept apart from cli/main.py so the entry point stays a short table of commands. Exit status: 0 when
every run completed, 1 when any failed (each failure is a row of the table), 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys

from fif.train.sweep import SweepRun


def sweep_table(runs: list[SweepRun], width: int = 140) -> str:
    """A rich table: one row per run, final and task-averaged scores (percent)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="FoMo-in-Flux sweep (percent)")
    table.add_column("run", overflow="fold")
    table.add_column("status", overflow="fold", max_width=48)
    for column in ("final A_KA", "final A_ZS", "final GM", "avg A_KA", "avg A_ZS", "avg GM"):
        table.add_column(column, justify="right")
    zero_shots = {tuple(r.zero_shot[k] for k in ("A_KA", "A_ZS", "geometric_mean")) for r in runs if r.zero_shot}
    if len(zero_shots) == 1:  # one backbone: its zero-shot scores are every run's starting point
        ka, zs, gm = zero_shots.pop()
        table.add_row("zero-shot", "", f"{ka:.2f}", f"{zs:.2f}", f"{gm:.2f}", "", "", "")
    for run in runs:
        if run.status == "complete":
            scores = [f"{part[k]:.2f}" for part in (run.final, run.averaged)
                      for k in ("A_KA", "A_ZS", "geometric_mean")]
            table.add_row(run.name, "complete", *scores)
        else:
            status = f"failed: {run.error}" if run.status == "failed" else run.status
            table.add_row(run.name, status, *["-"] * 6)
    console = Console(file=sys.stdout, width=width)
    with console.capture() as capture:
        console.print(table)
    return capture.get()


def cmd_multirun(args: argparse.Namespace) -> int:
    from fif.train.sweep import plan, run_sweep

    if args.cfg:  # a dry run: what would run, and where
        sweep_dir, runs, _ = plan(args.overrides)
        print(f"sweep {sweep_dir}: {len(runs)} runs")
        for run in runs:
            print(f"  {run.name}: {' '.join(run.overrides) or '(defaults)'}")
        return 0
    sweep_dir, runs = run_sweep(args.overrides)
    print(sweep_table(runs), end="")
    failed = sum(run.status != "complete" for run in runs)
    print(f"sweep: {sweep_dir / 'sweep.json'} ({len(runs) - failed} complete, {failed} failed)")
    return 1 if failed else 0
