"""``fif data pool``: build a pretraining pool of webdataset shards, or adopt and verify one.

Exit status 0 when the pool is clean (pool.json written), 1 when problems were found (one
``problem:`` line each, the shard and sample key named), 2 for bad usage (a FifError).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SHOWN_PROBLEMS = 50  # printed; all of them go to OUT/pool_problems.txt
PROBLEMS_FILE = "pool_problems.txt"


def _report(check, out: Path) -> int:
    from fif.data.pool_folder import MANIFEST
    from fif.utils.io import atomic_write

    problems_file = out / PROBLEMS_FILE
    print(f"{out}: {len(check.shards)} shards, {check.samples} samples, {check.images_checked} images decoded"
          + (f" ({check.unchanged} shards unchanged since {MANIFEST}: hashed, not decoded)" if check.unchanged else ""))
    if not check.problems:
        problems_file.unlink(missing_ok=True)
        return 0
    for problem in check.problems[:SHOWN_PROBLEMS]:
        print(f"problem: {problem}")
    atomic_write(problems_file, lambda f: f.write("".join(f"{p}\n" for p in check.problems)))
    more = len(check.problems) - SHOWN_PROBLEMS
    print(f"{len(check.problems)} problems{f' ({more} more not shown)' if more > 0 else ''}, all listed in "
          f"{problems_file}; no {MANIFEST} written")
    return 1


def cmd_pool(args: argparse.Namespace) -> int:
    from fif.data.pool_build import BuildOptions, build_pool
    from fif.data.pool_folder import adopt_shards, read_manifest, verify_pool, write_manifest
    from fif.errors import FifError

    out, source, previous = Path(args.out).expanduser(), None, None
    if args.urls and args.adopt:
        raise FifError("give either --urls FILE (build a pool) or --adopt DIR (adopt existing shards), not both")
    if args.urls:
        options = BuildOptions(args.url_col, args.caption_col, args.processes, args.threads, args.image_size,
                               args.resize_mode, args.encode_format, args.samples_per_shard, args.retries,
                               args.timeout)
        previous = read_manifest(out) if out.is_dir() else None  # the build removes it; unchanged shards keep it
        source = build_pool(Path(args.urls).expanduser(), out, options)
        print(f"img2dataset: {source['downloaded']} of {source['urls']} URLs downloaded "
              f"({source['failed_to_download']} failed to download, {source['failed_to_resize']} to resize)")
    elif args.adopt:
        adopt_shards(Path(args.adopt).expanduser(), out)
        source = {"kind": "adopted", "from": str(Path(args.adopt).expanduser().absolute())}
    elif not out.is_dir():
        raise FifError(f"{out} does not exist: give --urls FILE to build a pool there, or --adopt DIR")
    check = verify_pool(out, sample=args.sample, workers=args.workers, full=args.full,
                        progress=not args.no_progress and sys.stderr.isatty(), previous=previous)
    status = _report(check, out)
    if status == 0:
        print(f"wrote {write_manifest(check, source)}; use it with experiment.dataset.pretraining_pool={out.absolute()}")
    return status


def add_commands(data: argparse._SubParsersAction) -> None:
    """Register ``fif data pool``."""
    from fif.data.pool_build import RESIZE_MODES, BuildOptions

    defaults = BuildOptions()
    pool = data.add_parser(
        "pool", help="a pretraining pool of webdataset shards: build one (img2dataset) or adopt and verify one",
        description="Make OUT a pretraining pool (experiment.dataset.pretraining_pool=OUT): --urls builds webdataset "
                    "shards from a URL + caption list with img2dataset (pip install 'fomo-in-flux[pool]'); --adopt "
                    "links an existing shard folder's *.tar into OUT; with neither, OUT is checked in place. Every "
                    "shard is checked (readable tar, an image and a caption per sample, images decodable) and a "
                    "clean pool gets OUT/pool.json (shards, counts, SHA-256). Checking again only hashes shards "
                    "unchanged since pool.json. Exit 0: clean; 1: problems (shard:key each). See docs/pool.md.")
    pool.add_argument("out", help="the pool folder (created by --urls / --adopt)")
    pool.add_argument("--urls", help="URL list: a .parquet/.csv/.tsv file (or a folder of them) with a URL and a "
                                     "caption column; an interrupted build resumes when run again")
    pool.add_argument("--adopt", metavar="DIR", help="an existing folder of webdataset .tar shards to adopt into OUT "
                                                     "(linked, not copied; DIR may be OUT itself)")
    pool.add_argument("--url-col", default=defaults.url_col, help="URL column (default: %(default)s; LAION: URL)")
    pool.add_argument("--caption-col", default=defaults.caption_col,
                      help="caption column (default: %(default)s; LAION: TEXT)")
    pool.add_argument("--processes", type=int, default=defaults.processes,
                      help="img2dataset download processes (default: the CPU count, %(default)s)")
    pool.add_argument("--threads", type=int, default=defaults.threads,
                      help="download threads per process (default: %(default)s)")
    pool.add_argument("--image-size", type=int, default=defaults.image_size,
                      help="target size of a resize (default: %(default)s; unused with --resize-mode no)")
    pool.add_argument("--resize-mode", default=defaults.resize_mode, choices=RESIZE_MODES,
                      help="img2dataset resize mode (default: %(default)s, as the reference's DataComp download; "
                           "keep_ratio with --image-size 224 makes smaller shards that decode faster)")
    pool.add_argument("--encode-format", default=defaults.encode_format, choices=("jpg", "png", "webp"),
                      help="image format in the shards (default: %(default)s)")
    pool.add_argument("--samples-per-shard", type=int, default=defaults.samples_per_shard,
                      help="samples per shard (default: %(default)s)")
    pool.add_argument("--retries", type=int, default=defaults.retries, help="download retries per URL (default: "
                                                                            "%(default)s)")
    pool.add_argument("--timeout", type=int, default=defaults.timeout, help="seconds per download (default: "
                                                                            "%(default)s)")
    pool.add_argument("--sample", type=int, help="decode only N images per shard (a seeded random sample; every "
                                                 "sample's caption and image member are still checked)")
    pool.add_argument("--full", action="store_true", help="check every shard again, also those unchanged since "
                                                          "pool.json")
    pool.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                      help="checking worker processes, one shard each (default: %(default)s)")
    pool.add_argument("--no-progress", action="store_true", help="no progress bar")
    pool.set_defaults(func=cmd_pool)
