"""One run as the report sees it: a table row or a report section, from a run folder or from W&B.

Both loaders build it: fif.report.runs (run and sweep folders) and fif.report.wandb_runs (a W&B
run's summary); tables, plots and the HTML page read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fif.results import RunResults


@dataclass
class RunRecord:
    """One run as a table row or a report section; scores are percentages."""

    name: str
    status: str  # complete | incomplete | failed | pending | unreadable
    path: Path | None = None
    detail: str = ""
    results: dict[str, Any] = field(default_factory=dict)
    tasks_total: int | None = None
    source: str = "folder"  # folder | wandb

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def view(self) -> RunResults:
        """The run's results.json through its owner (fif.results)."""
        return RunResults(self.results)

    @property
    def tasks(self) -> list[dict[str, Any]]:
        return self.view.tasks

    @property
    def method(self) -> str | None:
        return self.view.method

    def part(self, name: str) -> dict[str, float] | None:
        """zero_shot / final / averaged headline scores, or None when the run has not written them."""
        return self.view.point(name)

    def events(self) -> list[dict[str, Any]]:
        """The run's event log (empty when it has none); unparsable lines (a crash mid-write) are skipped."""
        path = self.path / "events.jsonl" if self.path else None
        if path is None or not path.is_file():
            return []
        events = []
        for line in path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events
