"""The report's figures, drawn with matplotlib's object API (no pyplot state) and returned as PNG bytes.

Each function takes loaded runs (fif.report.runs.RunRecord) and draws one figure; a figure
with nothing to show returns None so the page leaves it out instead of showing empty axes.
"""

from __future__ import annotations

import io
import math
from typing import Any
from collections.abc import Sequence

from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from fif.report.roles import dataset_roles
from fif.report.runs import RunRecord, finite

DPI = 110
LABELS = {"A_KA": "A_KA: knowledge accumulation (%)", "A_ZS": "A_ZS: zero-shot retention (%)"}


def colour(index: int) -> str:
    """One colour per run, the same in every figure."""
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf"]
    return palette[index % len(palette)]


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def curve(record: RunRecord, metric: str, axis: str) -> tuple[list[float], list[float]]:
    """(x, y) from the zero-shot point through every evaluated task; axis: task | gflops."""
    xs: list[float] = []
    ys: list[float] = []
    zero = record.part("zero_shot")
    if zero and finite(zero[metric]) is not None:
        xs.append(0.0)
        ys.append(zero[metric])
    for task in record.tasks:
        x, y = finite(task.get("task" if axis == "task" else "gflops")), finite(task.get(metric))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys


def progress_figure(records: Sequence[RunRecord], axis: str) -> bytes | None:
    """A_KA and A_ZS against task (axis=task) or against compute spent (axis=gflops)."""
    if not any(len(curve(r, "A_KA", axis)[0]) > 1 for r in records):
        return None
    figure = Figure(figsize=(11, 4))
    panels = figure.subplots(1, 2)
    for panel, metric in zip(panels, ("A_KA", "A_ZS")):
        for index, record in enumerate(records):
            xs, ys = curve(record, metric, axis)
            if xs:
                panel.plot(xs, ys, marker="o", markersize=3.5, color=colour(index), label=record.name)
        panel.set_ylabel(LABELS[metric])
        panel.set_xlabel("task (0 = zero-shot)" if axis == "task" else "compute spent (GFLOPs, cumulative)")
        panel.grid(alpha=0.3)
        if axis == "task":
            panel.xaxis.get_major_locator().set_params(integer=True)
    panels[0].legend(fontsize=8, loc="best")
    figure.suptitle("Scores against " + ("task" if axis == "task" else "compute spent"))
    return png(figure)


def plane_figure(records: Sequence[RunRecord]) -> bytes | None:
    """The KA-ZS plane: each run's path from its zero-shot start (star) to its last task (big dot),
    over dashed lines of equal geometric mean."""
    paths = [(i, r, curve(r, "A_KA", "task")[1], curve(r, "A_ZS", "task")[1]) for i, r in enumerate(records)]
    paths = [(i, r, ka, zs) for i, r, ka, zs in paths if ka and len(ka) == len(zs)]
    if not paths:
        return None
    figure = Figure(figsize=(7.5, 6))
    panel = figure.subplots()
    starts = set()
    for index, record, ka, zs in paths:
        panel.plot(ka, zs, color=colour(index), alpha=0.45, linewidth=1.2)
        has_zero = record.part("zero_shot") is not None
        if has_zero:
            starts.add((round(ka[0], 6), round(zs[0], 6)))
        if len(ka) > (1 if has_zero else 0):
            panel.scatter([ka[-1]], [zs[-1]], s=80, color=colour(index), edgecolor="black", zorder=3,
                          label=f"{record.name} (last task)")
    for position, (ka0, zs0) in enumerate(sorted(starts)):  # one star when the runs share a backbone
        panel.scatter([ka0], [zs0], marker="*", s=260, color="gold", edgecolor="black", zorder=4,
                      label="zero-shot start" if position == 0 else None)
    xs = [x for _, _, ka, _ in paths for x in ka]
    ys = [y for _, _, _, zs in paths for y in zs]
    x_pad, y_pad = max(1.0, 0.1 * (max(xs) - min(xs))), max(1.0, 0.1 * (max(ys) - min(ys)))
    x_lo, x_hi = max(0.0, min(xs) - x_pad), min(100.0, max(xs) + x_pad)
    y_lo, y_hi = max(0.0, min(ys) - y_pad), min(100.0, max(ys) + y_pad)
    _iso_gm(panel, x_lo, x_hi, y_lo, y_hi)
    panel.set_xlim(x_lo, x_hi)
    panel.set_ylim(y_lo, y_hi)
    panel.set_xlabel(LABELS["A_KA"])
    panel.set_ylabel(LABELS["A_ZS"])
    panel.grid(alpha=0.2)
    panel.legend(fontsize=8, loc="best")
    panel.set_title("Knowledge accumulation vs. zero-shot retention")
    return png(figure)


