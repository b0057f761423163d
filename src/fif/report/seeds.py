"""Repeats of one configuration under several ``experiment.seed`` values, as one row of mean ± std.

A score of one seed says little about a method; researchers repeat a run with a few seeds and
report the mean and the sample standard deviation. Runs are put in one group when their configs
(results.json ``config``) are equal except for keys that cannot change what the run computes:

- ``experiment.seed``: the repeat itself;
- ``log.*``: run name and folder, progress bars, checkpoints and their cadence, resume, trackers
  (TensorBoard, W&B): where and how a run reports;
- ``device`` and ``experiment.compute.*`` (fused AdamW kernel, TF32, torch.compile, activation
  checkpointing): where and how the same step runs; they move numbers at rounding level only, as a
  repeat on another machine would;
- ``experiment.dataset.num_workers``, ``train_workers``, ``prefetch``: processes that read or build
  batches; every draw of a batch is fixed by (seed, task, step, slot) in the main process
  (fif.data.samples.loader), so they change speed only;
- ``experiment.dataset.preload`` and ``preload_test_only``: the same pixels held in RAM;
- ``experiment.backbone.cache_dir``: where downloaded weights are kept;
- ``evaluation.datasets``: read by ``fif eval`` only, ``fif run`` ignores it;
- ``continual.<name>`` blocks of methods other than the run's ``continual.method`` (a method reads
  only its own block: fif.methods.build_method).

Only complete runs are averaged; a group's unfinished runs are listed (``incomplete``), never
averaged. Runs without a config (no results.json yet, unreadable) join no group. Per group: every
headline number (zero_shot / final / averaged x A_KA / A_ZS / GM) and every numeric key of
results.json's ``transfer`` block that all its complete runs have, as mean and sample standard
deviation (None for a single run).
"""

from __future__ import annotations

import html
import json
import os
import re
from dataclasses import dataclass, field
from statistics import fmean, stdev
from typing import Any
from collections.abc import Iterator, Sequence

from fif.report.record import RunRecord
from fif.results import HEADLINE, POINTS, finite

SHORT = {"A_KA": "A_KA", "A_ZS": "A_ZS", "geometric_mean": "GM"}
LABELS = {"zero_shot": "zero-shot", "final": "final", "averaged": "avg"}
SCORES = [(f"{part}_{SHORT[k]}", part, k) for part in POINTS for k in HEADLINE]  # (column, point, metric)
TRANSFER = "transfer"  # column prefix of the transfer numbers (fif.results.RunResults.transfer)

SEED_KEY = "experiment.seed"
IGNORED_PREFIXES = ("log.", "experiment.compute.")
IGNORED_KEYS = frozenset({SEED_KEY, "device", "experiment.dataset.num_workers", "experiment.dataset.train_workers",
                          "experiment.dataset.prefetch", "experiment.dataset.preload",
                          "experiment.dataset.preload_test_only", "experiment.backbone.cache_dir",
                          "evaluation.datasets"})


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation over a group's runs (std None for one run; both None: no value)."""

    mean: float | None
    std: float | None

    def text(self, digits: int = 2) -> str:
        if self.mean is None:
            return "-"
        std = "-" if self.std is None else f"{self.std:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {std}"


@dataclass
class SeedGroup:
    """Runs of one configuration: the complete ones (sorted by seed) are averaged, the rest listed."""

    name: str
    runs: list[RunRecord]
    incomplete: list[RunRecord] = field(default_factory=list)
    stats: dict[str, Stat] = field(default_factory=dict)  # "<point>_<metric>" and "transfer_<key>"

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> list[Any]:
        return [seed_of(run) for run in self.runs]

    def seeds_text(self) -> str:
        """'3 seeds', '1 seed', plus the unfinished runs that were left out of the mean."""
        text = f"{self.n} seed{'' if self.n == 1 else 's'}"
        return text + (f" (+{len(self.incomplete)} not complete)" if self.incomplete else "")


