"""The training side of a stream: every train sample of the streamed classes, by global index.

Tasks, the replay buffer and the mixture refer to samples by index into this catalogue (never by
copies of images), as the reference's "buffer of all previous tasks" does.
"""

from __future__ import annotations

import bisect
import random
from pathlib import Path
from collections.abc import Callable

from PIL import Image

from fif.data.format.fif_format import ADAPTATION, DatasetSpec, Split, read_split
from fif.data.format.streams import StreamEntry
from fif.errors import CorruptSampleError, FifError


class TrainingCatalogue:
    """Train samples of all streamed classes; ``task_indices(classes)`` gives a task's samples."""

    def __init__(self, root: str | Path, registry: dict[str, DatasetSpec], entries: list[StreamEntry],
                 info_dir: str | Path | None = None, preload: bool = False, skip_corrupt: bool = False,
                 tar: bool = False, resized: bool = False, source: str = "stream",
                 train_part: Callable[[Split], Split] | None = None) -> None:
        """``train_part`` narrows each train split to the samples streamed (validation mode keeps its
        validation part out of training)."""
        by_folder = {spec.folder: spec for spec in registry.values()}
        self.splits: list[Split] = []
        self.offsets: list[int] = []
        self._by_class: dict[StreamEntry, list[int]] = {}
        total = 0
        for folder in dict.fromkeys(f for f, _ in entries):
            spec = by_folder.get(folder)
            if spec is None:
                raise FifError(f"stream entry {folder}+++...: dataset folder {folder!r} is not in the registry "
                               f"(known: {', '.join(sorted(by_folder))})")
            if spec.role != ADAPTATION:
                raise FifError(f"stream entry {folder}+++...: {folder} is an evaluation-only dataset "
                               f"(role {spec.role!r}); streams may only bring adaptation datasets")
            split = read_split(root, spec, "train", info_dir, tar=tar, resized=resized)
            if train_part is not None:
                split = train_part(split)
            for index, target in enumerate(split.targets):
                self._by_class.setdefault((folder, split.classnames[target]), []).append(total + index)
            self.splits.append(split)
            self.offsets.append(total)
            total += len(split)
        for position, (folder, classname) in enumerate(entries):
            if (folder, classname) not in self._by_class:
                known = [c for f, c in self._by_class if f == folder]
                raise FifError(f"{source}, entry {position} ({folder}+++{classname}): class {classname!r} does not "
                               f"exist in {folder}'s train split (e.g. {', '.join(map(repr, known[:5]))})")
        self.size = total
        self._images: list[Image.Image | CorruptSampleError] | None = None
        if preload:  # with skip_corrupt a corrupt file is remembered and raised when the sample is used
            self._images = [self._preload(split, i, skip_corrupt) for split in self.splits for i in range(len(split))]

    def __len__(self) -> int:
        return self.size

    def task_indices(self, classes: list[StreamEntry]) -> list[int]:
        return [i for entry in classes for i in self._by_class[entry]]

    def _locate(self, index: int) -> tuple[Split, int]:
        position = bisect.bisect_right(self.offsets, index) - 1  # called twice per sample: no linear scan
        if position < 0:
            raise IndexError(index)
        return self.splits[position], index - self.offsets[position]

    @staticmethod
    def _preload(split: Split, index: int, skip_corrupt: bool) -> Image.Image | CorruptSampleError:
        try:
            return split.image(index)
        except CorruptSampleError as error:
            if not skip_corrupt:
                raise
            return error

    def image(self, index: int) -> Image.Image:
        if self._images is not None:
            image = self._images[index]
            if isinstance(image, CorruptSampleError):
                raise CorruptSampleError(str(image), image.path)
            return image
        split, local = self._locate(index)
        return split.image(local)

    def caption(self, index: int, rng: random.Random) -> str:
        split, local = self._locate(index)
        return split.train_caption(local, rng)
