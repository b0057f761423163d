"""Read a run's headline scores back from Weights & Biases (``fif results wandb:ENTITY/PROJECT/RUN_ID``).

The W&B tracker writes ``zero_shot/*``, ``final/*`` and ``averaged/*`` into the run summary
(fif.tracking.wandb); this reads that summary through the public API. It needs the network and
a key (WANDB_API_KEY or ``wandb login``); without them it fails with one line.
"""

from __future__ import annotations

import os
import re

from fif.errors import FifError
from fif.report.record import RunRecord
from fif.results import HEADLINE, POINTS

_URL = re.compile(r"^https?://[^/]+/([^/]+)/([^/]+)/runs/([^/?#]+)")


def is_wandb_ref(target: str) -> bool:
    return target.startswith("wandb:") or bool(_URL.match(target))


def wandb_path(target: str) -> str:
    """``wandb:E/P/ID`` or a run page URL -> ``E/P/ID``."""
    match = _URL.match(target)
    path = "/".join(match.groups()) if match else target[len("wandb:"):]
    if len([part for part in path.split("/") if part]) != 3:
        raise FifError(f"{target}: expected wandb:ENTITY/PROJECT/RUN_ID or a W&B run URL")
    return path


def load_wandb_run(target: str) -> RunRecord:
    from fif.tracking.wandb import import_wandb

    path = wandb_path(target)
    wandb = import_wandb(f"reading the W&B run {path}")
    mode = os.environ.get("WANDB_MODE", "")
    if mode in ("offline", "disabled", "dryrun"):
        raise FifError(f"W&B run {path}: WANDB_MODE={mode}, so the W&B API is not reachable "
                       f"(unset WANDB_MODE, or give the run folder instead)")
    try:
        run = wandb.Api(timeout=20).run(path)
        summary = dict(run.summary)
        config = dict(run.config)
        state = str(run.state)
    except Exception as error:  # noqa: BLE001 - any API/network failure becomes one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FifError(f"W&B run {path} could not be read: {first}") from None
    results: dict = {"config": config}
    for part in POINTS:
        if all(f"{part}/{k}" in summary for k in HEADLINE):
            results[part] = {k: summary[f"{part}/{k}"] for k in HEADLINE}
    complete = state == "finished" and "final" in results and "averaged" in results
    detail = "" if complete else f"W&B state {state}" + ("" if "averaged" in results else ", no averaged/* in summary")
    total = (config.get("experiment") or {}).get("task", {}).get("num")
    return RunRecord(f"wandb:{path}", "complete" if complete else "incomplete", None, detail, results, total,
                     source="wandb")
