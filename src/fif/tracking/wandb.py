"""Weights & Biases logging (``log.use=true``, the reference's switch).

Modes: ``online`` streams to the server; ``offline`` writes ``<run>/wandb/offline-run-*`` on disk
(no network, no key) to upload later with ``wandb sync <run>/wandb/offline-run-*``; ``disabled``
makes every call a no-op. The run's id is kept in ``<run>/wandb_run.json`` so a resumed run
continues the same W&B run, and ``fif results`` can point at it. Series (train/*, eval/*,
dataset/*) are logged against their own step metric (samples seen, task); the one-per-run values
(zero_shot/*, final/*, averaged/*) go to the run summary, which ``fif results wandb:PATH`` reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fif.errors import FifError
from fif.tracking.base import Tracker
from fif.tracking.scalars import EVAL_AXIS, TRAIN_AXIS, ScalarMapper
from fif.utils.io import atomic_write_json

MODES = ("online", "offline", "disabled")
RECORD = "wandb_run.json"


def import_wandb(what: str = "log.use=true (Weights & Biases)") -> Any:
    try:
        import wandb
    except ImportError:
        raise FifError(f"{what} needs the wandb package (pip install 'fomo-in-flux[track]')") from None
    return wandb


class WandbTracker(Tracker):
    def __init__(self, run_dir: str | Path, project: str | None, entity: str | None = None,
                 group: str | None = None, mode: str = "online", key: str | None = None,
                 config: dict | None = None, name: str | None = None) -> None:
        if mode not in MODES:
            raise FifError(f"log.wandb_mode={mode!r} is not valid: expected one of {', '.join(MODES)}")
        wandb = import_wandb()
        self.run_dir = Path(run_dir)
        record = self.run_dir / RECORD
        previous = json.loads(record.read_text()) if record.is_file() else {}
        settings = wandb.Settings(api_key=key) if key else None
        try:
            self.run = wandb.init(project=project, entity=entity, group=group, name=name or self.run_dir.name,
                                  id=previous.get("id"), resume="allow" if previous.get("id") else None,
                                  dir=str(self.run_dir), mode=mode, config=config, settings=settings,
                                  reinit="finish_previous")
        except wandb.errors.Error as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise FifError(f"W&B could not start (log.wandb_mode={mode}): {first}; "
                           f"log.wandb_mode=offline logs without network") from None
        self.run.define_metric(TRAIN_AXIS)
        self.run.define_metric("train/*", step_metric=TRAIN_AXIS)
        self.run.define_metric("within/*", step_metric=TRAIN_AXIS)  # evaluations inside tasks
        self.run.define_metric(EVAL_AXIS)
        for pattern in ("eval/*", "dataset/*"):
            self.run.define_metric(pattern, step_metric=EVAL_AXIS)
        self.mapper = ScalarMapper()
        if mode != "disabled":
            atomic_write_json(record, {"id": self.run.id, "project": self.run.project, "entity": self.run.entity,
                                       "mode": mode, "url": self.run.url,
                                       "local_dir": str(Path(self.run.dir).parent)})

    def log(self, event: str, **fields: Any) -> None:
        scalars = self.mapper.map(event, fields)
        series = {s.tag: s.value for s in scalars if not s.is_summary}
        if series:
            self.run.log(series)
        for scalar in scalars:
            if scalar.is_summary:
                self.run.summary[scalar.tag] = scalar.value

    def close(self) -> None:
        self.run.finish()
