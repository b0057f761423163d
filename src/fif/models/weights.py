"""Backbone weights through open_clip's own download and cache, recorded with their SHA-256.

Named backbones (``openclip_vit_b32`` ...) and ``hf-hub:ORG/REPO`` repositories come from the
Hugging Face hub through open_clip's download functions, into open_clip's cache (``cache_dir``,
or huggingface_hub's default cache). A cached copy is used without touching the network. Every
file fetched is recorded in ``<cache>/fif_weights.json`` (name, arch, tag, file, sha256, bytes),
so a cache copied to an offline machine is checked before its weights are loaded: a changed or
damaged file is refused in one line instead of loading silently wrong weights.

``HF_HUB_OFFLINE=1`` is honoured when it is set, also after huggingface_hub was imported (the
hub reads it once at import; the runs of one test session may set it later).
"""

from __future__ import annotations

import fcntl
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterator

from fif.errors import FifError
from fif.utils.io import atomic_write_json, sha256_file

WEIGHTS_MANIFEST = "fif_weights.json"
HUB_PREFIX = "hf-hub:"
CONFIG_FILE = "open_clip_config.json"  # open_clip's name for a hub repository's model config
PICKLE_WEIGHTS = "open_clip_pytorch_model.bin"  # open_clip's default weights file of a hub repository
SAFE_WEIGHTS = "open_clip_model.safetensors"  # ... and its safetensors variant, which open_clip prefers

# Reference backbone names -> (open_clip architecture, open_clip pretrained tag).
NAMED_ARCHITECTURES: dict[str, tuple[str, str]] = {
    "openclip_vit_b32": ("ViT-B-32", "laion2b_s34b_b79k"),
    "openclip_vit_b16": ("ViT-B-16", "laion2b_s34b_b88k"),
    "openclip_vit_l14": ("ViT-L-14", "laion2b_s32b_b82k"),
    "openclip_vit_h14": ("ViT-H-14", "laion2b_s32b_b79k"),
    "openclip_vit_g14": ("ViT-g-14", "laion2b_s34b_b88k"),
    "openclip_vit_bigg14": ("ViT-bigG-14", "laion2b_s39b_b160k"),
    "openclip_convnext_base": ("convnext_base", "laion400m_s13b_b51k"),
    "openclip_convnext_base_w": ("convnext_base_w", "laion2b_s13b_b82k"),
    "openclip_convnext_large_d": ("convnext_large_d", "laion2b_s26b_b102k_augreg"),
}
_SHA256 = re.compile(r"[0-9a-f]{64}")


class WeightsMismatch(FifError):
    """A cached file differs from its recorded (or the hub's) SHA-256."""


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's weights live on the hub, and the files open_clip reads from there."""

    name: str  # as the user wrote it
    arch: str  # open_clip architecture, or hf-hub:ORG/REPO
    tag: str | None  # open_clip pretrained tag (None for a hub repository)
    repo_id: str
    weights_files: tuple[str, ...]  # candidates in open_clip's order of preference
    config_file: str | None  # a hub repository's model config (named backbones use open_clip's own)
    preprocess: dict[str, Any]  # image mean/std/interpolation/resize mode of the pretrained tag

    def describe(self) -> str:
        what = f"open_clip {self.arch} / {self.tag}" if self.tag else self.arch
        return f"{what}, hub repository {self.repo_id}"


@dataclass(frozen=True)
class LocalWeights:
    """A source's files in the cache: the weights, and the model config of a hub repository."""

    source: WeightsSource
    weights: Path
    config: Path | None

    def files(self) -> list[Path]:
        return [p for p in (self.config, self.weights) if p is not None]


def _weights_candidates(filename: str) -> tuple[str, ...]:
    # open_clip's download_pretrained_from_hf tries a safetensors twin before the pickle; a cache
    # lookup must look for the same files in the same order (open_clip's helper for it is private).
    if filename == PICKLE_WEIGHTS:
        return SAFE_WEIGHTS, filename
    if filename.endswith((".bin", ".pth")):
        return filename[:-4] + ".safetensors", filename
    return (filename,)


def weights_source(name: str) -> WeightsSource:
    """The hub source of a named backbone (``openclip_vit_b32``) or an ``hf-hub:ORG/REPO`` name."""
    import open_clip

    if name.startswith(HUB_PREFIX):
        repo = name.removeprefix(HUB_PREFIX).strip("/")
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise FifError(f"backbone name {name!r}: expected hf-hub:ORG/REPO")
        return WeightsSource(name, name, None, repo, _weights_candidates(PICKLE_WEIGHTS), CONFIG_FILE, {})
    if name not in NAMED_ARCHITECTURES:
        raise FifError(f"{name!r} is not a named backbone with downloadable weights (expected one of: "
                       f"{', '.join(NAMED_ARCHITECTURES)}, or hf-hub:ORG/REPO)")
    arch, tag = NAMED_ARCHITECTURES[name]
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg.get("hf_hub"):  # every tag the reference uses is on the hub; a URL-only tag would need its own cache
        raise FifError(f"open_clip has no hub download for {arch} / {tag} (installed open_clip "
                       f"{open_clip.__version__}); set experiment.backbone.checkpoint=FILE")
    repo, filename = os.path.split(cfg["hf_hub"])  # "org/repo/" or "org/repo/file.bin", as open_clip splits it
    preprocess = {key: cfg[key] for key in ("mean", "std", "interpolation", "resize_mode", "quick_gelu") if key in cfg}
    return WeightsSource(name, arch, tag, repo, _weights_candidates(filename or PICKLE_WEIGHTS), None, preprocess)


