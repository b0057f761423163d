"""Time-incremental orderings: datasets arrive in order of their release year.

The reference ships ``time_incremental_dschunked_1..5`` and ``time_incremental_rsagg_1..5`` but not
the script that made them; what they show, and what this module reproduces:

- Both put the datasets in release-year order, and the dataset order is the same for every seed
  (dschunked_1..5 share it): the seed never reorders datasets. Datasets of one year come in one
  fixed order, alphabetical by dataset handle except FSCOCO after SNAKECLEF; the year table keeps
  the datasets of a year in the reference's order, and that order is the tie-break.
- ``dschunked`` (dataset-chunked): every dataset is one contiguous chunk; the seed shuffles the
  classes inside each dataset.
- ``rsagg`` (aggregated): all datasets of one year form one chunk, the chunks in year order, and
  the seed shuffles every class of the year together, so the classes of neighbouring (same-year)
  datasets interleave. In rsagg_1 the 2014 chunk, for instance, mixes BIRDSNAP, DTD and
  ZAPPOS50k classes over positions 899-3292, and a year's chunk is exactly as long as its datasets'
  classes together.

The reference's own class order inside a chunk comes from a generator we could not reproduce (no
numpy RandomState or Python random shuffle of a dataset's class list, seeds 0-1999, gives its
FLOWERS102 chunk), so only the dataset order and the chunk structure are the reference's; the
shuffles here are numpy's legacy RandomState(seed).
Release years live in ``fif/data/reference/dataset_years.json`` (folder -> year and source); a user
may pass another table (``--years``) in the same format or as a plain ``{"FOLDER": year}`` object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from fif.data.format.streams import StreamEntry
from fif.errors import FifError

YEARS_FILE = "dataset_years.json"


@dataclass(frozen=True)
class Release:
    """When a dataset came out, and where that year comes from."""

    folder: str
    year: int
    source: str = ""


def default_years_path() -> Path:
    """The shipped year table (the 41 streamed FiF datasets and the mini benchmark's 8)."""
    return Path(str(resources.files("fif.data.reference") / YEARS_FILE))


def _release(folder: str, value: Any, path: Path) -> Release:
    """One table row: a year, or ``{"year": ..., "source": ...}``."""
    year, source = (value.get("year"), str(value.get("source", ""))) if isinstance(value, dict) else (value, "")
    if isinstance(year, bool) or not isinstance(year, int):
        raise FifError(f"--years {path}: dataset {folder!r} has year {year!r}; expected a whole number such as 2014")
    return Release(folder, year, source)


def read_years(path: str | Path | None = None) -> dict[str, Release]:
    """Folder -> release, in the table's order (the tie-break inside a year)."""
    path = Path(path).expanduser() if path else default_years_path()
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FifError(f"--years {path} could not be read: {error}") from None
    table = raw.get("datasets", raw) if isinstance(raw, dict) else None
    if not isinstance(table, dict) or not table:
        raise FifError(f"--years {path}: expected a JSON object of dataset folder -> year "
                       f"(or {{\"datasets\": {{FOLDER: {{\"year\": ..., \"source\": ...}}}}}})")
    return {folder: _release(folder, value, path) for folder, value in table.items()}


def _lookup(years: dict[str, Release], blocks: list[list[StreamEntry]], where: str) -> list[Release]:
    """Each block's release (folders matched exactly, else case-insensitively); all missing ones in one error."""
    loose = {folder.lower(): release for folder, release in years.items()}
    found, missing = [], []
    for block in blocks:
        folder = block[0][0]
        release = years.get(folder) or loose.get(folder.lower())
        if release is None:
            missing.append(folder)
        found.append(release)
    if missing:
        raise FifError(f"{where}: no release year for {', '.join(missing)} (add \"FOLDER\": {{\"year\": YYYY, "
                       f"\"source\": \"...\"}} rows, or pass --years FILE)")
    return found


def year_groups(blocks: list[list[StreamEntry]], years: dict[str, Release],
                where: str = "--years") -> list[tuple[int, list[list[StreamEntry]]]]:
    """Per-dataset blocks grouped by release year, years ascending, datasets of a year in table order."""
    releases = _lookup(years, blocks, where)
    rank = {release.folder: i for i, release in enumerate(years.values())}
    ordered = sorted(zip(releases, blocks), key=lambda pair: (pair[0].year, rank[pair[0].folder]))
    groups: list[tuple[int, list[list[StreamEntry]]]] = []
    for release, block in ordered:
        if groups and groups[-1][0] == release.year:
            groups[-1][1].append(block)
        else:
            groups.append((release.year, [block]))
    return groups


def dschunked_order(blocks: list[list[StreamEntry]], years: dict[str, Release], seed: int) -> list[StreamEntry]:
    """Datasets in release order, each one contiguous chunk, its classes shuffled by seed."""
    rng = np.random.RandomState(seed)
    return [block[i] for _, group in year_groups(blocks, years) for block in group
            for i in rng.permutation(len(block))]


def rsagg_order(blocks: list[list[StreamEntry]], years: dict[str, Release], seed: int) -> list[StreamEntry]:
    """Years in order, each year one chunk holding its datasets' classes shuffled together by seed."""
    rng = np.random.RandomState(seed)
    entries: list[StreamEntry] = []
    for _, group in year_groups(blocks, years):
        merged = [entry for block in group for entry in block]
        entries += [merged[i] for i in rng.permutation(len(merged))]
    return entries
