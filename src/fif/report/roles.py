"""Which datasets a run streamed (adaptation, A_KA) and which it held out (evaluation, A_ZS).

results.json keeps scores per dataset name but not the role, so the report looks it up in the
registry the run used: the data root's registry, the mini benchmark's, or the built-in one.
Nothing is generated or downloaded; an unknown dataset simply has no role.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fif.errors import FifError
from fif.results import RunResults


def dataset_roles(results: dict[str, Any]) -> dict[str, str]:
    """Each dataset's role in this run: the registry's, with experiment.dataset.adapt_on made adaptation."""
    roles = _registry_roles(results)
    adapted = RunResults(results).config_value("experiment.dataset.adapt_on") or []
    lowered = {str(name).lower() for name in adapted}
    return {name: "adaptation" if name.lower() in lowered else role for name, role in roles.items()}


def _registry_roles(results: dict[str, Any]) -> dict[str, str]:
    view = RunResults(results)
    config, dataset = view.config, view.config_value("experiment.dataset") or {}
    try:
        root = dataset.get("root")
        if root and Path(str(root)).expanduser().is_dir():
            from fif.data.format.registry import resolve_registry

            return {name: spec.role for name, spec in
                    resolve_registry(dataset.get("registry"), Path(str(root)).expanduser()).items()}
        if "mini" in config:
            from fif.data.mini.build import registry_entries

            return {name: entry["role_in_default_benchmark"] for name, entry in registry_entries().items()}
        from fif.data.format.registry import builtin_registry

        return {name: spec.role for name, spec in builtin_registry().items()}
    except (FifError, OSError, KeyError, TypeError):
        return {}
