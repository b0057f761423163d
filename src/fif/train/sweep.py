"""``fif run -m``: a Hydra-style multirun, run in turn in this process.

Overrides are parsed by Hydra's own override parser and expanded as Hydra's basic sweeper does:
the cartesian product of every sweep (``a,b``, ``choice(a,b)``, ``range(1,4)``), later overrides of
a key replacing earlier ones. Each configuration runs in its own folder,
``<log.folder>/<sweep>/<i>_<swept values>``, where ``<sweep>`` is ``log.name`` or
``sweep_<timestamp>``; ``sweep.json`` beside them is rewritten atomically after every run. A run
that fails with a FifError is recorded as failed and the sweep goes on.
"""

from __future__ import annotations

import gc
import itertools
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Sequence

from fif.errors import FifError

if TYPE_CHECKING:  # composed configs are handed on to the run (RunSettings.from_config)
    from omegaconf import DictConfig

RESERVED = ("log.folder", "log.name")  # set per run by the sweep
SCORES = ("A_KA", "A_ZS", "geometric_mean")


@dataclass
class SweepRun:
    """One configuration of a sweep and what became of it."""

    name: str
    overrides: list[str]
    swept: dict[str, str]
    status: str = "pending"  # pending | complete | failed
    run_dir: str | None = None
    error: str | None = None
    zero_shot: dict[str, float] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)
    averaged: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None


def _parse(overrides: Sequence[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FifError(f"bad override ({' '.join(overrides)}): {first}") from None


def expand(overrides: Sequence[str]) -> list[tuple[list[str], dict[str, str]]]:
    """Every configuration of the sweep: (its override list, {swept key: value})."""
    from hydra.core.override_parser.types import ValueType

    choices: dict[str, list[tuple[str, str | None]]] = {}  # key -> [(override, swept value or None)]
    for override in _parse(overrides):
        key = override.get_key_element()
        if override.is_delete():
            choices[key] = [(override.input_line, None)]
        elif override.is_sweep_override():
            if override.value_type == ValueType.GLOB_CHOICE_SWEEP or not override.is_discrete_sweep():
                raise FifError(f"{override.input_line}: only comma lists, choice(...) and range(...) can be swept")
            choices[key] = [(f"{key}={value}", value) for value in override.sweep_string_iterator()]
        else:
            choices[key] = [(f"{key}={override.get_value_element_as_str()}", None)]
    for key in RESERVED:
        if len(choices.get(key, ())) > 1:
            raise FifError(f"{key} cannot be swept (the sweep names each run's folder)")
    runs = []
    for combination in itertools.product(*choices.values()):
        runs.append(([text for text, _ in combination],
                     {key: value for key, (_, value) in zip(choices, combination) if value is not None
                      and len(choices[key]) > 1}))
    return runs


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]+", "-", text).strip("-")[:limit] or "x"


def run_names(configs: list[tuple[list[str], dict[str, str]]], methods: list[str]) -> list[str]:
    """``<i>_<method>[_<key>-<value>...]``: the index keeps names unique and in order."""
    width = len(str(len(configs) - 1))
    names = []
    for i, ((_, swept), method) in enumerate(zip(configs, methods)):
        parts = [_slug(method)] + [f"{_slug(k.split('.')[-1])}-{_slug(v)}" for k, v in swept.items()
                                   if k.lstrip("+~") != "continual.method"]
        names.append(f"{i:0{width}d}_" + "_".join(parts))
    return names


def plan(overrides: Sequence[str]) -> tuple[Path, list[SweepRun], list[DictConfig]]:
    """Expand, compose and check the run-wide keys of every configuration up front, so a bad override or
    value costs no compute; what only a run can tell (an unknown method, too few samples) fails its row."""
    from fif.config import compose, with_values
    from fif.config.blocks import check_run_options

    configs = expand(overrides)
    composed = []
    for texts, _ in configs:
        try:
            composed.append((cfg := compose(texts), check_run_options(cfg)))
        except FifError as error:
            raise FifError(f"{error} (in sweep configuration {' '.join(texts)})") from None
    log = composed[0][1].log
    sweep_dir = Path(log.folder).expanduser() / str(log.name or f"sweep_{datetime.now():%Y%m%d-%H%M%S}")
    if (sweep_dir / "sweep.json").exists():
        raise FifError(f"sweep folder {sweep_dir} already holds a sweep (sweep.json); choose another log.name")
    names = run_names(configs, [options.continual.method for _, options in composed])
    runs = [SweepRun(name, [t for t in texts if t.split("=")[0].lstrip("+~") not in RESERVED], swept)
            for name, (texts, swept) in zip(names, configs)]
    cfgs = [with_values(cfg, {"log.folder": str(sweep_dir), "log.name": run.name}) for (cfg, _), run in zip(composed, runs)]
    return sweep_dir, runs, cfgs


def summary(overrides: Sequence[str], runs: list[SweepRun], status: str) -> dict[str, Any]:
    return {"overrides": list(overrides), "status": status,
            "failed": sum(r.status == "failed" for r in runs), "runs": [asdict(r) for r in runs]}


def run_sweep(overrides: Sequence[str], echo: Callable[..., None] = print) -> tuple[Path, list[SweepRun]]:
    """Run every configuration in turn; return the sweep folder and the runs (failed ones included)."""
    from fif.train.run import run_experiment
    from fif.utils.io import atomic_write_json

    sweep_dir, runs, cfgs = plan(overrides)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(sweep_dir / "sweep.json", summary(overrides, runs, "running"))
    echo(f"sweep {sweep_dir}: {len(runs)} runs")
    for position, (run, cfg) in enumerate(zip(runs, cfgs), start=1):
        echo(f"[{position}/{len(runs)}] {run.name}: {' '.join(run.overrides) or '(defaults)'}")
        start = time.time()
        try:
            output = run_experiment(cfg, echo=echo)
        except FifError as error:
            run.status, run.error = "failed", str(error)
            echo(f"[{position}/{len(runs)}] {run.name} failed: {error}")
        else:
            results = output.results
            run.status, run.run_dir = "complete", str(output.run_dir)
            run.zero_shot, run.final, run.averaged = ({k: results[part][k] for k in SCORES}
                                                      for part in ("zero_shot", "final", "averaged"))
            del output, results
        run.seconds = time.time() - start
        _release_memory()
        atomic_write_json(sweep_dir / "sweep.json", summary(overrides, runs, "running"))
    atomic_write_json(sweep_dir / "sweep.json", summary(overrides, runs, "complete"))
    return sweep_dir, runs


def _release_memory() -> None:
    """Drop the finished run's model and data before the next one is built."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