def _iso_gm(panel: Any, x_lo: float, x_hi: float, y_lo: float, y_hi: float) -> None:
    """Dashed curves A_ZS = GM^2 / A_KA at five round GM values inside the view."""
    low, high = math.sqrt(max(x_lo, 0.01) * max(y_lo, 0.01)), math.sqrt(x_hi * y_hi)
    step = max(0.5, round((high - low) / 6 * 2) / 2)
    level = math.ceil(low / step) * step
    while level < high:
        xs = [x_lo + (x_hi - x_lo) * k / 100 for k in range(101)]
        pts = [(x, level * level / x) for x in xs if x > 0 and y_lo <= level * level / x <= y_hi]
        if len(pts) > 1:
            panel.plot([p[0] for p in pts], [p[1] for p in pts], linestyle="--", color="grey", linewidth=0.7,
                       alpha=0.6)
            panel.annotate(f"GM {level:g}", pts[-1], fontsize=7, color="grey", ha="right", va="bottom")
        level += step


def change_matrix(record: RunRecord) -> tuple[list[str], list[str], list[list[float]]] | None:
    """Rows: datasets (adaptation first, then held-out); columns: tasks; cells: score - zero-shot score."""
    zero = record.view.per_dataset("zero_shot")
    tasks = [t for t in record.tasks if isinstance(t.get("per_dataset"), dict)]
    if not zero or not tasks:
        return None
    roles = dataset_roles(record.results)
    order = {"adaptation": 0, "evaluation": 1}
    names = sorted(zero, key=lambda n: (order.get(roles.get(n, ""), 2), list(zero).index(n)))
    labels = [f"{n} ({_role_tag(roles.get(n))})" for n in names]
    cells = [[_delta(t["per_dataset"].get(n), zero[n]) for t in tasks] for n in names]
    return labels, [str(t.get("task", i + 1)) for i, t in enumerate(tasks)], cells


def _role_tag(role: str | None) -> str:
    return {"adaptation": "KA", "evaluation": "ZS"}.get(role or "", "?")


def _delta(value: Any, zero: Any) -> float:
    a, b = finite(value), finite(zero)
    return a - b if a is not None and b is not None else math.nan


def heatmap_figure(rows: list[str], columns: list[str], cells: list[list[float]], title: str,
                   xlabel: str) -> bytes:
    figure = Figure(figsize=(max(5.0, 2.5 + 0.55 * len(columns)), max(3.0, 1.2 + 0.28 * len(rows))))
    panel = figure.subplots()
    values = [v for row in cells for v in row if not math.isnan(v)]
    limit = max([abs(v) for v in values] + [1.0])
    image = panel.imshow(cells, cmap="RdBu", norm=TwoSlopeNorm(0.0, -limit, limit), aspect="auto",
                         interpolation="nearest")
    panel.set_xticks(range(len(columns)), columns, rotation=0 if len(columns) < 12 else 90, fontsize=8)
    panel.set_yticks(range(len(rows)), rows, fontsize=8)
    panel.set_xlabel(xlabel)
    if len(rows) * len(columns) <= 400:
        for r, row in enumerate(cells):
            for c, value in enumerate(row):
                if not math.isnan(value):
                    panel.text(c, r, f"{value:+.1f}", ha="center", va="center", fontsize=6.5,
                               color="white" if abs(value) > 0.6 * limit else "black")
    boundary = [i for i in range(1, len(rows)) if rows[i].endswith("(ZS)") and not rows[i - 1].endswith("(ZS)")]
    for i in boundary:
        panel.axhline(i - 0.5, color="black", linewidth=1.2)
    figure.colorbar(image, ax=panel, label="change from zero-shot (points)", shrink=0.8)
    panel.set_title(title, fontsize=10)
    return png(figure)


