"""Configs in layers, for ``fif eval``: the command line over a saved run's config over the defaults.

``fif eval --model RUN/final_model.pt`` scores the model with the settings its run had, except
the keys the command line names (and the keys a preset choice like ``experiment=fif`` changes).
Composition and merging stay in the config package; ``fif.tools.evaluate_model`` gets the result
as RunSettings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fif.config.compose import compose, conf_dir, leaves, read_config_file, to_container
from fif.config.reference_keys import translate_overrides

DEFAULT_SUBSET_FRACTION = 0.1  # --subset without evaluation.validate_on_subset: the reference's usual fraction


def command_line_values(cfg: DictConfig, overrides: Sequence[str]) -> dict[str, Any]:
    """The keys the command line sets, with their composed values: each named key, and every key a
    config group choice (``experiment=X``) changes from the default."""
    translated, _ = translate_overrides(overrides)  # reference key names -> ours (compose noted them)
    values: dict[str, Any] = {}
    groups: list[str] = []
    for override in translated:
        key = override.split("=", 1)[0].lstrip("+~")
        if (conf_dir() / key).is_dir():
            groups.append(override)
        else:
            values[key] = OmegaConf.select(cfg, key)
    if groups:  # the keys the choice changes, with their values in the whole composed config
        default, chosen = dict(leaves(to_container(compose([])))), dict(leaves(to_container(compose(groups))))
        composed, missing = dict(leaves(to_container(cfg))), object()
        values = {k: composed[k] for k, v in chosen.items() if default.get(k, missing) != v and k in composed} | values
    return values


def eval_config(overrides: Sequence[str], run_config: dict[str, Any] | None = None, subset: bool = False) -> DictConfig:
    """The config ``fif run`` would compose from ``overrides``; ``run_config`` (a run's own, for a run's file)
    underneath the keys the command line names.

    ``subset``: scores the fixed subsets of ``evaluation.validate_on_subset`` (0.1 where it is unset).
    """
    cfg = compose(overrides)
    if run_config is not None:
        named = command_line_values(cfg, overrides)
        cfg = OmegaConf.merge(OmegaConf.create(to_container(cfg)), OmegaConf.create(run_config))
        for key, value in named.items():
            OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    if subset and cfg.evaluation.get("validate_on_subset") is None:
        OmegaConf.update(cfg, "evaluation.validate_on_subset", DEFAULT_SUBSET_FRACTION, force_add=True)
    return cfg


__all__ = ["DEFAULT_SUBSET_FRACTION", "command_line_values", "eval_config", "read_config_file"]
