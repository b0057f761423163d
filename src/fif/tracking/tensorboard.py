"""TensorBoard event files in ``<run>/tensorboard`` (``tensorboard --logdir runs``).

Written through torch.utils.tensorboard's SummaryWriter, which needs the ``tensorboard`` package
(an optional extra) but not TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fif.errors import FifError
from fif.tracking.base import Tracker
from fif.tracking.scalars import ScalarMapper


class TensorBoardTracker(Tracker):
    def __init__(self, log_dir: str | Path, config_yaml: str | None = None, flush_secs: int = 10) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise FifError("log.tensorboard=true needs the tensorboard package "
                           "(pip install 'fomo-in-flux[track]')") from None
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=flush_secs)
        self.mapper = ScalarMapper()
        if config_yaml:  # TensorBoard's text tab renders markdown: indent to keep the YAML verbatim
            self.writer.add_text("config", "\n".join("    " + line for line in config_yaml.splitlines()))

    def log(self, event: str, **fields: Any) -> None:
        for scalar in self.mapper.map(event, fields):
            self.writer.add_scalar(scalar.tag, scalar.value, scalar.step)

    def close(self) -> None:
        self.writer.close()