def hub_cache(cache_dir: str | os.PathLike | None) -> Path:
    """The cache folder open_clip downloads into: ``cache_dir``, or huggingface_hub's default."""
    if cache_dir:
        return Path(cache_dir).expanduser().absolute()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).expanduser().absolute()


def is_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as set now, else as huggingface_hub read it at import."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    if value is not None:
        return value.strip().upper() in ("1", "ON", "YES", "TRUE")
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def find_cached(source: WeightsSource, cache_dir: str | os.PathLike | None) -> LocalWeights | None:
    """The source's files in the cache, found without any network access; None if one is missing."""
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> Path | None:
        found = try_to_load_from_cache(source.repo_id, filename, cache_dir=hub_cache(cache_dir))
        return Path(found) if isinstance(found, str) and os.path.isfile(found) else None

    config = cached(source.config_file) if source.config_file else None
    if source.config_file and config is None:
        return None
    weights = next((path for path in map(cached, source.weights_files) if path is not None), None)
    return LocalWeights(source, weights, config) if weights is not None else None


def missing_message(source: WeightsSource, cache_dir: str | os.PathLike | None, why: str) -> str:
    """One line: which weights are missing, and the two ways to provide them."""
    return (f"the weights of backbone {source.name} ({source.describe()}) are not in the cache {hub_cache(cache_dir)} "
            f"and {why}: on a machine with network run `fif weights fetch {source.name} --cache-dir D`, copy D here "
            f"and set experiment.backbone.cache_dir=D, or set experiment.backbone.checkpoint=FILE")


def download(source: WeightsSource, cache_dir: str | os.PathLike | None) -> LocalWeights:
    """Download (or find in the cache) through open_clip's own hub download: its files, order and cache."""
    import open_clip
    from open_clip.pretrained import download_pretrained_from_hf

    cache = str(hub_cache(cache_dir)) if cache_dir else None
    try:
        config = None
        if source.config_file:
            config = Path(download_pretrained_from_hf(source.repo_id, filename=source.config_file, cache_dir=cache))
        if source.tag:
            weights = open_clip.download_pretrained(open_clip.get_pretrained_cfg(source.arch, source.tag),
                                                    cache_dir=cache)
        else:
            weights = download_pretrained_from_hf(source.repo_id, cache_dir=cache)
    except Exception as error:  # hub errors come as many types, often several lines: keep the first
        detail = " ".join(str(error).split())[:300]
        raise FifError(missing_message(source, cache_dir, f"could not be downloaded ({type(error).__name__}: "
                                                          f"{detail})")) from None
    return LocalWeights(source, Path(weights), config)


def manifest_path(cache_dir: str | os.PathLike | None) -> Path:
    return hub_cache(cache_dir) / WEIGHTS_MANIFEST


def read_manifest(cache_dir: str | os.PathLike | None) -> dict[str, dict[str, Any]]:
    """Recorded entries by backbone name ({} when nothing was recorded)."""
    import json

    path = manifest_path(cache_dir)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return dict(data["weights"])
    except (ValueError, KeyError, TypeError) as error:
        raise FifError(f"{path} is not a weights manifest ({type(error).__name__}: {error}); "
                       f"delete it and run `fif weights fetch` again") from None


@contextmanager
def _manifest_lock(cache_dir: str | os.PathLike | None) -> Iterator[None]:
    """Serialise read-modify-write of the manifest between processes (flock: freed if a process dies)."""
    lock = manifest_path(cache_dir).with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _file_record(path: Path, cache_dir: str | os.PathLike | None, digest: str | None = None) -> dict[str, Any]:
    """File (relative to the cache, so a copied cache still matches), SHA-256 and size of a cached file."""
    digest = digest or sha256_file(path)
    blob = Path(os.path.realpath(path)).name  # the hub cache names a blob by its ETag: the SHA-256 for LFS files
    if _SHA256.fullmatch(blob) and blob != digest:
        raise WeightsMismatch(f"{path} does not match the SHA-256 the hub gave for it ({blob[:16]}..., "
                              f"file {digest[:16]}...): a damaged download; run `fif weights fetch` again")
    return {"file": os.path.relpath(os.path.abspath(path), hub_cache(cache_dir)), "sha256": digest,
            "bytes": os.path.getsize(path)}


