"""The always-on event log: one JSON object per line in ``<run>/events.jsonl``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fif.tracking.base import Tracker


class JsonlTracker(Tracker):
    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / "events.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", buffering=1)

    def log(self, event: str, **fields: Any) -> None:
        self._file.write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}) + "\n")

    def close(self) -> None:
        self._file.close()
