"""Find runs and load what they wrote: ``results.json`` (the source of truth) and ``events.jsonl``.

A target is a run folder (holds results.json), a sweep folder (holds sweep.json, from
``fif run -m``), a folder of run folders, a glob of any of these, or a W&B reference
(``wandb:ENTITY/PROJECT/RUN_ID``; see fif.report.wandb_runs). A run that has not finished is
kept and marked (status ``incomplete``/``failed``/``pending``) rather than dropped, so a table never
silently hides a run; a failed run (results.json status ``failed``) shows its one-line error as the detail.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import Any
from collections.abc import Sequence

from fif.errors import FifError
from fif.report.record import RunRecord
from fif.results import FILENAME, HEADLINE, POINTS, RunResults, finite

PARTS = POINTS  # the headline points a table shows (fif.results owns the layout)
__all__ = ["HEADLINE", "PARTS", "RunRecord", "collect_runs", "finite", "load_run", "load_sweep"]


def _tasks_total(run_dir: Path, results: RunResults) -> int | None:
    """From the event log's start event (exact, also with dataset_incremental), else the config."""
    events = run_dir / "events.jsonl"
    if events.is_file():
        with events.open() as handle:
            for line in handle:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if event.get("event") == "start" and isinstance(event.get("tasks"), int):
                    return event["tasks"]
    return None if results.config_value("experiment.task.dataset_incremental") else \
        results.config_value("experiment.task.num")


def load_run(run_dir: Path, name: str | None = None) -> RunRecord:
    """One run folder; never raises for a run that is merely unfinished or broken (it is marked)."""
    name = name or run_dir.name
    path = run_dir / FILENAME
    if not path.is_file():
        started = (run_dir / "events.jsonl").is_file() or (run_dir / "config.yaml").is_file()
        return RunRecord(name, "incomplete" if started else "pending", run_dir, f"no {FILENAME} yet")
    try:
        results = RunResults.read(path)
    except FifError as error:
        return RunRecord(name, "unreadable", run_dir, str(error))
    total = _tasks_total(run_dir, results)
    done = len(results.tasks)
    status = "complete" if results.finished else (results.status or "incomplete")
    if status == "running":
        status = "incomplete"
    if results.failed:  # stopped on an error (fif.train.run): the reason is what a reader needs
        return RunRecord(name, "failed", run_dir, results.error or "no error recorded", results.data, total)
    detail = "" if status == "complete" else f"{done}/{total if total is not None else '?'} tasks"
    return RunRecord(name, status, run_dir, detail, results.data, total)


def load_sweep(sweep_dir: Path) -> list[RunRecord]:
    """A ``fif run -m`` folder, in sweep order; failed runs keep their error as the detail."""
    try:
        sweep = json.loads((sweep_dir / "sweep.json").read_text())
        entries = [dict(entry, name=str(entry["name"])) for entry in sweep["runs"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise FifError(f"{sweep_dir / 'sweep.json'} is malformed ({type(error).__name__}: {error}); "
                       f"expected a fif run -m sweep file") from None
    records = []
    for entry in entries:
        label = f"{sweep_dir.name}/{entry['name']}"
        record = load_run(sweep_dir / entry["name"], label)
        if entry.get("status") == "failed" and not record.complete:
            record.status, record.detail = "failed", str(entry.get("error") or "")
        records.append(record)
    return records


def _from_path(path: Path) -> list[RunRecord]:
    if path.is_file() and path.name == "results.json":
        path = path.parent
    if not path.is_dir():
        raise FifError(f"{path}: no such run folder")
    if (path / "results.json").is_file() or (path / "events.jsonl").is_file():
        return [load_run(path)]
    if (path / "sweep.json").is_file():
        return load_sweep(path)
    children = sorted(p for p in path.iterdir() if p.is_dir())
    records: list[RunRecord] = []
    for child in children:
        if (child / "sweep.json").is_file():
            records += load_sweep(child)
        elif (child / "results.json").is_file() or (child / "events.jsonl").is_file():
            records.append(load_run(child))
    if not records:
        raise FifError(f"{path}: not a run folder (no results.json), a sweep folder (no sweep.json) "
                       f"or a folder of runs")
    return records


def _unique_names(records: list[RunRecord]) -> None:
    """Two runs named alike (same folder name in different places) get their parent folder prefixed."""
    counts: dict[str, int] = {}
    for record in records:
        counts[record.name] = counts.get(record.name, 0) + 1
    for record in records:
        if counts[record.name] > 1 and record.path is not None:
            record.name = f"{record.path.parent.name}/{record.path.name}"


def collect_runs(targets: Sequence[str]) -> list[RunRecord]:
    """Every run the targets name, in the order given (duplicates dropped)."""
    from fif.report.wandb_runs import is_wandb_ref, load_wandb_run

    if not targets:
        raise FifError("no runs given (expected run folders, sweep folders, globs or wandb:ENTITY/PROJECT/RUN_ID)")
    records: list[RunRecord] = []
    for target in targets:
        if is_wandb_ref(target):
            records.append(load_wandb_run(target))
        elif glob.has_magic(target):
            matches = sorted(glob.glob(str(Path(target).expanduser())))
            if not matches:
                raise FifError(f"{target}: no run folders match")
            found = []
            for match in matches:  # a glob may also match stray files or folders: those are skipped
                try:
                    found += _from_path(Path(match))
                except FifError:
                    continue
            if not found:
                raise FifError(f"{target}: {len(matches)} paths match but none is a run or sweep folder")
            records += found
        else:
            records += _from_path(Path(target).expanduser())
    seen: set[Any] = set()
    unique = []
    for record in records:
        key = record.path.resolve() if record.path else (record.source, record.name)
        if key not in seen:
            seen.add(key)
            unique.append(record)
    _unique_names(unique)
    return unique
