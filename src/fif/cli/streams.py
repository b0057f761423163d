"""``fif streams build``, ``fif streams list`` and ``fif data show``: stream and dataset-viewing commands.

Kept apart from cli/main.py so the entry point stays a short table of commands.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fif.tools.stream_orders import ORDER_HELP, ORDERS


def _root(value: str | None) -> Path:
    """A FiF data root; without one, the generated mini benchmark (built on first use)."""
    from fif.errors import FifError

    if value:
        root = Path(value).expanduser()
        if not root.is_dir():
            raise FifError(f"--root {root} does not exist")
        return root
    from fif.data.mini.build import build_datasets, default_root, is_built

    root = default_root(0)
    if not is_built(root):
        print(f"generating the mini benchmark into {root} (first use)", file=sys.stderr)
    return build_datasets(root)


def _dataset_list(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [name for value in values for name in value.split(",") if name]


def _pool_shards(args: argparse.Namespace, root: Path | None) -> list[Path] | None:
    """The pool shards ``--order frequency`` counts in: --pool, else ROOT/pool, else the mini benchmark's pool."""
    from fif.errors import FifError

    if args.order != "frequency":
        return None
    if args.pool:
        folder = Path(args.pool).expanduser()
        shards = sorted(folder.glob("*.tar"))
        if not shards:
            raise FifError(f"--pool {folder}: no .tar shards found (expected a folder of webdataset shards)")
    elif args.root is None:
        from fif.data.mini.build import pool_shards

        shards = pool_shards(root, args.pool_shards or 4)
    else:
        shards = sorted((root / "pool").glob("*.tar"))
        if not shards:
            raise FifError(f"--order frequency needs --pool DIR (a folder of the pretraining pool's webdataset "
                           f".tar shards); {root / 'pool'} has none")
    return shards[:args.pool_shards] if args.pool_shards else shards


def _print_summary(summary: dict) -> None:
    for key, value in summary.items():
        print(f"  {key}: {value}" if isinstance(value, int) else f"  {key}: {value:.4f}")


def cmd_streams_build(args: argparse.Namespace) -> int:
    from fif.data.format.registry import resolve_registry
    from fif.tools.stream_builders import build_stream
    from fif.data.format.streams import write_stream
    from fif.utils.io import atomic_write_json

    if args.pool_shards is not None and args.pool_shards < 1:
        from fif.errors import FifError

        raise FifError(f"--pool-shards={args.pool_shards} must be at least 1")
    root = None if args.order == "reversed" else _root(args.root)
    registry = None if root is None else resolve_registry(args.registry, root)
    built = build_stream(args.order, root, registry, datasets=_dataset_list(args.datasets), seed=args.seed,
                         info_dir=args.info_dir, backbone_name=args.backbone, checkpoint=args.checkpoint,
                         cache_dir=args.cache_dir, device=args.device, max_per_class=args.max_per_class,
                         workers=args.workers, clusters=args.clusters, text_template=args.text_template,
                         tar=args.tar, pool=_pool_shards(args, root), plurals=not args.no_plurals,
                         years=args.years, source=args.source)
    write_stream(args.out, built.entries)
    datasets = len({folder for folder, _ in built.entries})
    print(f"wrote {args.out}: {len(built.entries)} classes from {datasets} datasets, order {args.order}")
    _print_summary(built.summary)
    if args.scores:
        atomic_write_json(args.scores, {"order": built.order, "summary": built.summary, "classes": built.scores})
        print(f"measurements: {args.scores}")
    return 0


def cmd_streams_list(args: argparse.Namespace) -> int:
    from fif.data.format.streams import read_stream, shipped_streams

    for name, path in shipped_streams().items():
        entries = read_stream(path)
        datasets = len({folder for folder, _ in entries})
        print(f"{name}\t{len(entries)} classes\t{datasets} datasets\t{path.parent.parent.name}")
    return 0


def cmd_data_show(args: argparse.Namespace) -> int:
    from fif.data.format.registry import find_dataset, resolve_registry
    from fif.tools.show import show_dataset

    root = _root(args.root)
    spec = find_dataset(resolve_registry(args.registry, root), args.dataset)
    path = show_dataset(root, spec, args.split, args.n, args.out, args.info_dir, args.seed, tar=args.tar)
    print(f"wrote {path}")
    return 0


