"""The run folder: its name, its creation and the config.yaml a run (and its resume) starts from."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fif.config import public_config
from fif.errors import FifError
from fif.results import FILENAME
from fif.utils.io import atomic_write


def new_run_dir(cfg: DictConfig) -> Path:
    """``log.folder/log.name`` (default name: method and time); refused if it already holds a run.

    Only the path: the folder is made once the run has built (``create_run_dir``), so a run that
    fails on its data leaves nothing behind.
    """
    name = cfg.log.name or f"{cfg.continual.method}_{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = Path(cfg.log.folder).expanduser() / str(name)
    if (run_dir / FILENAME).exists():
        raise FifError(f"run folder {run_dir} already holds a run ({FILENAME}); choose another log.name, "
                       f"or continue it with log.resume=true")
    return run_dir


def create_run_dir(run_dir: Path, cfg: DictConfig, write_config: bool = True) -> None:
    """Make the folder and write the resolved config (secrets redacted) as config.yaml."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if write_config:
        atomic_write(run_dir / "config.yaml", lambda f: f.write(OmegaConf.to_yaml(public_config(cfg), resolve=True)))
