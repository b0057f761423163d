"""A study's grid file: the runs of one investigation of the paper, with seeds and the findings to check.

A grid is a YAML file the user can copy and edit (the shipped ones are in ``fif/studies/grids``)::

    study: methods                      # the name `fif study NAME` finds it by
    description: one line on the question
    base: [experiment.task.num=10]      # overrides every run gets
    seeds: [0, 1, 2]                    # experiment.seed of each repeat
    arms:                               # name -> overrides: one point of the KA-ZS plane per arm
      finetune: [continual.method=finetune]
      lora: [continual.method=lora, experiment.optimizer.lr=1e-3]
    quick:                              # --quick: a first look (fewer seeds, shorter runs)
      seeds: [0]
      base: [experiment.task.num=4]
    findings:                           # the paper's conclusions, checked on the runs (fif.studies.findings)
      - id: a
        claim: full finetuning accumulates the most knowledge
        metric: final.A_KA
        best: finetune

An optional ``tune`` block chooses one value per arm (the paper tunes each method's learning rate)
in validation mode, never on test data; ``tuned`` holds the values the grid ships with::

    tune:
      key: experiment.optimizer.lr
      values: [1.0e-4, 1.0e-3, 1.0e-2]
      metric: final.geometric_mean      # the mean over the tuning seeds decides
      seeds: [0]
      base: [experiment.dataset.validation_mode=true]
      arms: [lora, bitfit]              # default: every arm
    tuned: {lora: 1.0e-3}

Every run is ``<arm>_seed-<seed>``; its overrides are base, then the arm's tuned value (so an arm's
own override of the key wins), then the arm's, then the seed. Bad fields are one-line errors naming
the file and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fif.errors import FifError
from fif.studies.findings import Finding

ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # a folder name on every filesystem


@dataclass(frozen=True)
class StudyRun:
    """One run of a study: an arm at one seed."""

    arm: str
    seed: int
    overrides: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.arm}_seed-{self.seed}"


@dataclass(frozen=True)
class TuneSpec:
    """Which key is tuned per arm, over which values, judged on which metric (validation mode)."""

    key: str
    values: tuple[Any, ...]
    metric: str
    seeds: tuple[int, ...]
    base: tuple[str, ...]
    arms: tuple[str, ...]

    def runs(self, grid: StudyGrid) -> list[tuple[StudyRun, Any]]:
        """(run, tried value) of every arm x value x seed, always in validation mode (scored on validation
        splits carved from the train splits, never on test data); named ``<arm>_<key leaf>-<value>_seed-<s>``."""
        leaf = self.key.rsplit(".", 1)[-1]
        out = []
        for arm in self.arms:
            for value in self.values:
                for seed in self.seeds:
                    overrides = (*grid.base, *self.base, f"{self.key}={value}", *grid.arms[arm],
                                 "experiment.dataset.validation_mode=true", f"experiment.seed={seed}")
                    out.append((StudyRun(f"{arm}_{leaf}-{value}", seed, overrides), value))
        return out


@dataclass(frozen=True)
class StudyGrid:
    """A parsed grid file (see the module docstring)."""

    name: str
    description: str
    base: tuple[str, ...]
    seeds: tuple[int, ...]
    arms: dict[str, tuple[str, ...]]
    findings: tuple[Finding, ...] = ()
    quick_seeds: tuple[int, ...] | None = None
    quick_base: tuple[str, ...] = ()
    source: str = field(default="", compare=False)
    tune: TuneSpec | None = None
    tuned: dict[str, Any] = field(default_factory=dict)

    def runs(self, quick: bool = False, tuned: dict[str, Any] | None = None) -> list[StudyRun]:
        """Every (arm, seed), arms in file order then seeds; ``quick``: the quick seeds and extra base;
        ``tuned``: chosen values per arm instead of the grid's own ``tuned``."""
        seeds = self.quick_seeds if quick and self.quick_seeds is not None else self.seeds
        base = (*self.base, *self.quick_base) if quick else self.base
        chosen = self.tuned if tuned is None else tuned
        key = self.tune.key if self.tune else None
        return [StudyRun(arm, seed, (*base, *([f"{key}={chosen[arm]}"] if key and arm in chosen else []),
                                     *overrides, f"experiment.seed={seed}"))
                for arm, overrides in self.arms.items() for seed in seeds]


