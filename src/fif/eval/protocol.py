"""What each evaluation point scores: test or validation splits, full sets or fixed subsets.

One object the training loop asks, so the loop stays unaware of validation mode
(fif.data.format.validation), subset evaluation (fif.eval.subset) and evaluations inside tasks
(fif.eval.within_task).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

import numpy as np

from fif.data.format.fif_format import ADAPTATION, EVALUATION, DatasetSpec, Split
from fif.data.format.validation import ValidationPlan, build_validation
from fif.eval.subset import EvalSubsets, eval_subsets, subset_fraction
from fif.eval.within_task import gap_points, within_task_steps
from fif.config.blocks import RunOptions


class EvalProtocol:
    """Validation plan (or None: test splits) and evaluation subsets (or None: full sets) of one run."""

    def __init__(self, options: RunOptions, root: str | Path, registry: dict[str, DatasetSpec], echo=print) -> None:
        """``options``: the run's checked blocks (fif.config.settings.RunSettings.options)."""
        ds, evaluation = options.experiment.dataset, options.evaluation
        self.seed = options.experiment.seed
        self.subset_fraction = subset_fraction(evaluation.validate_on_subset)  # values checked by their declarations
        self.every_n_samples = evaluation.every_n_samples
        self.gap_samples = gap_points(evaluation.gap_samples)
        self.ka_mode = evaluation.ka_datasets
        self.plan: ValidationPlan | None = None
        self.subsets: EvalSubsets | None = None
        if ds.validation_mode:
            specs = [s for s in registry.values() if s.role in (ADAPTATION, EVALUATION)]
            self.plan = build_validation(root, specs, ds.train_val_split, self.seed, ds.validation_fallback,
                                         ds.info_dir, tar=ds.tar, resized=ds.create_resized_variant_if_possible)
            for line in self.plan.warnings():
                echo(line)

    @property
    def train_part(self) -> Callable[[Split], Split] | None:
        """For the training catalogue: each train split's training part (None: all of it)."""
        return self.plan.train_part if self.plan else None

    @property
    def eval_splits(self) -> dict[str, Split] | None:
        """For the evaluation suite: the splits scored instead of test splits (None: test splits)."""
        return self.plan.eval_splits if self.plan else None

    def keep(self, specs: Sequence[DatasetSpec]) -> list[DatasetSpec]:
        """The datasets evaluated (validation mode may leave evaluation-only ones out)."""
        return self.plan.keep(specs) if self.plan else list(specs)

    def attach(self, suite: Any) -> None:
        """Fix the per-dataset subsets of the suite's sets (once: every point sees the same samples)."""
        if self.subset_fraction is not None:
            self.subsets = eval_subsets(self.subset_fraction, suite, self.seed)

    def at(self, task: int, num_tasks: int) -> dict[str, np.ndarray] | None:
        """The subsets to score after task ``task`` (0-based), or None for full sets."""
        return self.subsets.at(task, num_tasks) if self.subsets else None

    def within_steps(self, batch_size: int, steps: int) -> frozenset[int]:
        """Steps done inside a task after which to evaluate (the stability-gap points)."""
        return within_task_steps(self.every_n_samples, self.gap_samples, batch_size, steps)

    @property
    def within_subsets(self) -> dict[str, np.ndarray] | None:
        """What points inside a task score: the fixed subsets (None: full sets when the run has none)."""
        return self.subsets.indices if self.subsets else None

    def record(self) -> dict[str, Any]:
        """results.json keys that say what the scores are: validation or test, subsets or full sets."""
        out: dict[str, Any] = {"validation_mode": self.plan is not None,
                               "evaluation_split": "validation" if self.plan else "test"}
        if self.plan:
            out["validation"] = self.plan.record()
        if self.subsets:
            out["evaluation_subsets"] = self.subsets.record()
        return out
