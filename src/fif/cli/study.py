"""``fif study NAME``: one of the paper's investigations as a grid of runs over seeds, and its findings.

Exit status: 0 when every run completed, 1 when any failed (the page is still written from the
complete ones), 2 for bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_study(args: argparse.Namespace) -> int:
    from fif.studies.grid import load_grid, shipped_grids
    from fif.studies.runner import execute, read_tuned, tune, write_page

    if args.list:
        for name, path in shipped_grids().items():
            print(f"{name:18} {load_grid(str(path)).description}")
        return 0
    if not args.name:
        print("error: fif study needs a study name or grid file (fif study --list shows the shipped ones)")
        return 2
    grid = load_grid(args.name)
    folder = Path(args.out or Path("studies") / (grid.name + ("_quick" if args.quick else ""))).expanduser()
    if args.plan:
        if args.tune and grid.tune is not None:
            tuning = [run for run, _ in grid.tune.runs(grid)]
            print(f"tuning {grid.tune.key} in validation mode: {len(tuning)} runs into {folder / 'tuning'}")
            for run in tuning:
                print(f"  {run.name}: {' '.join(run.overrides)}")
        runs = grid.runs(args.quick, read_tuned(folder))
        print(f"study {grid.name}{' (quick)' if args.quick else ''}: {len(runs)} runs into {folder / 'runs'}")
        for run in runs:
            print(f"  {run.name}: {' '.join(run.overrides)}")
        return 0
    tuned = tune(grid, folder, args.jobs) if args.tune else read_tuned(folder)
    if tuned is not None and grid.tune is not None:
        print(f"{grid.tune.key} per arm (tuned in validation mode, {folder / 'tuned.yaml'}): "
              + ", ".join(f"{arm}={value}" for arm, value in tuned.items()))
    states = execute(grid, folder, args.quick, args.jobs, tuned=tuned)
    markdown, page = write_page(grid, folder, states)
    print(markdown.read_text(), end="")
    failed = sum(state.status != "complete" for state in states)
    print(f"study: {page} and {markdown} ({len(states) - failed} runs complete, {failed} failed)")
    return 1 if failed else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    study = sub.add_parser("study", help="run one of the paper's investigations and check its findings",
                           description="Run a study's grid (arms x seeds) as fif runs, finished runs never redone "
                                       "(a killed study continues where it stopped), then write findings.md and "
                                       "report.html (KA-ZS plane, mean ± std over seeds, the findings table).")
    study.add_argument("name", nargs="?", help="a shipped study (fif study --list) or a grid file of your own")
    study.add_argument("--list", action="store_true", help="list the shipped studies and exit")
    study.add_argument("--quick", action="store_true", help="the grid's quick variant: fewer seeds, shorter runs")
    study.add_argument("--jobs", type=int, default=1, help="runs at a time, as separate processes (default 1)")
    study.add_argument("--out", help="study folder (default studies/NAME, studies/NAME_quick with --quick)")
    study.add_argument("--plan", action="store_true", help="print the runs and their overrides, run nothing")
    study.add_argument("--tune", action="store_true",
                       help="first choose the grid's tune key (e.g. each method's lr) per arm in validation mode, "
                            "write tuned.yaml in the study folder, then run the study with those values")
    study.set_defaults(func=cmd_study)
