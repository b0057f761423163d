"""``log.resume``: which run to continue, whether it may be continued, and from which checkpoint.

``log.resume=true`` continues the run at ``log.folder/log.name`` (starting it if it does not exist
yet, so a cluster job can be requeued with the very same command); ``log.resume=/path/to/run``
continues that folder. The config must be the run's own (``config.yaml``) except for keys that
cannot change the numbers (``IGNORED``); otherwise the resume is refused with one line naming
the differing keys, unless ``log.resume_force=true``. A finished run (results.json, status
complete) is reported and left alone. Before the checkpoints are read, the temporary files of
writes the kill interrupted are removed (one note line says how many).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

from fif.config.blocks import LogOptions
from fif.config.compose import read_config_file
from fif.config.settings import RunSettings
from fif.errors import FifError
from fif.results import RunResults
from fif.runtime.distributed import launch_rank
from fif.train.checkpoint import load_latest
from fif.utils.io import remove_stale_temps

# Keys that may differ between the killed run and its resume: they change where and how the run
# reports, never what it computes. log.* is logging, progress bars, checkpoint cadence, trackers;
# evaluation loader workers only change how test images are read.
IGNORED_PREFIXES = ("log.",)
IGNORED_KEYS = frozenset({"experiment.dataset.num_workers", "evaluation.datasets"})  # evaluation.datasets: fif eval only
SHOWN = 4  # differing keys named in the refusal


@dataclass
class ResumePlan:
    run_dir: Path
    checkpoint: Path | None = None
    state: dict[str, Any] | None = None  # None: no checkpoint yet, the run restarts from its beginning
    finished: dict[str, Any] | None = None  # the results of a run that is already complete
    forced: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # key -> (run's value, this value)


def _is_on(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _is_off(value: Any) -> bool:
    return value is None or value is False or (isinstance(value, str) and value.strip().lower() in
                                                ("", "false", "null", "none"))


def resume_dir(log: LogOptions) -> Path | None:
    """The run folder ``log.resume`` names, or None for a new run."""
    value = log.resume
    if _is_off(value):
        return None
    if _is_on(value):
        if not log.name:
            raise FifError("log.resume=true continues the run at log.folder/log.name, but log.name is not set "
                           "(set log.name, or give the run folder: log.resume=/path/to/run)")
        return Path(str(log.folder)).expanduser() / str(log.name)
    path = Path(str(value)).expanduser()
    if not (path / "config.yaml").is_file():
        raise FifError(f"log.resume={value}: {path} is not a run folder (no config.yaml)")
    return path


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ (missing on one side counts), except the IGNORED ones."""
    old, new = dict(_leaves(saved)), dict(_leaves(current))
    missing = object()
    differ = {}
    for key in sorted(old.keys() | new.keys()):
        if key.startswith(IGNORED_PREFIXES) or key in IGNORED_KEYS:
            continue
        a, b = old.get(key, missing), new.get(key, missing)
        if a != b or isinstance(a, bool) != isinstance(b, bool):
            differ[key] = (None if a is missing else a, None if b is missing else b)
    return differ


def describe_differences(differ: dict[str, tuple[Any, Any]]) -> str:
    shown = [f"{key} (run: {a!r}, now: {b!r})" for key, (a, b) in list(differ.items())[:SHOWN]]
    more = f" and {len(differ) - SHOWN} more" if len(differ) > SHOWN else ""
    return ", ".join(shown) + more


def plan_resume(settings: RunSettings, echo: Callable[[str], Any] = print) -> ResumePlan | None:
    """What ``log.resume`` asks for; None: a new run (also for log.resume=true before the run exists)."""
    run_dir = resume_dir(settings.log)
    if run_dir is None:
        return None
    if not (run_dir / "config.yaml").is_file():
        echo(f"log.resume=true: no run at {run_dir} yet, starting it")
        return None
    saved = read_config_file(run_dir / "config.yaml")
    differ = config_differences(saved, settings.resolved())
    if differ and not settings.log.resume_force:
        raise FifError(f"log.resume: the run at {run_dir} has a different config: {describe_differences(differ)}; "
                       f"resume with the run's own settings, or set log.resume_force=true to continue anyway")
    if differ:
        echo(f"log.resume_force=true: continuing {run_dir} with a different config: {describe_differences(differ)}")
    try:
        existing = RunResults.read(run_dir)
    except FifError:  # none yet, or unreadable: the checkpoints decide
        existing = None
    if existing is not None and existing.complete:
        return ResumePlan(run_dir, finished=existing.data, forced=differ)
    remove_interrupted_writes(run_dir, echo)
    found = load_latest(run_dir / "checkpoints", echo)
    if found is None:
        echo(f"no checkpoint in {run_dir / 'checkpoints'}: restarting the run from its beginning")
        return ResumePlan(run_dir, forced=differ)
    path, state = found
    return ResumePlan(run_dir, path, state, forced=differ)


def remove_interrupted_writes(run_dir: Path, echo: Callable[[str], Any] = print) -> int:
    """Remove the temporary files a killed run left mid-write (``fif.utils.io``'s ``.<name>.<random>.tmp``)
    in the run folder and its checkpoints/ folder, nothing else; one note line when there were any.

    Safe only while no process writes the folder: a resume holds its lock (fif.train.run_folder) by
    now, and only rank 0 of torchrun cleans (the other ranks' plan_resume may run while rank 0 writes).
    """
    if launch_rank() != 0:
        return 0
    removed = [*remove_stale_temps(run_dir), *remove_stale_temps(run_dir / "checkpoints")]
    if removed:
        echo(f"note: removed {len(removed)} temporary file(s) of writes interrupted in {run_dir} "
             f"({', '.join(p.name for p in removed[:3])}{', ...' if len(removed) > 3 else ''})")
    return len(removed)


# Fields of results.json that measure wall-clock time: the only ones a resumed run may not
# reproduce (a resume re-runs the steps after its checkpoint, and machines differ in speed).
TIMING_KEYS = frozenset({"seconds", "time"})
TIMING_SUFFIXES = ("_seconds", "_per_second")


def without_timing(results: Any) -> Any:
    """``results`` without timing fields (TIMING_KEYS, *_seconds, *_per_second, at any depth) and without
    ``config.log`` (where and how the run was logged): what must be bit-identical after a resume."""
    if isinstance(results, dict):
        kept = {k: without_timing(v) for k, v in results.items()
                if k not in TIMING_KEYS and not str(k).endswith(TIMING_SUFFIXES)}
        if isinstance(kept.get("config"), dict):
            kept["config"] = {k: v for k, v in kept["config"].items() if k != "log"}
        return kept
    if isinstance(results, list):
        return [without_timing(v) for v in results]
    return results
