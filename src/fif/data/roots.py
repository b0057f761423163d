"""Where a run's data comes from: the FiF data root and the pretraining pool's shards.

The embedded mini benchmark is generated on first use, so ``experiment=mini`` needs no files.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable

from fif.config.blocks import DatasetOptions
from fif.data.samples.pool import find_shards
from fif.errors import FifError


def data_root(dataset: DatasetOptions, mini_seed: int | None, echo: Callable[[str], object] = print) -> Path:
    """The FiF data root of ``experiment.dataset.root``; the mini benchmark's (built if absent) for mini
    (``mini_seed``: its data seed, None for any other experiment)."""
    if dataset.root:
        root = Path(dataset.root).expanduser()
        if not root.is_dir():
            raise FifError(f"experiment.dataset.root={root} does not exist")
        return root
    if mini_seed is not None:
        from fif.data.mini.build import build_datasets, default_root, is_built

        root = default_root(mini_seed)
        if not is_built(root):
            echo(f"generating the mini benchmark into {root} (first use, about 10 s)")
        return build_datasets(root, seed=mini_seed)
    raise FifError("experiment.dataset.root is not set (point it at a FiF data root, or use experiment=mini)")


def pool_shards(dataset: DatasetOptions, mini_seed: int | None, root: Path) -> list[Path]:
    """The pretraining pool's webdataset shards (``experiment.dataset.pretraining_pool``, or mini's)."""
    limit = dataset.pool_shards or None
    if dataset.pretraining_pool:
        return find_shards(Path(dataset.pretraining_pool).expanduser(), limit)
    if mini_seed is not None:
        from fif.data.mini.build import pool_shards as mini_pool_shards

        return mini_pool_shards(root, limit or 4, seed=mini_seed)
    raise FifError("experiment.dataset.data_mixture.pretraining > 0 needs experiment.dataset.pretraining_pool "
                   "(a folder of webdataset tar shards)")
