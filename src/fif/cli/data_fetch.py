"""``fif data download`` and ``fif data resize``: get the reference's datasets and their 224-px variants.

Exit status of download: 0 all datasets there and verified; 1 verification found problems;
2 bad usage, or some datasets failed (each named on one ``error:`` line; a rerun resumes).
Resize: 0 done; 1 some images could not be resized (one ``problem:`` line each); 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROLES = ("adaptation", "evaluation")


def _tokens(value: str | None) -> list[str]:
    return [token.strip() for token in (value or "").split(",") if token.strip()]


def _select(entries: list, registry: dict, wanted: str | None) -> list[tuple]:
    """(spec, manifest entry) of each dataset to download: all of the manifest, or the named ones
    (registry names or folders, or the roles ``adaptation`` / ``evaluation``)."""
    from fif.data.format.registry import find_dataset
    from fif.errors import FifError

    by_folder = {entry.folder: entry for entry in entries}
    spec_of = {spec.folder: spec for spec in registry.values()}
    if not wanted:
        unknown = [entry for entry in entries if entry.folder not in spec_of]
        if unknown:
            raise FifError(f"manifest {unknown[0].where}: {unknown[0].folder} is not a dataset folder of the registry")
        return [(spec_of[entry.folder], entry) for entry in entries]
    chosen: dict[str, tuple] = {}
    for token in _tokens(wanted):
        specs = ([spec for spec in registry.values() if spec.role == token and spec.folder in by_folder]
                 if token in ROLES else [find_dataset(registry, token, "--datasets")])
        for spec in specs:
            if spec.folder not in by_folder:
                raise FifError(f"--datasets {token}: the manifest has no archive for folder {spec.folder}")
            chosen[spec.folder] = (spec, by_folder[spec.folder])
    if not chosen:
        raise FifError(f"--datasets {wanted!r} selects no dataset")
    return list(chosen.values())


def _requests(selected: list[tuple], checksums: dict[str, str]) -> list:
    from fif.data.fetch.download import DatasetRequest
    from fif.data.fetch.info_sources import info_files_for

    return [DatasetRequest(spec.name, spec.folder, entry.download_url, tuple(info_files_for(spec.folder, spec.splits)),
                           checksums.get(spec.folder) or entry.sha256) for spec, entry in selected]


def cmd_download(args: argparse.Namespace) -> int:
    from fif.data.fetch.download import FAILED, DownloadOptions, download_datasets
    from fif.data.fetch.info_sources import InfoSource
    from fif.data.fetch.manifest import read_checksums, read_manifest
    from fif.data.format.registry import resolve_registry
    from fif.errors import FifError

    if args.jobs < 1 or args.retries < 0:
        raise FifError(f"--jobs {args.jobs} / --retries {args.retries}: expected --jobs >= 1 and --retries >= 0")
    root = Path(args.root).expanduser()
    registry = resolve_registry(args.registry, root)
    selected = _select(read_manifest(args.manifest), registry, args.datasets)
    requests = _requests(selected, read_checksums(args.checksums) if args.checksums else {})
    source = InfoSource(args.info_from)
    progress = not args.no_progress and sys.stderr.isatty()
    print(f"downloading {len(requests)} datasets into {root} ({args.jobs} at a time); info files from "
          f"{source.location('').rstrip('/')}")
    options = DownloadOptions(jobs=args.jobs, keep_archives=args.keep_archives, retries=args.retries,
                              progress=progress)
    outcomes = download_datasets(root, requests, source, options)
    status = 0
    done = {spec.name: spec for (spec, _), outcome in zip(selected, outcomes, strict=True) if outcome.status != FAILED}
    if done and not args.no_verify:
        status = _verify(root, done, progress)
    failed = [outcome for outcome in outcomes if outcome.status == FAILED]
    for outcome in failed:
        print(f"error: {outcome.error}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(outcomes)} datasets failed; run the same command again to resume "
              f"(partial transfers are kept in {root / '.downloads'})", file=sys.stderr)
        return 2
    return status


def _verify(root: Path, specs: dict, progress: bool) -> int:
    from fif.tools.verify import default_workers, format_report, verify_root

    report = verify_root(root, specs, root / "00_info", workers=default_workers(), progress=progress)
    print(f"verified {len(specs)} downloaded datasets in {root}")
    print(format_report(report))
    return 1 if report.problems else 0


def _resize_specs(root: Path, registry: dict, wanted: str | None, tar: bool) -> list:
    from fif.data.format.registry import find_dataset
    from fif.errors import FifError
    from fif.tools.resize import REFERENCE_RESIZED

    def present(spec) -> bool:
        return (root / f"{spec.folder}.tar").is_file() if tar else (root / spec.folder).is_dir()

    if wanted in (None, "", "all"):
        specs = [spec for spec in registry.values()
                 if present(spec) and (wanted == "all" or spec.folder in REFERENCE_RESIZED)]
        if not specs:
            raise FifError(f"no dataset to resize in {root} (default: the reference's resized datasets present there; "
                           f"--datasets all or a list for others)")
        return specs
    specs = [find_dataset(registry, token, "--datasets") for token in _tokens(wanted)]
    for spec in specs:
        if not present(spec):
            raise FifError(f"--datasets {spec.name}: {root / (spec.folder + ('.tar' if tar else ''))} does not exist")
    return specs


def cmd_resize(args: argparse.Namespace) -> int:
    from fif.data.format.registry import resolve_registry
    from fif.errors import FifError
    from fif.tools.resize import resize_root

    root = Path(args.root).expanduser()
    if not root.is_dir():
        raise FifError(f"data root {root} does not exist")
    if args.jobs < 0:
        raise FifError(f"--jobs {args.jobs}: expected 0 (in this process) or more worker processes")
    specs = _resize_specs(root, resolve_registry(args.registry, root), args.datasets, args.tar)
    report = resize_root(root, specs, args.info_dir, size=args.size, jobs=args.jobs, tar=args.tar,
                         progress=not args.no_progress and sys.stderr.isatty())
    for problem in report.problems:
        print(f"problem: {problem}")
    print(f"resized {report.written} images to {args.size} px ({report.skipped} already there) for "
          f"{len(specs)} datasets: {', '.join(spec.folder for spec in specs)}; {len(report.variants)} variant info "
          f"files; {len(report.problems)} problems")
    return 1 if report.problems else 0


def _add_download(data: argparse._SubParsersAction) -> None:
    from fif.data.fetch.info_sources import DEFAULT_INFO_BASE

    download = data.add_parser(
        "download", help="download the reference's dataset archives and info files (resumable, checksummed)",
        description="Download the FoMo-in-Flux dataset archives listed in the manifest (the reference's "
                    "download_data.csv by default), check their SHA-256, unpack them into ROOT/<FOLDER>, fetch "
                    "their info files into ROOT/00_info and verify the result. Interrupted transfers resume on "
                    "the next run; finished datasets are skipped. See docs/data.md.")
    download.add_argument("root", help="the FiF data root to fill (created if missing)")
    download.add_argument("--datasets", help="comma-separated dataset names or folders, or 'adaptation' / "
                                             "'evaluation' (default: every archive in the manifest)")
    download.add_argument("--jobs", type=int, default=4, help="datasets downloaded at once (default: %(default)s)")
    download.add_argument("--manifest", help="a CSV of [FOLDER,]URL[,SHA256] lines to use instead of the "
                                             "reference's download_data.csv (e.g. a local mirror)")
    download.add_argument("--checksums", help="expected SHA-256 per archive: a JSON object {FOLDER: digest} or "
                                              "sha256sum output; an archive that differs is refused and removed")
    download.add_argument("--info-from", help=f"where the info files come from: a base URL or a local folder "
                                              f"(a checkout of the reference, or its data_lib/00_info); default "
                                              f"{DEFAULT_INFO_BASE}")
    download.add_argument("--no-verify", action="store_true",
                          help="skip the final check of the downloaded datasets (fif data verify, which decodes "
                               "every image)")
    download.add_argument("--keep-archives", action="store_true",
                          help="keep each archive as ROOT/<FOLDER>.tar (what experiment.dataset.tar=true reads) "
                               "instead of deleting it after extraction")
    download.add_argument("--retries", type=int, default=3,
                          help="further attempts, resuming, after a dropped connection, timeout or 5xx answer "
                               "(default: %(default)s)")
    download.add_argument("--registry", help="datasets.json-format file, or 'fif' for the built-in registry "
                                             "(default: ROOT/datasets.json if present, else built-in)")
    download.add_argument("--no-progress", action="store_true", help="no progress bars")
    download.set_defaults(func=cmd_download)


def _add_resize(data: argparse._SubParsersAction) -> None:
    from fif.tools.verify import default_workers

    resize = data.add_parser(
        "resize", help="write the 224-px variants the reference reads (<FOLDER>_<split>_224)",
        description="Resize the images of datasets in a FiF data root as the reference does (shorter side to "
                    "224 px, bicubic, aspect kept) into ROOT/<FOLDER>/<FOLDER>_<split>_224/ and write the "
                    "matching info files <FOLDER>_<split>_224.json; experiment.dataset."
                    "create_resized_variant_if_possible=true then reads them. Existing images are skipped.")
    resize.add_argument("root", help="the FiF data root")
    resize.add_argument("--datasets", help="comma-separated dataset names or folders, or 'all' (default: the "
                                           "datasets the reference resizes, of those present in ROOT)")
    resize.add_argument("--size", type=int, default=224,
                        help="length of the shorter side in pixels (default: %(default)s; runs read only 224)")
    resize.add_argument("--jobs", type=int, default=default_workers(),
                        help="worker processes (default: %(default)s; 0 resizes in this process)")
    resize.add_argument("--info-dir", help="folder of <FOLDER>_<split>.json info files (default: ROOT/00_info)")
    resize.add_argument("--registry", help="datasets.json-format file, or 'fif' for the built-in registry "
                                           "(default: ROOT/datasets.json if present, else built-in)")
    resize.add_argument("--tar", action="store_true",
                        help="read ROOT/<FOLDER>.tar and append the variants to it (tar mode)")
    resize.add_argument("--no-progress", action="store_true", help="no progress bar")
    resize.set_defaults(func=cmd_resize)


def add_commands(data: argparse._SubParsersAction) -> None:
    """Register ``fif data download`` and ``fif data resize``."""
    _add_download(data)
    _add_resize(data)
