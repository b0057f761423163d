"""``build_tracker(cfg, run_dir)``: the JSONL log always, TensorBoard and W&B when the config asks."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fif.tracking.base import Tracker
from fif.tracking.fanout import FanOutTracker
from fif.tracking.jsonl import JsonlTracker


def redacted_config(cfg: DictConfig) -> dict:
    """The resolved config for the backends to show, without the W&B API key."""
    config = OmegaConf.to_container(cfg, resolve=True)
    if config.get("log", {}).get("wandb_key"):
        config["log"]["wandb_key"] = "<redacted>"
    return config


def build_tracker(cfg: DictConfig, run_dir: str | Path) -> Tracker:
    """One tracker that fans out to every enabled backend; optional ones are built first so a
    missing package fails before any file is opened."""
    run_dir = Path(run_dir)
    log = cfg.log
    optional: list[Tracker] = []
    if log.get("tensorboard", False):
        from fif.tracking.tensorboard import TensorBoardTracker

        optional.append(TensorBoardTracker(run_dir / "tensorboard", OmegaConf.to_yaml(redacted_config(cfg))))
    if log.get("use", False):
        from fif.tracking.wandb import WandbTracker

        optional.append(WandbTracker(run_dir, log.get("project"), log.get("entity"), log.get("group"),
                                     str(log.get("wandb_mode", "online")), log.get("wandb_key"),
                                     redacted_config(cfg)))
    return FanOutTracker([JsonlTracker(run_dir), *optional])
