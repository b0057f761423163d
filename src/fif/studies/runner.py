"""Run a study: every (arm, seed) of its grid as a `fif run`, finished runs never redone, then one page.

Each run is a separate ``fif run`` process (``--jobs N`` at a time), so runs are isolated and a
killed study leaves every run resumable: at the next ``fif study`` a run whose results.json says
``complete`` is kept as it is, and every other run continues with ``log.resume=true`` (the exact
resume of fif.train.resume), so nothing finished is recomputed and nothing half-done is thrown
away. ``study.json`` beside the runs is rewritten atomically after every run; at the end the
findings are judged (fif.studies.findings) and ``findings.md`` and ``report.html`` (the KA-ZS
plane with iso-GM curves, mean ± std over seeds, the findings table) are written.
"""

from __future__ import annotations

import html
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

from fif.errors import FifError
from fif.results import RunResults
from fif.studies.findings import Verdict, judge, metric_value
from fif.studies.grid import StudyGrid, StudyRun
from fif.utils.io import atomic_write, atomic_write_json

Echo = Callable[[str], object]


@dataclass
class RunState:
    """What became of one run of the study."""

    run: StudyRun
    status: str  # complete | failed | pending
    seconds: float | None = None
    error: str | None = None

    def record(self) -> dict[str, Any]:
        return {"name": self.run.name, "arm": self.run.arm, "seed": self.run.seed,
                "overrides": list(self.run.overrides), "status": self.status, "seconds": self.seconds,
                "error": self.error}


def run_status(run_dir: Path) -> str:
    """complete (results.json says so), or pending (absent, running when killed, or failed: run again)."""
    try:
        return "complete" if RunResults.read(run_dir).status == "complete" else "pending"
    except Exception:  # noqa: BLE001 - absent or torn results.json: the run is simply not finished
        return "pending"


def _threads(jobs: int) -> str:
    """Torch threads per run process: the cores shared out, so parallel runs do not oversubscribe them."""
    return str(max(1, (os.cpu_count() or 1) // jobs))


def _launch(run: StudyRun, runs_dir: Path, jobs: int) -> RunState:
    """One `fif run` process (resuming the run if it was started); its output goes to <run>.log."""
    command = [sys.executable, "-m", "fif.cli", "run", *run.overrides, f"log.folder={runs_dir}",
               f"log.name={run.name}", "log.resume=true", "log.progress=false"]
    env = dict(os.environ, OMP_NUM_THREADS=_threads(jobs))
    start = time.time()
    with open(runs_dir / f"{run.name}.log", "a") as log:  # a resumed run appends
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    seconds = time.time() - start
    if code == 0 and run_status(runs_dir / run.name) == "complete":
        return RunState(run, "complete", seconds)
    tail = (runs_dir / f"{run.name}.log").read_text().strip().splitlines()[-1:] or [f"exit status {code}"]
    return RunState(run, "failed", seconds, tail[0])


def _save(folder: Path, grid: StudyGrid, quick: bool, states: list[RunState]) -> None:
    atomic_write_json(folder / "study.json", {"study": grid.name, "grid": grid.source, "quick": quick,
                                              "runs": [s.record() for s in states]})


def _run_all(label: str, runs: list[StudyRun], runs_dir: Path, jobs: int, echo: Echo,
             saved: Callable[[list[RunState]], None]) -> list[RunState]:
    """Every run, finished ones skipped, ``jobs`` at a time; ``saved`` is called after each run."""
    if jobs < 1:
        raise FifError(f"--jobs {jobs}: expected a number of parallel runs >= 1")
    runs_dir.mkdir(parents=True, exist_ok=True)
    states = [RunState(run, run_status(runs_dir / run.name)) for run in runs]
    todo = [s for s in states if s.status != "complete"]
    echo(f"{label}: {len(states)} runs, {len(states) - len(todo)} already complete, {len(todo)} to run, {jobs} at "
         f"a time; runs in {runs_dir}")
    saved(states)
    start, done = time.time(), 0
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_launch, state.run, runs_dir, jobs): state for state in todo}
        for future, state in futures.items():
            outcome = future.result()
            state.status, state.seconds, state.error = outcome.status, outcome.seconds, outcome.error
            done += 1
            note = f"failed: {outcome.error}" if outcome.error else f"{outcome.seconds:.0f} s"
            echo(f"[{done}/{len(todo)}] {state.run.name}: {note}")
            saved(states)
    if todo:
        echo(f"{label}: ran {len(todo)} runs in {time.time() - start:.0f} s")
    return states


def execute(grid: StudyGrid, folder: Path, quick: bool = False, jobs: int = 1, echo: Echo = print,
            tuned: dict[str, Any] | None = None) -> list[RunState]:
    """Every run of the grid, finished ones skipped; returns each run's state (failed runs included).
    ``tuned``: values chosen by ``tune`` instead of the grid's shipped ones."""
    label = f"study {grid.name}{' (quick)' if quick else ''}"
    return _run_all(label, grid.runs(quick, tuned), folder / "runs", jobs, echo,
                    lambda states: _save(folder, grid, quick, states))