def run_heatmap(record: RunRecord) -> bytes | None:
    matrix = change_matrix(record)
    if matrix is None:
        return None
    rows, columns, cells = matrix
    return heatmap_figure(rows, columns, cells, f"{record.name}: per-dataset change from zero-shot", "task")


def comparison_heatmap(records: Sequence[RunRecord]) -> bytes | None:
    """Last evaluated task of every run side by side (only worth drawing for two runs or more)."""
    matrices = [(r, change_matrix(r)) for r in records]
    matrices = [(r, m) for r, m in matrices if m is not None]
    if len(matrices) < 2:
        return None
    rows = list(dict.fromkeys(label for _, m in matrices for label in m[0]))
    cells = []
    for label in rows:
        cells.append([m[2][m[0].index(label)][-1] if label in m[0] else math.nan for _, m in matrices])
    return heatmap_figure(rows, [r.name for r, _ in matrices], cells,
                          "Per-dataset change from zero-shot at each run's last task", "run")


def schedule(record: RunRecord) -> dict[str, list[float]]:
    """Optimizer step, learning rate, loss and task from the run's ``step`` events.

    The global step is samples seen / batch size - 1 (every step takes one full batch), or, without
    a batch size in the config, (task - 1) * steps_per_task + step from the start event.
    """
    events = record.events()
    per_task = next((e.get("steps_per_task") for e in events if e.get("event") == "start"), None)
    batch = record.view.config_value("experiment.task.batch_size")
    points: dict[int, tuple[float, float, int]] = {}  # by step: a resumed run logs some steps twice
    for event in events:
        if event.get("event") != "step" or finite(event.get("lr")) is None:
            continue
        if isinstance(batch, int) and batch > 0 and isinstance(event.get("samples_seen"), int):
            step = event["samples_seen"] // batch - 1
        elif isinstance(per_task, int):
            step = (int(event["task"]) - 1) * per_task + int(event["step"])
        else:
            continue
        loss = finite(event.get("loss"))
        points[step] = (float(event["lr"]), math.nan if loss is None else loss, int(event["task"]))
    steps = sorted(points)
    return {"step": steps, "lr": [points[s][0] for s in steps], "loss": [points[s][1] for s in steps],
            "task": [points[s][2] for s in steps]}


def schedule_figure(records: Sequence[RunRecord]) -> bytes | None:
    """Learning rate (and loss) against optimizer step; dotted lines where a new task starts."""
    series = [(i, r, schedule(r)) for i, r in enumerate(records)]
    series = [(i, r, s) for i, r, s in series if s["step"]]
    if not series:
        return None
    figure = Figure(figsize=(11, 5.5))
    lr_panel, loss_panel = figure.subplots(2, 1, sharex=True)
    for index, record, s in series:
        lr_panel.plot(s["step"], s["lr"], color=colour(index), label=record.name, linewidth=1.2)
        loss_panel.plot(s["step"], s["loss"], color=colour(index), linewidth=1.0, alpha=0.8)
    _, _, first = series[0]
    for k in range(1, len(first["task"])):
        if first["task"][k] != first["task"][k - 1]:
            for panel in (lr_panel, loss_panel):
                panel.axvline(first["step"][k], color="grey", linestyle=":", linewidth=0.8)
    lr_panel.set_ylabel("learning rate")
    lr_panel.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    loss_panel.set_ylabel("training loss")
    loss_panel.set_xlabel("optimizer step (dotted: a new task starts)")
    for panel in (lr_panel, loss_panel):
        panel.grid(alpha=0.3)
    lr_panel.legend(fontsize=8, loc="best")
    lr_panel.set_title("Learning-rate schedule and training loss (from events.jsonl)")
    return png(figure)