def shipped_grids() -> dict[str, Path]:
    """The grid files that ship with the package, by study name."""
    folder = Path(str(resources.files("fif.studies") / "grids"))
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def find_grid(name_or_path: str) -> Path:
    """A shipped study's grid by name, or a grid file the user wrote."""
    shipped = shipped_grids()
    if name_or_path in shipped:
        return shipped[name_or_path]
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    raise FifError(f"study {name_or_path!r}: not a shipped study (expected one of: {', '.join(shipped)}) nor a "
                   f"grid file")


def _overrides(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise FifError(f"{where}: expected a list of key=value overrides, not {value!r}")
    return tuple(value)


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    if (not isinstance(value, list) or not value or len(set(value)) != len(value)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)):
        raise FifError(f"{where}: expected a non-empty list of distinct seeds >= 0, not {value!r}")
    return tuple(value)


def _arms(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict) or not value:
        raise FifError(f"{where}: expected a mapping of arm name -> list of overrides")
    arms = {}
    for name, overrides in value.items():
        if not isinstance(name, str) or not ARM_NAME.match(name):
            raise FifError(f"{where}.{name}: an arm name is letters, digits and _.+- (it names run folders)")
        arms[name] = _overrides(overrides, f"{where}.{name}")
    return arms


def load_grid(name_or_path: str) -> StudyGrid:
    """The grid of a shipped study or of a file; every field checked, errors name the file and field."""
    path = find_grid(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise FifError(f"{path}: not a readable grid file ({type(error).__name__}: "
                       f"{str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise FifError(f"{path}: a grid file is a mapping with study, seeds, arms (see fif/studies/grid.py)")
    known = {"study", "description", "base", "seeds", "arms", "quick", "findings", "tune", "tuned"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise FifError(f"{path}: {unknown[0]} is not a field of a grid file (expected one of: {', '.join(sorted(known))})")
    where = str(path)
    name = data.get("study") or path.stem
    quick = data.get("quick") or {}
    if not isinstance(quick, dict) or set(quick) - {"seeds", "base"}:
        raise FifError(f"{where}: quick: expected a mapping with seeds and/or base")
    arms = _arms(data.get("arms"), f"{where}: arms")
    findings = tuple(Finding.from_dict(item, f"{where}: findings[{i}]", list(arms))
                     for i, item in enumerate(data.get("findings") or []))
    tune = _tune(data.get("tune"), f"{where}: tune", list(arms)) if data.get("tune") is not None else None
    tuned = data.get("tuned") or {}
    if not isinstance(tuned, dict) or (tuned and tune is None) or set(tuned) - set(arms):
        raise FifError(f"{where}: tuned: expected a mapping of arm name -> value of the tune block's key (arms: "
                       f"{', '.join(arms)}), not {tuned!r}")
    return StudyGrid(str(name), str(data.get("description") or ""), _overrides(data.get("base"), f"{where}: base"),
                     _seeds(data.get("seeds", [0]), f"{where}: seeds"), arms, findings,
                     _seeds(quick["seeds"], f"{where}: quick.seeds") if "seeds" in quick else None,
                     _overrides(quick.get("base"), f"{where}: quick.base"), str(path), tune, dict(tuned))


def _tune(data: Any, where: str, arms: list[str]) -> TuneSpec:
    from fif.studies.findings import check_metric

    if not isinstance(data, dict) or set(data) - {"key", "values", "metric", "seeds", "base", "arms"}:
        raise FifError(f"{where}: expected a mapping with key, values, metric and optionally seeds, base, arms")
    key, values = data.get("key"), data.get("values")
    if not isinstance(key, str) or "=" in key or not key:
        raise FifError(f"{where}.key={key!r} is not valid: expected a dotted config key, e.g. experiment.optimizer.lr")
    if not isinstance(values, list) or len(values) < 2 or len(set(map(str, values))) != len(values):
        raise FifError(f"{where}.values: expected at least two distinct values to choose from, not {values!r}")
    chosen_arms = data.get("arms") or arms
    if not isinstance(chosen_arms, list) or set(chosen_arms) - set(arms):
        raise FifError(f"{where}.arms: expected arm names of this grid ({', '.join(arms)}), not {chosen_arms!r}")
    return TuneSpec(key, tuple(values), check_metric(data.get("metric"), where),
                    _seeds(data.get("seeds", [0]), f"{where}.seeds"), _overrides(data.get("base"), f"{where}.base"),
                    tuple(chosen_arms))