def seed_of(record: RunRecord) -> Any:
    return record.view.config_value(SEED_KEY)


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted keys of a nested config (fif.train.resume has the same walk, but importing it would pull
    torch into the report)."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


def ignored(key: str, method: Any) -> bool:
    """True for a config key that cannot change the run's numbers (see the module docstring)."""
    if key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES):
        return True
    parts = key.split(".")
    return len(parts) > 2 and parts[0] == "continual" and parts[1] != str(method)


def config_key(record: RunRecord) -> tuple[tuple[str, str], ...] | None:
    """What a run's config must equal to share a group (None: the run has no config)."""
    config = record.view.config
    if not config:
        return None
    method = record.view.method
    # json.dumps tells true from 1 and keeps lists hashable
    return tuple(sorted((key, json.dumps(value, sort_keys=True)) for key, value in _leaves(config)
                        if not ignored(key, method)))


def headline_values(record: RunRecord) -> dict[str, float | None]:
    """``<point>_<metric>`` -> the run's score (None when it has not written it)."""
    points = {part: record.part(part) or {} for part in POINTS}
    return {column: finite(points[part].get(metric)) for column, part, metric in SCORES}


def transfer_values(record: RunRecord) -> dict[str, float]:
    """The numeric top-level keys of the run's transfer block ({} when it has none)."""
    return {key: float(value) for key, value in record.view.transfer.items()
            if not isinstance(value, bool) and finite(value) is not None}


def stat(values: Sequence[float | None]) -> Stat:
    """Mean and sample std; no value when any run lacks one (a mean over fewer runs would mislead)."""
    if not values or any(value is None for value in values):
        return Stat(None, None)
    numbers = [float(value) for value in values if value is not None]
    return Stat(fmean(numbers), stdev(numbers) if len(numbers) > 1 else None)


def aggregate(runs: Sequence[RunRecord]) -> dict[str, Stat]:
    """Every headline number, then every transfer key all runs have (in the first run's order)."""
    scores = [headline_values(run) for run in runs]
    stats = {column: stat([values[column] for values in scores]) for column, _, _ in SCORES}
    transfers = [transfer_values(run) for run in runs]
    if transfers:
        for key in transfers[0]:
            if all(key in values for values in transfers):
                stats[f"{TRANSFER}_{key}"] = stat([values[key] for values in transfers])
    return stats


_NUMBERS = re.compile(r"(\d+(?:\.\d+)?)")


def _merge(texts: Sequence[str]) -> str:
    """One text for several: itself when all are equal, else common prefix + '*' + common suffix."""
    if len(set(texts)) == 1:
        return texts[0]
    prefix = os.path.commonprefix(list(texts))
    rests = [text[len(prefix):] for text in texts]
    suffix = os.path.commonprefix([rest[::-1] for rest in rests])[::-1]
    return f"{prefix}*{suffix}"


def group_name(names: Sequence[str]) -> str:
    """Run names with the differing parts starred: ``lr1e-3_seed0``, ``lr1e-3_seed1`` -> ``lr1e-3_seed*``.

    Names split alike into text and number pieces are merged piece by piece (so every differing
    number gets its own star); otherwise the common prefix and suffix are kept. When less than half
    of the shortest name is shared, the first name stands for the group ("alpha (+1 more)")."""
    unique = list(dict.fromkeys(names))
    if len(unique) <= 1:
        return unique[0] if unique else "-"
    pieces = [_NUMBERS.split(name) for name in unique]
    if len({len(split) for split in pieces}) == 1:
        merged = "".join(_merge(column) for column in zip(*pieces))
    else:
        merged = _merge(unique)
    kept = len(merged.replace("*", ""))
    return merged if kept * 2 >= min(map(len, unique)) else f"{unique[0]} (+{len(unique) - 1} more)"


