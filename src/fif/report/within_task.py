"""The stability gap in the report: scores inside tasks (evaluation.every_n_samples / gap_samples)
against samples seen, joined to the task-end points, and what those evaluations cost."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from fif.report.plots import LABELS, colour, png
from fif.report.runs import RunRecord, finite


def gap_curve(record: RunRecord, metric: str) -> tuple[list[float], list[float], list[float], list[float]]:
    """(x, y) of every point in samples-seen order, and (x, y) of the task-end points alone.

    The start is the zero-shot point on the fixed subsets when the run has them (what the points
    inside tasks score), else on the full sets.
    """
    start = record.results.get("zero_shot_subset") or record.results.get("zero_shot") or {}
    points = [(0.0, finite(start.get(metric)), True)]
    points += [(finite(w.get("samples_seen")), finite(w.get(metric)), False) for w in record.view.within_task]
    points += [(finite(t.get("samples_seen")), finite(t.get(metric)), True) for t in record.tasks]
    points = sorted((p for p in points if p[0] is not None and p[1] is not None), key=lambda p: p[0])
    ends = [p for p in points if p[2]]
    return [p[0] for p in points], [p[1] for p in points], [p[0] for p in ends], [p[1] for p in ends]


def stability_gap_figure(records: Sequence[RunRecord]) -> bytes | None:
    """A_KA and A_ZS against samples seen, through the evaluations inside tasks (None: no run has any)."""
    with_gap = [r for r in records if r.view.within_task]
    if not with_gap:
        return None
    figure = Figure(figsize=(11, 4))
    panels = figure.subplots(1, 2)
    for panel, metric in zip(panels, ("A_KA", "A_ZS")):
        for index, record in enumerate(records):
            if record not in with_gap:
                continue
            xs, ys, end_x, end_y = gap_curve(record, metric)
            panel.plot(xs, ys, marker=".", markersize=4, linewidth=1.2, color=colour(index), label=record.name)
            panel.plot(end_x, end_y, "o", markersize=6, color=colour(index))
        for task in with_gap[0].tasks[:-1]:  # task boundaries of the first run
            if finite(task.get("samples_seen")) is not None:
                panel.axvline(task["samples_seen"], color="#999", linestyle=":", linewidth=0.8)
        panel.set_xlabel("samples seen")
        panel.set_ylabel(LABELS[metric])
        panel.grid(alpha=0.3)
    panels[0].legend(fontsize=8, loc="best")
    figure.suptitle("Inside tasks: the stability gap (small dots: evaluations inside a task; large: task ends)")
    return png(figure)


def evaluation_cost(record: RunRecord) -> tuple[int, float, float | None]:
    """(evaluations inside tasks, their seconds, their share of the run's seconds or None)."""
    within = record.view.within_task
    seconds = sum(finite(w.get("seconds")) or 0.0 for w in within)
    total = finite(record.results.get("seconds"))
    return len(within), seconds, (seconds / total if total else None)
