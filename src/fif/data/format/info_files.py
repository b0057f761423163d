"""Per-split info files of the reference: ``<info_dir>/<FOLDER>_<split>[_224].json``.

An info file maps an image key (its path under ``ROOT/<FOLDER>/``) to
``{classname, default_caption, primer_caption, synthetic_caption, synthetic_merged_caption, target}``.
Training text is ``default_caption`` when set (a string, or a list of 5 for FLICKR30K/MSCOCO),
else ``synthetic_merged_caption``, else ``primer_caption``, as in the reference.

The ``_224`` variant (the reference's ``create_resized_variant_if_possible``) lists the same
images resized to 224 px, keyed ``<FOLDER>_<split>_224/<key>``; it is used where it exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fif.data.format.packed import PackedCaptions, PackedStrings
from fif.errors import CorruptSampleError, FifError

RESIZED = 224  # the reference's default img_size, the suffix of its resized variants


def resized_variant(folder: str, split: str) -> str:
    """Name of the resized variant: its info file stem and its subfolder of ``ROOT/<FOLDER>/``."""
    return f"{folder}_{split}_{RESIZED}"


def info_file(info_dir: Path, root: Path, folder: str, split: str, tar: bool = False, resized: bool = False) -> Path:
    """The info file to read; with ``resized`` the 224-px variant where its info file (and, for
    folders, its image folder) exists, else the original, as the reference's "if possible"."""
    if resized:
        variant = resized_variant(folder, split)
        candidate = info_dir / f"{variant}.json"
        if candidate.is_file() and (tar or (root / folder / variant).is_dir()):
            return candidate
    return info_dir / f"{folder}_{split}.json"


class _BadEntry(Exception):
    """One info entry the reader cannot use; becomes a message naming the file and key."""


def _captions_of(entry: dict) -> list[str]:
    for field in ("default_caption", "synthetic_merged_caption", "primer_caption"):
        value = entry.get(field)
        if not value:
            continue
        captions = [value] if isinstance(value, str) else value
        if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            raise _BadEntry(f"{field} is {type(value).__name__}, expected a string or a list of strings")
        return captions
    raise _BadEntry("no caption (default_caption, synthetic_merged_caption and primer_caption are all empty)")


@dataclass
class InfoEntries:
    """The usable entries of one info file, in file order."""

    keys: PackedStrings
    targets: np.ndarray  # int64
    captions: PackedCaptions
    classnames: list[str]  # index = target, from the entries' classname fields; [] when none has one


def read_info(path: Path, kind: str, problems: list[str] | None = None) -> InfoEntries:
    """Parse an info file. A bad entry raises CorruptSampleError naming the file and key, or, when
    ``problems`` is a list, is appended to it as one line and left out (``fif data verify``)."""
    try:
        info = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise FifError(f"info file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise FifError(f"info file {path} could not be read: {error}") from None
    except json.JSONDecodeError as error:
        raise FifError(f"info file {path} is not valid JSON: {error}") from None
    if not isinstance(info, dict):
        raise FifError(f"info file {path}: expected a JSON object {{image key: entry}}, got {type(info).__name__}")
    keys: list[str] = []
    targets: list[int] = []
    flat: list[str] = []
    counts: list[int] = []
    names: dict[int, str] = {}
    needs_class = kind == "classification"
    for key, entry in info.items():
        try:
            if not isinstance(entry, dict):
                raise _BadEntry(f"entry is {type(entry).__name__}, expected an object")
            target = entry.get("target")
            if type(target) is not int:
                raise _BadEntry(f"'target' is {target!r}, expected an integer")
            captions = _captions_of(entry)
            classname = entry.get("classname")  # retrieval sets may name classes too (FSCOCO)
            if classname is None:
                if needs_class:
                    raise _BadEntry("classification entry without 'classname'")
            elif not isinstance(classname, str):
                raise _BadEntry(f"'classname' is {classname!r}, expected a string")
            elif names.setdefault(target, classname) != classname:
                raise _BadEntry(f"target {target} is both {names[target]!r} and {classname!r}")
        except _BadEntry as bad:
            message = f"{path}: {key}: {bad}"
            if problems is None:
                raise CorruptSampleError(message, str(path)) from None
            problems.append(message)
            continue
        keys.append(key)
        targets.append(target)
        flat.extend(captions)
        counts.append(len(captions))
    classnames = [names.get(t, f"<missing class {t}>") for t in range(max(names) + 1)] if names else []
    return InfoEntries(PackedStrings(keys), np.array(targets, dtype=np.int64),
                       PackedCaptions.from_flat(flat, counts), classnames)
