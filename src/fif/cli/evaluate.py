"""``fif eval``: the command-line side of fif.tools.evaluate_model (zero-shot scores of any model).

Scores go to stdout (a table, or JSON with ``--json``); notes and the progress bar go to stderr,
so ``fif eval --json > scores.json`` stays pure JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

MODEL_HELP = ("what to score (default: the config's experiment.backbone.name with its checkpoint): a backbone name "
              "(mini_clip, openclip_vit_b16, hf-hub:ORG/REPO, local-dir:/path), an open_clip folder, a run's "
              "final_model.pt, a resume checkpoint RUN/checkpoints/step_*.pt (its method rebuilt, e.g. LoRA or "
              "merging) or a run folder (its final_model.pt, else its newest checkpoint; the run's config is the "
              "base for the overrides)")


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def _datasets(count: int, role: str) -> str:
    return f"{count} {role} dataset{'' if count == 1 else 's'}"


def format_table(report: dict[str, Any]) -> str:
    """One row per dataset (name, role KA/ZS, metric, score), then the A_KA, A_ZS and GM lines."""
    from rich.console import Console
    from rich.table import Table

    model = report["model"]
    title = f"zero-shot scores of {model['backbone']}" + (f" ({model['weights']})" if model["weights"] else "")
    table = Table(title=title + (", fixed subsets" if report["subset"] else "") + " (percent)")
    for column, justify in (("dataset", "left"), ("role", "left"), ("metric", "left"), ("score", "right")):
        table.add_column(column, justify=justify)
    for row in report["datasets"]:
        table.add_row(row["name"], row["role"], row["metric"], _number(row["score"]))
    console = Console(file=sys.stdout, width=100)
    with console.capture() as capture:
        console.print(table)
    counts = {role: sum(r["role"] == role for r in report["datasets"]) for role in ("KA", "ZS")}
    point = report["point"]
    lines = [f"A_KA  {_number(point['A_KA']):>6}  ({_datasets(counts['KA'], 'adaptation')})",
             f"A_ZS  {_number(point['A_ZS']):>6}  ({_datasets(counts['ZS'], 'evaluation')})",
             f"GM    {_number(point['geometric_mean']):>6}"]
    return capture.get() + "\n".join(lines) + "\n"


def cmd_eval(args: argparse.Namespace) -> int:
    from fif.errors import FifError
    from fif.tools.evaluate_model import evaluate_model
    from fif.utils.io import atomic_write_json

    report = evaluate_model(args.model, args.overrides, subset=args.subset)
    if args.out:
        try:
            atomic_write_json(Path(args.out), report)
        except OSError as error:
            raise FifError(f"--out {args.out}: cannot write it ({error.strerror or error})") from None
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(format_table(report), end="")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``eval``."""
    parser = subparsers.add_parser(
        "eval", help="zero-shot scores of any model on the benchmark, without training",
        description="Score a model zero-shot (classification top-1, retrieval recall@5) on every dataset of the "
                    "config's data root, as a run's evaluation points do, and print A_KA, A_ZS and their "
                    "geometric mean. Overrides use Hydra syntax as for `fif run` (e.g. experiment=mini "
                    "experiment.dataset.root=DIR evaluation.datasets=[digits,glyphs]). See docs/evaluation.md.")
    parser.add_argument("--model", help=MODEL_HELP)
    parser.add_argument("--subset", action="store_true",
                        help="score the fixed subsets of evaluation.validate_on_subset (0.1 if unset), as a run's "
                             "in-stream points do (retrieval sets whole); default: full test sets")
    parser.add_argument("--out", metavar="FILE.json", help="also write the scores as JSON (atomically)")
    parser.add_argument("--json", action="store_true", help="print the JSON on stdout instead of the table")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides, as for `fif run`")
    parser.set_defaults(func=cmd_eval)