def tune(grid: StudyGrid, folder: Path, jobs: int = 1, echo: Echo = print) -> dict[str, Any]:
    """The grid's ``tune`` block run in validation mode: per arm, the value with the best mean metric over the
    tuning seeds. Written to ``<folder>/tuned.yaml`` (with every value's mean), which later runs of the
    study in that folder use."""
    import yaml

    spec = grid.tune
    if spec is None:
        raise FifError(f"study {grid.name} ({grid.source}) has no tune block: nothing to tune")
    pairs = spec.runs(grid)
    runs_dir = folder / "tuning"
    states = _run_all(f"tuning {spec.key} of study {grid.name}", [run for run, _ in pairs], runs_dir, jobs, echo,
                      lambda states: atomic_write_json(folder / "tuning.json", [s.record() for s in states]))
    means: dict[str, dict[str, float]] = {}
    chosen: dict[str, Any] = {}
    for arm in spec.arms:
        scores: dict[Any, list[float]] = {}
        for (run, value), state in zip(pairs, states):
            if state.status == "complete" and run.arm.startswith(f"{arm}_"):
                results = RunResults.read(runs_dir / run.name).data
                scores.setdefault(value, []).append(metric_value(results, spec.metric))
        if not scores:
            raise FifError(f"tuning {spec.key} of arm {arm}: no run finished (see {runs_dir}/*.log)")
        means[arm] = {str(v): sum(x) / len(x) for v, x in scores.items()}
        chosen[arm] = max(scores, key=lambda v: sum(scores[v]) / len(scores[v]))
        echo(f"tuned {arm}: {spec.key}={chosen[arm]} ({spec.metric} " +
             ", ".join(f"{v}: {m:.2f}" for v, m in means[arm].items()) + ")")
    record = {"key": spec.key, "metric": spec.metric, "seeds": list(spec.seeds), "tuned": chosen, "means": means}
    atomic_write(folder / "tuned.yaml", lambda handle: yaml.safe_dump(record, handle, sort_keys=False))
    return chosen


def read_tuned(folder: Path) -> dict[str, Any] | None:
    """The values an earlier ``--tune`` chose for the study in ``folder`` (None: none there)."""
    import yaml

    path = folder / "tuned.yaml"
    return (yaml.safe_load(path.read_text()) or {}).get("tuned") if path.is_file() else None


def verdicts(grid: StudyGrid, runs_dir: Path, states: list[RunState]) -> list[tuple[Any, Verdict | None]]:
    """Each finding of the grid judged on the complete runs (None: an arm it needs has none)."""
    complete = [(s.run.arm, RunResults.read(runs_dir / s.run.name).data) for s in states if s.status == "complete"]
    judged = []
    for finding in grid.findings:
        per_arm: dict[str, list[float]] = {}
        for arm, results in complete:  # each results.json read once, whatever the number of findings
            if arm in finding.arms:
                per_arm.setdefault(arm, []).append(metric_value(results, finding.metric))
        judged.append((finding, judge(finding, per_arm)))
    return judged


HEADER = ("id", "claim", "metric", "effect", "spread", "seeds", "holds", "runs")
RULE = ("A finding holds when its effect (the claimed mean difference) exceeds the spread (the sum of the compared "
        "arms' standard deviations over seeds).")


def _cells(finding: Any, verdict: Verdict | None) -> list[str]:
    """One row of the findings table, in HEADER's order."""
    cells = [finding.id, finding.claim, finding.metric]
    if verdict is None:
        return [*cells, "", "", "0", "not run", ""]
    return [*cells, f"{verdict.effect:+.2f}", f"{verdict.spread:.2f}", str(verdict.seeds),
            "yes" if verdict.holds else "no", verdict.detail]


def findings_markdown(grid: StudyGrid, judged: list[tuple[Any, Verdict | None]]) -> str:
    lines = [f"# Findings of study {grid.name}", "", grid.description, "", RULE, "",
             "| " + " | ".join(HEADER) + " |", "|---|---|---|---:|---:|---:|---|---|"]
    lines += ["| " + " | ".join(_cells(finding, verdict)) + " |" for finding, verdict in judged]
    return "\n".join(lines) + "\n"


def findings_html(judged: list[tuple[Any, Verdict | None]]) -> str:
    rows = ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(finding, verdict)) + "</tr>"
            for finding, verdict in judged]
    head = "".join(f"<th>{h}</th>" for h in HEADER)
    return (f"<h2>Findings</h2><p class='meta'>{RULE}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def write_page(grid: StudyGrid, folder: Path, states: list[RunState]) -> tuple[Path, Path]:
    """findings.md and report.html of the study's complete runs."""
    from fif.report.html import write_report
    from fif.report.runs import load_run

    runs_dir = folder / "runs"
    judged = verdicts(grid, runs_dir, states)
    markdown = atomic_write(folder / "findings.md", lambda handle: handle.write(findings_markdown(grid, judged)))
    records = [load_run(runs_dir / s.run.name) for s in states if s.status == "complete"]
    page = write_report(records, folder / "report.html", f"FoMo-in-Flux study: {grid.name}", findings_html(judged))
    return markdown, page
