"""The cost table of every method on one backbone: GFLOPs, peak memory, MAF, steps per budget.

Each row is a method with a few config overrides on top of the user's, built and profiled as
``fif run`` would build it (fif.budget.profile). The rows follow the method registry
(fif.methods.METHODS). Full finetuning is always profiled: it is the MAF yardstick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping, Sequence

import torch

from fif.config.settings import RunSettings

from fif.budget.maf import fullft_budget, maf, memory_ratio, steps_for_budget
from fif.budget.memory import GB
from fif.budget.plan import FULLFT_OVERRIDES
from fif.budget.profile import MethodProfile, profile_method
from fif.errors import FifError
from fif.methods import METHODS, ContinualMethod

# Rows that are no method of their own: full finetuning with one tower locked (after finetune).
LOCKED_TOWER_ROWS: dict[str, list[str]] = {
    "locked-image": ["continual.method=finetune", "experiment.backbone.freeze_features=true"],
    "locked-text": ["continual.method=finetune", "experiment.backbone.freeze_head=true"],
}


def default_rows(methods: Mapping[str, type[ContinualMethod]] = METHODS) -> dict[str, list[str]]:
    """The rows of ``--methods all``, in registry order: full finetuning (the yardstick) and its
    locked-tower forms first, then every method with a cost row, each followed by its
    reference form (``NAME-ref``) where the method declares one."""
    rows = {"finetune": list(FULLFT_OVERRIDES), **LOCKED_TOWER_ROWS}
    for name, cls in methods.items():
        if name in rows or not cls.cost_table_row:
            continue
        rows[name] = [f"continual.method={name}"]
        if cls.reference_overrides:  # the reference's compute of the method, e.g. lora-ref
            rows[f"{name}-ref"] = [f"continual.method={name}",
                                   *(f"continual.{name}.{o}" for o in cls.reference_overrides)]
    return rows


ROWS: dict[str, list[str]] = default_rows()


@dataclass(frozen=True)
class TableRow:
    profile: MethodProfile
    flop_ratio: float  # GFLOPs per sample / full finetuning's
    memory_ratio: float
    step_maf: float
    maf_ratio: float  # MAF per step / full finetuning's
    steps: int  # at the table's full-finetuning steps per task

    def as_dict(self) -> dict[str, Any]:
        return {**self.profile.as_dict(), "flop_ratio": self.flop_ratio, "memory_ratio": self.memory_ratio,
                "maf_per_step": self.step_maf, "maf_ratio": self.maf_ratio, "steps": self.steps}


def row_settings(settings: RunSettings, overrides: Sequence[str]) -> RunSettings:
    """``settings`` with a row's overrides (dot-list syntax, checked against the declared keys)."""
    return settings.with_overrides(overrides, what="row override")


def parse_rows(names: str, custom: Sequence[str] = ()) -> dict[str, list[str]]:
    """``all`` or comma-separated row names, plus custom rows ``LABEL=KEY=VALUE,KEY=VALUE``."""
    chosen = list(ROWS) if names == "all" else [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in ROWS]
    if unknown:
        raise FifError(f"--methods: {', '.join(unknown)} not known (expected all or some of: {', '.join(ROWS)})")
    rows = {name: ROWS[name] for name in chosen}
    for spec in custom:
        label, _, overrides = spec.partition("=")
        if not label or not overrides:
            raise FifError(f"--row {spec!r} is not valid: expected LABEL=KEY=VALUE[,KEY=VALUE...], "
                           f"e.g. 'lora r64=continual.method=lora,continual.lora.rank=64'")
        rows[label] = _split_overrides(overrides)
    return rows


def _split_overrides(text: str) -> list[str]:
    """Split ``a=1,b=[x,y],c=2`` at the commas outside brackets."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p.strip() for p in [*parts, current] if p.strip()]


def method_table(settings: RunSettings, model: torch.nn.Module, rows: dict[str, list[str]], fullft_steps: float,
                 precision: str = "fp32", memory: str = "count", batch_size: int | None = None,
                 charge_end_of_task: bool = True, device: torch.device | None = None,
                 progress=None, skipped: dict[str, str] | None = None) -> list[TableRow]:
    """Profile every row on ``model`` and relate it to full finetuning.

    A row the method cannot build on this model raises, or, given a ``skipped`` dict, lands there
    (label -> the error's message) and the table goes on.
    """
    configs = {label: row_settings(settings, overrides) for label, overrides in rows.items()}  # typos fail first

    def run(label: str, row: RunSettings) -> MethodProfile:
        if progress is not None:
            progress(label)
        return profile_method(row, model, label, batch_size, precision, memory=memory, device=device)

    fullft = run("finetune", row_settings(settings, FULLFT_OVERRIDES))
    budget = fullft_budget(fullft_steps, fullft.gflops_per_step)
    table = []
    for label, row_cfg in configs.items():
        try:
            profile = fullft if label == "finetune" else run(label, row_cfg)
        except FifError as error:  # e.g. adapters on a ConvNeXt image tower: report, keep the other rows
            if skipped is None:
                raise
            skipped[label] = str(error)
            continue
        ratio = memory_ratio(profile.memory.peak, fullft.memory.peak)
        step_maf = maf(profile.gflops_per_step, profile.memory.peak, fullft.memory.peak)
        end_of_task = profile.end_of_task_gflops * ratio if charge_end_of_task else 0.0
        table.append(TableRow(profile, profile.gflops_per_sample / fullft.gflops_per_sample, ratio, step_maf,
                              step_maf / fullft.gflops_per_step, steps_for_budget(budget, step_maf, end_of_task)))
    return table


def format_table(table: list[TableRow], title: str, fullft_steps: float, width: int = 160) -> str:
    """A rich table as text."""
    from rich.console import Console
    from rich.table import Table

    out = Table(title=title)
    for column in ("method", "trainable M", "GFLOPs/sample", "GFLOPs/step", "FLOP ratio", "peak GB", "MAF/step",
                   "MAF ratio", f"steps @{fullft_steps:g}", "end-of-task GFLOPs/task"):
        out.add_column(column, justify="left" if column == "method" else "right")
    for row in table:
        p = row.profile
        out.add_row(p.label, f"{p.trainable_parameters / 1e6:.3f}", f"{p.gflops_per_sample:.3f}",
                    f"{p.gflops_per_step:.2f}", f"{row.flop_ratio:.4f}", f"{p.memory.peak / GB:.3g}",
                    f"{row.step_maf:.2f}", f"{row.maf_ratio:.4f}", str(row.steps),
                    f"{p.end_of_task_gflops:.4g}" if p.end_of_task_gflops else "-")
    console = Console(width=width, record=True)
    with console.capture() as capture:
        console.print(out)
    return capture.get()

