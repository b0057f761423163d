"""``fif report``: one self-contained HTML page (figures inlined as base64 PNG, CSS inline, no
scripts, no external URLs) that can be mailed, archived or opened offline."""

from __future__ import annotations

import base64
import html
from datetime import datetime
from pathlib import Path
from collections.abc import Sequence

from fif.report import plots
from fif.report.seeds import seeds_section
from fif.report.within_task import evaluation_cost, stability_gap_figure
from fif.report.runs import HEADLINE, PARTS, RunRecord, finite
from fif.utils.io import atomic_write

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: right; }
th { background: #f4f4f4; } td.text, th.text { text-align: left; }
tr.incomplete td { color: #999; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; margin-top: 0.3em; }
details { margin: 0.5em 0 1.5em; } summary { cursor: pointer; color: #1f4e99; }
"""

SHORT = {"A_KA": "A_KA", "A_ZS": "A_ZS", "geometric_mean": "GM"}


def _num(value: object, digits: int = 2) -> str:
    number = finite(value)
    return "-" if number is None else f"{number:.{digits}f}"


def _figure(data: bytes | None, alt: str, caption: str) -> str:
    if data is None:
        return ""
    encoded = base64.b64encode(data).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def summary_table(records: Sequence[RunRecord]) -> str:
    head = "".join(f"<th>{label} {SHORT[k]}</th>" for label in ("zero-shot", "final", "avg") for k in HEADLINE)
    lines = ['<table><tr><th class="text">run</th><th class="text">status</th><th class="text">method</th>'
             f"<th>tasks</th>{head}<th>compute (GFLOPs)</th><th>time (s)</th></tr>"]
    for record in records:
        scores = "".join(f"<td>{_num((record.part(part) or {}).get(k))}</td>" for part in PARTS for k in HEADLINE)
        status = record.status + (f" ({record.detail})" if record.detail else "")
        tasks = record.tasks
        gflops = tasks[-1].get("gflops") if tasks else None
        done = f"{len(tasks)}/{record.tasks_total}" if record.tasks_total else str(len(tasks))
        css = "" if record.complete else ' class="incomplete"'
        lines.append(f"<tr{css}><td class='text'>{html.escape(record.name)}</td>"
                     f"<td class='text'>{html.escape(status)}</td>"
                     f"<td class='text'>{html.escape(record.method or '-')}</td><td>{done}</td>{scores}"
                     f"<td>{_num(gflops, 1)}</td><td>{_num(record.view.data.get('seconds'), 0)}</td></tr>")
    lines.append("</table>")
    return "\n".join(lines)


def task_table(record: RunRecord) -> str:
    rows = ["<table><tr><th>task</th><th>A_KA</th><th>A_ZS</th><th>GM</th><th>samples seen</th>"
            "<th>GFLOPs</th><th>seconds</th></tr>"]
    zero = record.part("zero_shot")
    if zero:
        rows.append(f"<tr><td>0 (zero-shot)</td>{''.join(f'<td>{_num(zero[k])}</td>' for k in HEADLINE)}"
                    "<td>0</td><td>0</td><td>-</td></tr>")
    for task in record.tasks:
        rows.append(f"<tr><td>{html.escape(str(task.get('task', '?')))}</td>"
                    f"{''.join(f'<td>{_num(task.get(k))}</td>' for k in HEADLINE)}"
                    f"<td>{html.escape(str(task.get('samples_seen', '-')))}</td>"
                    f"<td>{_num(task.get('gflops'), 1)}</td><td>{_num(task.get('seconds'), 1)}</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)


def transfer_table(records: Sequence[RunRecord]) -> str:
    """Forgetting, backward transfer and task-masked accuracy of each run that has them (fif.eval.transfer)."""
    rows = [(r, r.view.transfer) for r in records if r.view.transfer]
    if not rows:
        return ""
    lines = ['<table><tr><th class="text">run</th><th>forgetting (streamed)</th><th>backward transfer</th>'
             "<th>forgetting (held-out)</th><th>task-masked accuracy</th></tr>"]
    for record, transfer in rows:
        cells = "".join(f"<td>{_num(transfer.get(k))}</td>" for k in
                        ("forgetting", "backward_transfer", "forgetting_zs", "task_masked_accuracy"))
        lines.append(f"<tr><td class='text'>{html.escape(record.name)}</td>{cells}</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _gap_caption(records: Sequence[RunRecord]) -> str:
    costs = []
    for record in records:
        count, seconds, share = evaluation_cost(record)
        if count:
            costs.append(f"{record.name}: {count} evaluations, {seconds:.0f} s"
                         + (f" ({100 * share:.0f}% of the run)" if share is not None else ""))
    return ("A_KA and A_ZS inside every task (evaluation.every_n_samples / gap_samples, on the fixed subsets when "
            "the run has them) joined to the task ends; dotted lines are task boundaries. A dip after a boundary "
            "and its recovery is the stability gap. Cost: " + "; ".join(costs) + ".")


def render(records: Sequence[RunRecord], title: str = "FoMo-in-Flux report", lead: str = "") -> str:
    """The whole page as a string; ``lead``: HTML placed before the numbers (a study's findings)."""
    try:
        from importlib.metadata import version

        fif_version = version("fomo-in-flux")
    except Exception:  # noqa: BLE001 - a source checkout without metadata
        fif_version = "(source)"
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p class='meta'>{len(records)} run(s); generated {datetime.now():%Y-%m-%d %H:%M} by fif "
            f"{html.escape(fif_version)}. Scores are percentages; A_KA = mean over the streamed (adaptation) "
            f"datasets, A_ZS = mean over the held-out datasets, GM = sqrt(A_KA &middot; A_ZS); "
            f"avg = mean over tasks.</p>",
            lead, "<h2>Numbers</h2>", summary_table(records)]
    body.append(seeds_section(records))
    with_tasks = [r for r in records if r.tasks]
    body.append("<h2>Knowledge accumulation vs. zero-shot retention</h2>")
    body.append(_figure(plots.plane_figure(with_tasks), "KA-ZS plane",
                        "Each run's path from the zero-shot model (star) through every task to its last task "
                        "(large dot). Up and right is better; dashed lines join points of equal geometric mean."))
    body.append("<h2>Scores over the stream</h2>")
    body.append(_figure(plots.progress_figure(with_tasks, "task"), "A_KA and A_ZS against task",
                        "A_KA and A_ZS after every task; task 0 is the zero-shot model."))
    body.append(_figure(plots.progress_figure(with_tasks, "gflops"), "A_KA and A_ZS against compute",
                        "The same scores against the cumulative training compute (results.json tasks[*].gflops)."))
    gap = stability_gap_figure(with_tasks)
    if gap is not None:
        body.append("<h2>Inside tasks: the stability gap</h2>")
        body.append(_figure(gap, "A_KA and A_ZS against samples seen, inside tasks", _gap_caption(with_tasks)))
    transfer = transfer_table(records)
    if transfer:
        body.append("<h2>Forgetting and transfer</h2>")
        body.append("<p class='meta'>Per-dataset forgetting (best earlier score minus the final one), backward "
                    "transfer (final minus the score right after the dataset's last task) and the reference's "
                    "task-masked accuracy (each image among its task's classes), averaged; docs/evaluation.md.</p>")
        body.append(transfer)
    body.append("<h2>Learning-rate schedule</h2>")
    body.append(_figure(plots.schedule_figure(with_tasks), "learning rate against step",
                        "Learning rate and training loss per optimizer step, from each run's events.jsonl."))
    body.append("<h2>Per-dataset change from zero-shot</h2>")
    body.append(_figure(plots.comparison_heatmap(with_tasks), "per-dataset change, all runs",
                        "Score at each run's last task minus the zero-shot score; KA rows are streamed datasets, "
                        "ZS rows held-out ones (below the black line)."))
    for record in with_tasks:
        body.append(f"<h3>{html.escape(record.name)}</h3>")
        body.append(_figure(plots.run_heatmap(record), f"per-dataset change, {record.name}",
                            "Score after each task minus the zero-shot score (points); blue = gained, red = lost."))
        body.append(f"<details><summary>per-task numbers of {html.escape(record.name)}</summary>"
                    f"{task_table(record)}</details>")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(part for part in body if part) + "\n</body></html>\n")


def write_report(records: Sequence[RunRecord], out: str | Path, title: str = "FoMo-in-Flux report",
                 lead: str = "") -> Path:
    """Render, then write atomically (a reader never sees half a page)."""
    page = render(records, title, lead)
    return atomic_write(Path(out), lambda handle: handle.write(page))
