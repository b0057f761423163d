"""``fif results`` (a table of runs' scores) and ``fif report`` (a self-contained HTML page).

Kept apart from cli/main.py so the entry point stays a short table of commands.
"""

from __future__ import annotations

import argparse
import sys


def cmd_results(args: argparse.Namespace) -> int:
    from fif.report.runs import collect_runs
    from fif.report.seeds import group_runs, has_repeats
    from fif.report.table import seeds_csv, seeds_json, seeds_rich, to_csv, to_json, to_rich, transfer_rich

    records = collect_runs(args.runs)
    groups = group_runs(records)
    if args.json:
        sys.stdout.write(seeds_json(groups) if args.seeds else to_json(records))
    elif args.csv:
        sys.stdout.write(seeds_csv(groups) if args.seeds else to_csv(records))
    elif args.seeds:
        sys.stdout.write(seeds_rich(groups))
        print(f"{len(groups)} groups of {len(records)} runs")
    else:
        sys.stdout.write(to_rich(records))
        print(run_counts(records))
        sys.stdout.write(transfer_rich(records))
        if has_repeats(groups):
            sys.stdout.write(seeds_rich(groups))
    return 0


def run_counts(records) -> str:
    """'N runs (C complete, F failed, U unfinished)': failed runs counted apart from ones still going or killed."""
    failed = sum(r.status == "failed" for r in records)
    complete = sum(r.complete for r in records)
    return f"{len(records)} runs ({complete} complete, {failed} failed, {len(records) - complete - failed} unfinished)"


def cmd_report(args: argparse.Namespace) -> int:
    from fif.errors import FifError
    from fif.report.html import write_report
    from fif.report.runs import collect_runs

    records = collect_runs(args.runs)
    if not any(r.tasks or r.part("zero_shot") for r in records):
        raise FifError(_nothing_to_report(records))
    path = write_report(records, args.out, args.title)
    print(f"wrote {path} ({len(records)} runs, {path.stat().st_size / 1024:.0f} KiB)")
    return 0


def _nothing_to_report(records: list) -> str:
    """Why there is no report: the unreadable results files first (their detail names the file and
    the reason), else that no run has scores yet."""
    broken = [r for r in records if r.status == "unreadable"]
    if not broken:
        return "none of the runs has evaluated anything yet (no zero-shot or task scores in results.json)"
    more = f" (and {len(broken) - 1} more unreadable)" if len(broken) > 1 else ""
    rest = len(records) - len(broken)
    others = f"; the other {rest} run(s) have no scores yet" if rest else ""
    return f"nothing to report: {broken[0].detail}{more}{others}"


TARGETS = ("run folders (holding results.json), sweep folders (sweep.json, from fif run -m), folders of runs, "
           "or globs of these")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``results`` and ``report``."""
    results = subparsers.add_parser(
        "results", help="table of runs' A_KA / A_ZS / GM (zero-shot, final, averaged over tasks)",
        description="Print the zero-shot, final and task-averaged A_KA, A_ZS and geometric mean of runs. RUN: "
                    + TARGETS + ", or wandb:ENTITY/PROJECT/RUN_ID (reads the W&B run summary; needs the "
                    "[track] extra, a key and the network). Unfinished runs are listed and marked. When a "
                    "configuration was run with several experiment.seed values, a second table shows mean ± std "
                    "over seeds.")
    results.add_argument("runs", nargs="+", metavar="RUN", help="run, sweep, glob or wandb:ENTITY/PROJECT/RUN_ID")
    fmt = results.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV on stdout (one row per run, empty cell = no value)")
    fmt.add_argument("--json", action="store_true", help="JSON list on stdout (null = no value)")
    results.add_argument("--seeds", action="store_true",
                         help="print runs grouped by configuration instead of one row per run: runs whose configs "
                              "differ only in experiment.seed (and log.*, device, compute and loader settings) "
                              "give one row of mean and sample std over their complete runs (with --json: "
                              "{group, runs, seeds, n, incomplete, <part>_<metric>: {mean, std}}; with --csv: "
                              "<part>_<metric>_mean and _std columns)")
    results.set_defaults(func=cmd_results)

    report = subparsers.add_parser(
        "report", help="self-contained HTML report with plots of runs",
        description="Write one HTML file (figures embedded, no external resources) comparing runs: the KA-ZS "
                    "plane, A_KA / A_ZS against task and against compute, the learning-rate schedule, "
                    "per-dataset change from zero-shot, and the numbers. RUN: " + TARGETS + ".")
    report.add_argument("runs", nargs="+", metavar="RUN", help="run, sweep or glob")
    report.add_argument("--out", default="report.html", help="HTML file to write, atomically (default: report.html)")
    report.add_argument("--title", default="FoMo-in-Flux report", help="page title")
    report.set_defaults(func=cmd_report)