def add_commands(sub: argparse._SubParsersAction, data: argparse._SubParsersAction) -> None:
    """Register ``streams build`` (a new group under ``sub``) and ``data show`` (under ``data``)."""
    streams = sub.add_parser("streams", help="stream files").add_subparsers(dest="streams_command", required=True)
    build = streams.add_parser(
        "build", help="build a deployment ordering of a data root's adaptation classes",
        description="Write a stream file (JSON list of FOLDER+++classname) holding every class of the adaptation "
                    "datasets in one of the reference's orderings (docs/streams.md). "
                    + " ".join(f"{name}: {text}." for name, text in ORDER_HELP.items()))
    build.add_argument("--root", help="FiF data root (default: the generated mini benchmark)")
    build.add_argument("--order", required=True, help=" | ".join(ORDERS))
    build.add_argument("--out", required=True, help="stream file to write (atomically)")
    build.add_argument("--registry", help="datasets.json-format registry, or 'fif' (default: ROOT/datasets.json "
                                          "if present, else the built-in FiF registry)")
    build.add_argument("--info-dir", help="info-file folder (default: ROOT/00_info)")
    build.add_argument("--tar", action="store_true", help="read images from ROOT/<FOLDER>.tar (the tar layout)")
    build.add_argument("--datasets", nargs="+", help="adaptation datasets to include, by folder or name "
                                                     "(space or comma separated; default: all)")
    build.add_argument("--seed", type=int, default=0, help="seed of shuffles, ties, probe samples and k-means")
    build.add_argument("--backbone", default="mini_clip", help="backbone for performance/similarity orders")
    build.add_argument("--checkpoint", help="local weights file or open_clip local-dir for the backbone")
    build.add_argument("--cache-dir", help="open_clip / Hugging Face cache holding the backbone's weights")
    build.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    build.add_argument("--max-per-class", type=int, default=20,
                       help="training images per class the performance probe scores")
    build.add_argument("--workers", type=int, default=4,
                       help="processes: image loading of the performance probe, pool shards counted at once "
                            "by frequency")
    build.add_argument("--clusters", type=int, help="k-means clusters for similarity (default: sqrt(classes))")
    build.add_argument("--text-template", default="{}", help="prompt around each class name for similarity")
    build.add_argument("--pool", help="frequency: folder of the pretraining pool's webdataset .tar shards "
                                      "(default: ROOT/pool; the mini benchmark's pool without --root)")
    build.add_argument("--pool-shards", type=int, help="frequency: count in the first N shards only (default: all; "
                                                       "4 for the mini benchmark's pool)")
    build.add_argument("--no-plurals", action="store_true",
                       help="frequency: count only the exact words of a class name (default: plurals of its last "
                            "word count too, e.g. 'dogs' for 'dog')")
    build.add_argument("--years", help="time_incremental_*: JSON table of dataset folder -> release year (default: "
                                       "the shipped fif/data/reference/dataset_years.json)")
    build.add_argument("--from", dest="source", metavar="NAME_OR_FILE",
                       help="reversed: the stream to reverse, a shipped stream name (e.g. random_sequence_1) or a file")
    build.add_argument("--scores", help="also write the per-class measurements (accuracy, count, year) to this JSON "
                                        "file")
    build.set_defaults(func=cmd_streams_build)

    listing = streams.add_parser("list", help="list the stream files shipped with the package",
                                 description="Print each shipped stream's name (usable as "
                                             "experiment.dataset.sequence=NAME), its classes, datasets and origin "
                                             "(mini: the mini benchmark; reference: the reference's 29 streams).")
    listing.set_defaults(func=cmd_streams_list)

    show = data.add_parser("show", help="write a grid of a dataset's samples with their captions",
                           description="Write a PNG contact sheet: samples of the dataset's train (adapt) and/or "
                                       "test (eval) split, spread over classes, with class name and caption.")
    show.add_argument("dataset", help="dataset folder or registry name, e.g. CIFAR100 or cifar100")
    show.add_argument("--root", help="FiF data root (default: the generated mini benchmark)")
    show.add_argument("--registry", help="datasets.json-format registry, or 'fif'")
    show.add_argument("--info-dir", help="info-file folder (default: ROOT/00_info)")
    show.add_argument("--tar", action="store_true", help="read images from ROOT/<FOLDER>.tar (the tar layout)")
    show.add_argument("--split", default="both", choices=("adapt", "eval", "both"),
                      help="adapt = train split, eval = test split, both (default)")
    show.add_argument("--n", type=int, default=16, help="samples per split")
    show.add_argument("--seed", type=int, default=0, help="which samples of each class are shown")
    show.add_argument("--out", help="PNG to write (default: <FOLDER>_samples.png)")
    show.set_defaults(func=cmd_data_show)
