"""``build_tracker(settings, run_dir)``: the JSONL log always, TensorBoard and W&B when ``log.*`` asks."""

from __future__ import annotations

from pathlib import Path

from fif.config.settings import RunSettings
from fif.tracking.base import Tracker
from fif.tracking.fanout import FanOutTracker
from fif.tracking.jsonl import JsonlTracker


def redacted_config(settings: RunSettings) -> dict:
    """The resolved config for the backends to show, without the W&B API key."""
    return settings.public_dict()


def build_tracker(settings: RunSettings, run_dir: str | Path) -> Tracker:
    """One tracker that fans out to every enabled backend; optional ones are built first so a
    missing package fails before any file is opened."""
    run_dir = Path(run_dir)
    log = settings.log
    optional: list[Tracker] = []
    if log.tensorboard:
        from fif.tracking.tensorboard import TensorBoardTracker

        optional.append(TensorBoardTracker(run_dir / "tensorboard", settings.public_yaml()))
    if log.use:
        from fif.tracking.wandb import WandbTracker

        optional.append(WandbTracker(run_dir, log.project, log.entity, log.group, log.wandb_mode, log.wandb_key,
                                     redacted_config(settings)))
    return FanOutTracker([JsonlTracker(run_dir), *optional])
