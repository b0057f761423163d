"""``fif weights fetch`` / ``fif weights list``: open_clip weights for offline use, checksummed."""

from __future__ import annotations

import argparse

CACHE_HELP = ("cache folder (open_clip / Hugging Face hub layout; default: huggingface_hub's cache, "
              "$HF_HUB_CACHE or ~/.cache/huggingface/hub); runs read it as experiment.backbone.cache_dir")


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"


def cmd_fetch(args: argparse.Namespace) -> int:
    from fif.models.weights import fetch, manifest_path

    local, entry, replaced = fetch(args.name, args.cache_dir)
    if replaced:
        print("replaced a cached copy that did not match its recorded SHA-256")
    for path, item in zip(local.files(), entry["files"]):
        print(f"{path}  {_size(item['bytes'])}  sha256 {item['sha256']}")
    print(f"recorded in {manifest_path(args.cache_dir)}; "
          f"runs use it with experiment.backbone.name={args.name} experiment.backbone.cache_dir="
          f"{manifest_path(args.cache_dir).parent}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from fif.models.weights import cache_status, hub_cache

    print(f"cache: {hub_cache(args.cache_dir)}")
    rows = cache_status(args.cache_dir)
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        what = f"{row['arch']} / {row['tag']}" if row["tag"] else row["repo"]
        state = (f"cached {_size(row['bytes'])}{', sha256 recorded' if row['recorded'] else ''}" if row["file"]
                 else "not cached")
        print(f"{row['name']:<{width}}  {what:<44}  {state}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """``fif weights fetch NAME [--cache-dir D]`` and ``fif weights list [--cache-dir D]``."""
    weights = sub.add_parser("weights", help="backbone weights: prefetch for offline use, list the cache",
                             description="open_clip pretrained weights of the named backbones (and hf-hub:ORG/REPO "
                                         "repositories), through open_clip's own download and cache, with their "
                                         "SHA-256 recorded in CACHE/fif_weights.json (docs/weights.md).")
    commands = weights.add_subparsers(dest="weights_command", required=True)
    fetch = commands.add_parser("fetch", help="download a backbone's weights into a cache and record their SHA-256",
                                description="Download a backbone's open_clip weights (huggingface_hub's progress "
                                            "bar), print the file, its size and SHA-256, and record them in "
                                            "CACHE/fif_weights.json. Copy the cache folder to an offline machine and "
                                            "set experiment.backbone.cache_dir to it; runs check the checksum. "
                                            "A cached copy that no longer matches its record is downloaded again.")
    fetch.add_argument("name", help="a named backbone (openclip_vit_b32, openclip_vit_b16, ...; see `fif weights "
                                    "list`) or hf-hub:ORG/REPO (an open_clip repository on the hub)")
    fetch.add_argument("--cache-dir", help=CACHE_HELP)
    fetch.set_defaults(func=cmd_fetch)
    listing = commands.add_parser("list", help="the named backbones and whether each is cached",
                                  description="Every named backbone (and each hf-hub repository recorded in the "
                                              "cache) with its open_clip architecture and tag, and whether its "
                                              "weights are in the cache. Reads only local files.")
    listing.add_argument("--cache-dir", help=CACHE_HELP)
    listing.set_defaults(func=cmd_list)
