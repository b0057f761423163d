"""Build a pretraining pool from a URL + caption list with img2dataset, the reference's tool.

The reference made its 1-2M-pair LAION-400M / DataComp pools with img2dataset over URL parquet
files (its ``download_datacomp/download_pool_shards.py``: webdataset output, jpg, 10,000 samples
per shard, ``resize_mode="no"``). img2dataset is an optional dependency (the ``pool`` extra): it
downloads in processes x threads, resizes, writes webdataset shards and resumes an interrupted
build (its incremental mode skips shards it has finished). The shards are then checked by
``fif.data.pool_folder`` like any adopted pool.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import os
import signal
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from fif.data.pool_folder import MANIFEST
from fif.errors import FifError

MISSING_IMG2DATASET = ("fif data pool --urls needs img2dataset, an optional dependency: "
                       "pip install 'fomo-in-flux[pool]'")
# URL-list suffix -> img2dataset input_format (a folder holds files of one of these kinds).
INPUT_FORMATS = {".parquet": "parquet", ".csv": "csv", ".tsv": "tsv", ".csv.gz": "csv.gz", ".tsv.gz": "tsv.gz"}
RESIZE_MODES = ("no", "border", "keep_ratio", "keep_ratio_largest", "center_crop")


@dataclass(frozen=True)
class BuildOptions:
    """img2dataset settings; defaults follow the reference's DataComp download."""

    url_col: str = "url"
    caption_col: str = "text"
    processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    threads: int = 16
    image_size: int = 224
    resize_mode: str = "no"
    encode_format: str = "jpg"
    samples_per_shard: int = 10_000
    retries: int = 0
    timeout: int = 10


def _format_of(path: Path) -> str | None:
    name = path.name.lower()
    return next((fmt for suffix, fmt in INPUT_FORMATS.items() if name.endswith(suffix)), None)


def url_list_format(urls: Path) -> tuple[str, list[Path]]:
    """img2dataset's input_format of a URL list (a file, or a folder of files of one kind) and its files."""
    if not urls.exists():
        raise FifError(f"--urls {urls} does not exist")
    files = sorted(p for p in urls.iterdir() if _format_of(p)) if urls.is_dir() else [urls]
    formats = {_format_of(p) for p in files}
    if not files or None in formats or len(formats) != 1:
        raise FifError(f"--urls {urls}: expected a .parquet, .csv or .tsv file (or a folder of one kind of them) "
                       f"with a URL and a caption column")
    return formats.pop(), files


def _columns(path: Path, fmt: str) -> list[str]:
    if fmt == "parquet":
        import pyarrow.parquet as pq  # an img2dataset dependency

        return list(pq.read_schema(path).names)
    opener = gzip.open if fmt.endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle, delimiter="\t" if fmt.startswith("tsv") else ","), [])


def check_url_list(urls: Path, options: BuildOptions) -> str:
    """The list's input_format, after checking that every file has the URL and caption columns."""
    fmt, files = url_list_format(urls)
    for path in files:
        columns = _columns(path, fmt)
        for flag, column in (("--url-col", options.url_col), ("--caption-col", options.caption_col)):
            if column not in columns:
                raise FifError(f"{path} has no column {column!r} ({flag}); its columns: {', '.join(columns) or 'none'}")
    return fmt


def require_img2dataset() -> None:
    if importlib.util.find_spec("img2dataset") is None:
        raise FifError(MISSING_IMG2DATASET)


def build_stats(out: Path) -> dict[str, int]:
    """img2dataset's per-shard stats files summed: URLs tried, downloaded, failed."""
    totals = {"urls": 0, "downloaded": 0, "failed_to_download": 0, "failed_to_resize": 0}
    for path in sorted(out.glob("*_stats.json")):
        stats = json.loads(path.read_text())
        totals["urls"] += int(stats.get("count", 0))
        totals["downloaded"] += int(stats.get("successes", 0))
        totals["failed_to_download"] += int(stats.get("failed_to_download", 0))
        totals["failed_to_resize"] += int(stats.get("failed_to_resize", 0))
    return totals


def build_pool(urls: Path, out: Path, options: BuildOptions) -> dict[str, Any]:
    """Download the list into webdataset shards in ``out`` (resuming a build there); returns its record."""
    require_img2dataset()
    if options.resize_mode not in RESIZE_MODES:
        raise FifError(f"--resize-mode {options.resize_mode}: expected one of {', '.join(RESIZE_MODES)}")
    fmt = check_url_list(urls, options)
    out.mkdir(parents=True, exist_ok=True)
    # img2dataset resumes by reading every OUT/*.json as a finished shard's stats: an old pool.json
    # would stop it (and no longer describes the folder once the build adds shards).
    (out / MANIFEST).unlink(missing_ok=True)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations (an img2dataset dependency) polls PyPI
    import img2dataset

    previous = signal.getsignal(signal.SIGINT)  # img2dataset installs its own Ctrl-C handler
    try:
        img2dataset.download(
            url_list=str(urls.absolute()), output_folder=str(out.absolute()), input_format=fmt,
            output_format="webdataset", url_col=options.url_col, caption_col=options.caption_col,
            processes_count=options.processes, thread_count=options.threads, image_size=options.image_size,
            resize_mode=options.resize_mode, encode_format=options.encode_format,
            number_sample_per_shard=options.samples_per_shard, retries=options.retries, timeout=options.timeout,
            enable_wandb=False, incremental_mode="incremental")
    finally:
        signal.signal(signal.SIGINT, previous)
    return {"kind": "img2dataset", "img2dataset": metadata.version("img2dataset"), "urls": str(urls.absolute()), **asdict(options),
            **build_stats(out)}
