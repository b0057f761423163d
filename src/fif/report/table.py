"""The ``fif results`` tables: one row per run, and one per group of seeds (fif.report.seeds), as rich
text, CSV or JSON (for scripts)."""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import Any
from collections.abc import Sequence

from fif.report.runs import HEADLINE, PARTS, RunRecord, finite
from fif.report.seeds import SHORT, SeedGroup, column_label, group_row, stat_columns

SCORE_COLUMNS = [f"{part}_{SHORT[k]}" for part in PARTS for k in HEADLINE]
TRANSFER_COLUMNS = ["forgetting", "backward_transfer", "forgetting_zs", "task_masked_accuracy"]  # fif.eval.transfer
COLUMNS = ["run", "status", "detail", "method", "tasks_done", "tasks_total", *SCORE_COLUMNS, *TRANSFER_COLUMNS,
           "path"]


def row(record: RunRecord) -> dict[str, Any]:
    """Flat, JSON-safe: scores are floats or None (not written yet, or not a number)."""
    out: dict[str, Any] = {"run": record.name, "status": record.status, "detail": record.detail,
                           "method": record.method, "tasks_done": len(record.tasks) if record.source == "folder"
                           else None, "tasks_total": record.tasks_total}
    for part in PARTS:
        scores = record.part(part) or {}
        for k in HEADLINE:
            out[f"{part}_{SHORT[k]}"] = finite(scores.get(k))
    transfer = record.view.transfer
    for k in TRANSFER_COLUMNS:
        out[k] = finite(transfer.get(k))
    out["path"] = str(record.path) if record.path else None
    return out


def to_json(records: Sequence[RunRecord]) -> str:
    return json.dumps([row(r) for r in records], indent=1) + "\n"


def to_csv(records: Sequence[RunRecord]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: ("" if v is None else v) for k, v in row(record).items()})
    return buffer.getvalue()


def to_rich(records: Sequence[RunRecord], width: int | None = None) -> str:
    """Final and task-averaged scores (the reference reports both) next to the zero-shot start."""
    from rich.table import Table

    table = Table(title="FoMo-in-Flux results (percent; averaged = mean over tasks)")
    table.add_column("run", overflow="fold")
    table.add_column("status", overflow="fold", max_width=40)
    table.add_column("method", overflow="fold")
    for label in ("zero-shot", "final", "avg"):  # the order of PARTS
        for k in HEADLINE:
            table.add_column(f"{label} {SHORT[k]}", justify="right")
    rows = [row(r) for r in records]
    best = max((r["averaged_GM"] for r in rows if r["averaged_GM"] is not None), default=None)
    for values in rows:
        status = values["status"] + (f" ({values['detail']})" if values["detail"] else "")
        cells = []
        for column in SCORE_COLUMNS:
            value = values[column]
            text = "-" if value is None else f"{value:.2f}"
            cells.append(f"[bold]{text}[/bold]" if column == "averaged_GM" and value == best and len(rows) > 1
                         else text)
        table.add_row(values["run"], status, values["method"] or "-", *cells,
                      style=None if values["status"] == "complete" else "dim")
    return _render(table, width)


def transfer_rich(records: Sequence[RunRecord], width: int | None = None) -> str:
    """Forgetting, backward transfer and task-masked accuracy of the runs that have them ("" if none)."""
    from rich.table import Table

    rows = [row(r) for r in records if r.view.transfer]
    if not rows:
        return ""
    table = Table(title="forgetting and transfer (percent points; docs/evaluation.md)")
    table.add_column("run", overflow="fold")
    for label in ("forgetting (streamed)", "backward transfer", "forgetting (held-out)", "task-masked acc."):
        table.add_column(label, justify="right")
    for values in rows:
        table.add_row(values["run"], *("-" if values[k] is None else f"{values[k]:.2f}" for k in TRANSFER_COLUMNS))
    return _render(table, width)


def _render(table: Any, width: int | None, fit: bool = False) -> str:
    """The table as text: the terminal's width, 200 columns when not a terminal (``fit``: wider when the
    table needs it, so a file or pipe never gets a number cut)."""
    from rich.console import Console

    console = Console(file=sys.stdout, width=width or (None if sys.stdout.isatty() else 200))
    if fit and width is None and not sys.stdout.isatty():
        natural = console.measure(table, options=console.options.update_width(10_000)).maximum
        console.width = max(console.width, natural)
    with console.capture() as capture:
        console.print(table)
    return capture.get()


def seeds_json(groups: Sequence[SeedGroup]) -> str:
    """One object per group: {"group", "runs", "seeds", "n", "incomplete", "<part>_<metric>": {"mean", "std"}}."""
    return json.dumps([group_row(group) for group in groups], indent=1) + "\n"


def seeds_csv(groups: Sequence[SeedGroup]) -> str:
    """One row per group; lists joined by ';', `<column>_mean` and `<column>_std` (empty = no value)."""
    columns = stat_columns(groups)
    fields = ["group", "n", "seeds", "runs", "incomplete", *(f"{c}_{s}" for c in columns for s in ("mean", "std"))]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for group in groups:
        line: dict[str, Any] = {"group": group.name, "n": group.n, "seeds": ";".join(map(str, group.seeds)),
                                "runs": ";".join(r.name for r in group.runs),
                                "incomplete": ";".join(r.name for r in group.incomplete)}
        for column in columns:
            value = group.stats.get(column)
            for side in ("mean", "std"):
                number = None if value is None else getattr(value, side)
                line[f"{column}_{side}"] = "" if number is None else number
        writer.writerow(line)
    return buffer.getvalue()


def seeds_rich(groups: Sequence[SeedGroup], width: int | None = None) -> str:
    """Mean ± sample std of every group's complete runs; '-' for the std of a single run."""
    from rich.table import Table

    table = Table(title="mean ± std over seeds (percent; runs equal but for experiment.seed and bookkeeping keys)")
    table.add_column("group", overflow="fold")
    table.add_column("n seeds", overflow="fold")
    table.add_column("seeds", overflow="fold")
    columns = stat_columns(groups)
    for column in columns:  # fold, never cut, a number on a narrow terminal
        table.add_column(column_label(column), justify="right", overflow="fold")
    for group in groups:
        cells = [group.stats[c].text() if c in group.stats else "-" for c in columns]
        table.add_row(group.name, group.seeds_text(), ", ".join(map(str, group.seeds)) or "-", *cells,
                      style=None if group.n else "dim")
    return _render(table, width, fit=True)