def record(local: LocalWeights, cache_dir: str | os.PathLike | None,
           files: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write the source's cached files (hashed now unless ``files`` has them) into ``fif_weights.json``."""
    files = files or [_file_record(path, cache_dir) for path in local.files()]
    source = local.source
    entry = {"name": source.name, "arch": source.arch, "tag": source.tag, "repo": source.repo_id,
             **files[-1], "files": files}  # file/sha256/bytes: the weights; files: with a hub repo's config
    with _manifest_lock(cache_dir):
        entries = read_manifest(cache_dir)
        entries[source.name] = entry
        atomic_write_json(manifest_path(cache_dir), {"format": 1, "weights": dict(sorted(entries.items()))})
    return entry


def verify(local: LocalWeights, cache_dir: str | os.PathLike | None) -> dict[str, Any] | None:
    """Check cached files against their recorded SHA-256; returns the entry (None if never recorded)."""
    entry = read_manifest(cache_dir).get(local.source.name)
    if entry is None:
        return None
    recorded = {item["file"]: item for item in entry["files"]}
    for path in local.files():
        relative = os.path.relpath(os.path.abspath(path), hub_cache(cache_dir))
        if relative not in recorded:
            raise WeightsMismatch(f"the cache holds {path} for backbone {local.source.name}, but "
                                  f"{manifest_path(cache_dir)} recorded {', '.join(recorded)}; run "
                                  f"`fif weights fetch {local.source.name} --cache-dir {hub_cache(cache_dir)}` again")
        digest = sha256_file(path)
        if digest != recorded[relative]["sha256"]:
            raise WeightsMismatch(f"{path} does not match the SHA-256 recorded in {manifest_path(cache_dir)} "
                                  f"(recorded {recorded[relative]['sha256'][:16]}..., file {digest[:16]}...): the "
                                  f"cached weights were changed or damaged; run `fif weights fetch "
                                  f"{local.source.name} --cache-dir {hub_cache(cache_dir)}` to replace them")
    return entry


def locate(name: str, cache_dir: str | os.PathLike | None) -> LocalWeights:
    """The backbone's checked files: from the cache without network, else downloaded (unless offline)."""
    source = weights_source(name)
    local = find_cached(source, cache_dir)
    if local is None:
        if is_offline():
            raise FifError(missing_message(source, cache_dir, "HF_HUB_OFFLINE=1 forbids downloading them"))
        local = download(source, cache_dir)
    if verify(local, cache_dir) is None:
        try:  # first sight of these files: record them, so later loads are checked
            record(local, cache_dir)
        except OSError:  # a read-only shared cache: load without a record
            pass
    return local


def _discard(path: Path) -> None:
    """Remove a cached file: the snapshot link and the blob it points to."""
    blob = Path(os.path.realpath(path))
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def fetch(name: str, cache_dir: str | os.PathLike | None) -> tuple[LocalWeights, dict[str, Any], bool]:
    """Download (or confirm) a backbone's weights and record their SHA-256.

    A cached copy that no longer matches its record is replaced by a fresh download. Returns the
    files, the manifest entry and whether a damaged copy was replaced.
    """
    source = weights_source(name)
    if is_offline():
        raise FifError(f"fif weights fetch {name} needs the network, but HF_HUB_OFFLINE=1 is set")
    local = download(source, cache_dir)
    try:
        files = [_file_record(path, cache_dir) for path in local.files()]
        entry = read_manifest(cache_dir).get(name) or {"files": []}
        recorded = {item["file"]: item["sha256"] for item in entry["files"]}
        damaged = [path for path, item in zip(local.files(), files)
                   if recorded.get(item["file"], item["sha256"]) != item["sha256"]]  # a new file is not damaged
    except WeightsMismatch:  # not the SHA-256 the hub gave
        damaged = local.files()
    if not damaged:
        return local, record(local, cache_dir, files), False
    for path in damaged:  # the hub cache would hand the same bytes back: remove them first
        _discard(path)
    local = download(source, cache_dir)
    return local, record(local, cache_dir), True


def cache_status(cache_dir: str | os.PathLike | None) -> list[dict[str, Any]]:
    """Every named backbone and recorded hub repository, with its cached weights file (or None)."""
    recorded = read_manifest(cache_dir)
    rows = []
    for name in [*NAMED_ARCHITECTURES, *sorted(n for n in recorded if n not in NAMED_ARCHITECTURES)]:
        source = weights_source(name)
        local = find_cached(source, cache_dir)
        rows.append({"name": name, "arch": source.arch, "tag": source.tag, "repo": source.repo_id,
                     "file": local.weights if local else None,
                     "bytes": os.path.getsize(local.weights) if local else None, "recorded": name in recorded})
    return rows
