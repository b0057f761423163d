"""``fif data verify ROOT``: the command-line side of fif.tools.verify.

Exit status 0 when the root is clean, 1 when problems were found (one ``problem:`` line each),
2 for bad usage (a FifError, as for every fif command).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_verify(args: argparse.Namespace) -> int:
    from fif.data.format.registry import registry_path, resolve_registry
    from fif.tools.verify import format_report, verify_root

    registry = resolve_registry(args.registry, args.root)
    report = verify_root(Path(args.root), registry, args.info_dir, tar=args.tar, resized=args.resized,
                         workers=args.workers, progress=not args.no_progress)
    layout = "tar files" if args.tar else "folders"
    source = registry_path(args.registry, args.root) or "the built-in FoMo-in-Flux registry"
    print(f"verified {args.root} ({layout}{', 224-px variants' if args.resized else ''}) against {source}")
    print(format_report(report))
    return 1 if report.problems else 0


def add_verify_command(data: argparse._SubParsersAction) -> None:
    from fif.tools.verify import default_workers

    verify = data.add_parser("verify", help="check a FiF data root: datasets present, complete, corrupt",
                             description="Check a FiF data root against the registry: which datasets are present "
                                         "and complete, and every problem (missing folder/tar/info file, info "
                                         "entries without caption or target, inconsistent class names, images "
                                         "that do not decode), one line each. Exit 0: clean; 1: problems found.")
    verify.add_argument("root", help="the FiF data root (ROOT/<FOLDER>/... or ROOT/<FOLDER>.tar)")
    verify.add_argument("--info-dir", help="folder of <FOLDER>_<split>.json info files (default: ROOT/00_info)")
    verify.add_argument("--registry", help="datasets.json-format file, or 'fif' for the built-in registry "
                                           "(default: ROOT/datasets.json if present, else built-in)")
    verify.add_argument("--tar", action="store_true", help="read images from ROOT/<FOLDER>.tar")
    verify.add_argument("--resized", action="store_true",
                        help="check the 224-px variants (<FOLDER>_<split>_224) where they exist")
    verify.add_argument("--workers", type=int, default=default_workers(),
                        help="decoding worker processes (default: %(default)s; 0 decodes in this process)")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar")
    verify.set_defaults(func=cmd_verify)