def _seed_order(record: RunRecord) -> tuple[bool, float, str, str]:
    seed = seed_of(record)
    number = finite(seed) if not isinstance(seed, bool) else None
    return number is None, number if number is not None else 0.0, str(seed), record.name


def group_runs(records: Sequence[RunRecord]) -> list[SeedGroup]:
    """Groups in the order of their first run; runs of a group sorted by seed, then name."""
    members: dict[tuple[tuple[str, str], ...], list[RunRecord]] = {}
    for record in records:
        key = config_key(record)
        if key is not None:
            members.setdefault(key, []).append(record)
    groups = []
    taken: dict[str, int] = {}
    for runs in members.values():
        complete = sorted((run for run in runs if run.complete), key=_seed_order)
        name = group_name([run.name for run in complete or runs])  # the averaged runs name the group
        taken[name] = taken.get(name, 0) + 1
        if taken[name] > 1:  # two configurations whose runs are named alike
            name = f"{name} #{taken[name]}"
        groups.append(SeedGroup(name, complete, [run for run in runs if not run.complete], aggregate(complete)))
    return groups


def has_repeats(groups: Sequence[SeedGroup]) -> bool:
    """True when some group averages two seeds or more (else a seeds table would repeat the run table)."""
    return any(group.n >= 2 for group in groups)


def stat_columns(groups: Sequence[SeedGroup]) -> list[str]:
    """The headline columns, then every transfer column some group has (first-seen order)."""
    columns = [column for column, _, _ in SCORES]
    for group in groups:
        columns += [column for column in group.stats if column not in columns]
    return columns


def column_label(column: str) -> str:
    """``averaged_GM`` -> ``avg GM``; ``transfer_forgetting`` -> ``forgetting``."""
    for part, label in LABELS.items():
        if column.startswith(f"{part}_"):
            return f"{label} {column[len(part) + 1:]}"
    return column[len(TRANSFER) + 1:] if column.startswith(f"{TRANSFER}_") else column


def group_row(group: SeedGroup, columns: Sequence[str] | None = None) -> dict[str, Any]:
    """JSON-safe: {"group", "runs", "seeds", "n", "incomplete", "<column>": {"mean", "std"}}."""
    out: dict[str, Any] = {"group": group.name, "runs": [run.name for run in group.runs], "seeds": group.seeds,
                           "n": group.n, "incomplete": [run.name for run in group.incomplete]}
    for column in columns or list(group.stats):
        value = group.stats.get(column)
        if value is not None:
            out[column] = {"mean": value.mean, "std": value.std}
    return out


def seeds_section(records: Sequence[RunRecord]) -> str:
    """``fif report``'s section of mean ± std over seeds ("" when no configuration was repeated)."""
    groups = group_runs(records)
    if not has_repeats(groups):
        return ""
    columns = stat_columns(groups)
    head = "".join(f"<th>{html.escape(column_label(column))}</th>" for column in columns)
    lines = ["<h2>Mean ± std over seeds</h2>",
             "<p class='meta'>Runs whose configs differ only in experiment.seed (and in keys that cannot change "
             "the numbers: log.*, device, compute and loader settings) form one group; mean and sample "
             "standard deviation over its complete runs.</p>",
             f'<table><tr><th class="text">group</th><th class="text">n seeds</th>'
             f'<th class="text">seeds</th>{head}</tr>']
    for group in groups:
        cells = "".join(f"<td>{html.escape(group.stats[c].text() if c in group.stats else '-')}</td>"
                        for c in columns)
        css = "" if group.n else ' class="incomplete"'
        seeds = ", ".join(str(seed) for seed in group.seeds) or "-"
        lines.append(f"<tr{css}><td class='text'>{html.escape(group.name)}</td>"
                     f"<td class='text'>{html.escape(group.seeds_text())}</td>"
                     f"<td class='text'>{html.escape(seeds)}</td>{cells}</tr>")
    lines.append("</table>")
    return "\n".join(lines)
