"""The ``fif results`` table: one row per run, as rich text, CSV or JSON (for scripts)."""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import Any, Sequence

from fif.report.runs import HEADLINE, PARTS, RunRecord, finite

SHORT = {"A_KA": "A_KA", "A_ZS": "A_ZS", "geometric_mean": "GM"}
SCORE_COLUMNS = [f"{part}_{SHORT[k]}" for part in PARTS for k in HEADLINE]
COLUMNS = ["run", "status", "detail", "method", "tasks_done", "tasks_total", *SCORE_COLUMNS, "path"]


def row(record: RunRecord) -> dict[str, Any]:
    """Flat, JSON-safe: scores are floats or None (not written yet, or not a number)."""
    out: dict[str, Any] = {"run": record.name, "status": record.status, "detail": record.detail,
                           "method": record.method, "tasks_done": len(record.tasks) if record.source == "folder"
                           else None, "tasks_total": record.tasks_total}
    for part in PARTS:
        scores = record.part(part) or {}
        for k in HEADLINE:
            out[f"{part}_{SHORT[k]}"] = finite(scores.get(k))
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
    from rich.console import Console
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
    console = Console(file=sys.stdout, width=width or (None if sys.stdout.isatty() else 200))
    with console.capture() as capture:
        console.print(table)
    return capture.get()
