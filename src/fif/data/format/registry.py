"""Which datasets exist: the built-in FoMo-in-Flux registry or a datasets.json-format file.

``resolve_registry`` is the one place that turns ``experiment.dataset.registry`` into specs, so a
run, ``fif data verify`` and ``fif streams build`` agree on it. ``find_dataset`` looks a dataset
up by handle or folder: the reference's stream files use both (``cifar100+++apple`` in
per-dataset streams, ``CIFAR100+++apple`` in the main ones, ``EUROSAT`` for ``EuroSAT``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fif.data.format.fif_datasets import ADAPTATION_ROWS, EVALUATION_ROWS, EXTRA_ROWS
from fif.data.format.fif_format import ADAPTATION, EVALUATION, DatasetSpec, load_registry
from fif.errors import FifError

BUILTIN = "fif"  # experiment.dataset.registry=fif: the built-in registry even when ROOT has a datasets.json
NOT_IN_BENCHMARK = "not_in_benchmark"


@lru_cache(maxsize=1)
def _builtin() -> tuple[DatasetSpec, ...]:
    roles = ((ADAPTATION, ADAPTATION_ROWS), (EVALUATION, EVALUATION_ROWS), (NOT_IN_BENCHMARK, EXTRA_ROWS))
    return tuple(DatasetSpec(name, folder, kind, role, primer)
                 for role, rows in roles for name, folder, kind, primer in rows)


def builtin_registry() -> dict[str, DatasetSpec]:
    """The 63 benchmark datasets (41 adaptation, 22 evaluation) plus 4 marked not_in_benchmark."""
    return {spec.name: spec for spec in _builtin()}


def registry_path(value: str | None, root: str | Path) -> Path | None:
    """The registry file a config value means, or None for the built-in registry."""
    if value is None or str(value).strip() in ("", "null"):
        candidate = Path(root) / "datasets.json"
        return candidate if candidate.is_file() else None
    if str(value) == BUILTIN:
        return None
    path = Path(str(value)).expanduser()
    if not path.is_file():
        raise FifError(f"experiment.dataset.registry={value}: no such file (expected a datasets.json-format "
                       f"registry, '{BUILTIN}' for the built-in FoMo-in-Flux registry, or null)")
    return path


def resolve_registry(value: str | None, root: str | Path) -> dict[str, DatasetSpec]:
    """``experiment.dataset.registry`` -> specs (null: ROOT/datasets.json if present, else built-in; fif: built-in)."""
    path = registry_path(value, root)
    return builtin_registry() if path is None else load_registry(path)


def find_dataset(registry: dict[str, DatasetSpec], key: str, where: str = "dataset") -> DatasetSpec:
    """A dataset by registry name or folder; exact first, then case-insensitive if that is unambiguous."""
    exact = {spec.name: spec for spec in registry.values()} | {spec.folder: spec for spec in registry.values()}
    if key in exact:
        return exact[key]
    loose: dict[str, set[str]] = {}
    for spec in registry.values():
        for alias in (spec.name.lower(), spec.folder.lower()):
            loose.setdefault(alias, set()).add(spec.name)
    matches = loose.get(key.lower(), set())
    if len(matches) == 1:
        return registry[matches.pop()]
    if matches:
        raise FifError(f"{where} {key!r} is ambiguous: it matches {', '.join(sorted(matches))} (use the exact folder)")
    names = sorted(spec.folder for spec in registry.values())
    raise FifError(f"{where} {key!r} is not in the dataset registry (known folders: {', '.join(names)})")


def adapt_on(registry: dict[str, DatasetSpec], names: list[str] | None) -> dict[str, DatasetSpec]:
    """The registry with the named datasets made adaptation datasets of this run (``experiment.dataset.adapt_on``).

    The reference's simple_finetune trains on caltech101, an evaluation-only dataset of the benchmark;
    naming it here lets it be streamed, and it then counts in A_KA (never in A_ZS) like any streamed dataset.
    """
    from dataclasses import replace

    if not names:
        return registry
    promoted = dict(registry)
    for name in names:
        spec = find_dataset(registry, str(name), "experiment.dataset.adapt_on: dataset")
        promoted[spec.name] = replace(spec, role=ADAPTATION)
    return promoted


def adaptation_specs(registry: dict[str, DatasetSpec]) -> list[DatasetSpec]:
    """The streamable datasets, in registry order."""
    return [spec for spec in registry.values() if spec.role == ADAPTATION]
