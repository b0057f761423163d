"""The pretraining pool: webdataset tar shards (image + caption per key), streamed with shuffling.

The pool is never loaded into memory: webdataset reads shards sequentially through a shuffle
buffer. The order is a pure function of (seed, epoch), and the stream counts what it has handed
out, so a run can reproduce its position.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterator

from PIL import Image

from fif.errors import CorruptSampleError, FifError

IMAGE_KEYS = "png;jpg;jpeg;webp"
TEXT_KEYS = "txt;caption;json"


def find_shards(folder: str | Path, limit: int | None = None) -> list[Path]:
    folder = Path(folder)
    shards = sorted(folder.glob("*.tar"))
    if not shards:
        raise FifError(f"experiment.dataset.pretraining_pool={folder}: no .tar shards found")
    return shards[:limit] if limit else shards


class PoolStream:
    """Endless shuffled (image, caption) stream over tar shards.

    A sample that fails to decode raises CorruptSampleError naming shard and key, unless
    ``skip_corrupt``: then the stream moves on to its next sample and counts the skip in ``skipped``.
    """

    def __init__(self, shards: list[Path], seed: int, shuffle_buffer: int = 5000, skip_corrupt: bool = False) -> None:
        if not shards:
            raise FifError("the pretraining pool has no shards")
        self.shards, self.seed, self.shuffle_buffer = [str(s) for s in shards], seed, shuffle_buffer
        self.skip_corrupt = skip_corrupt
        self.skipped: Counter[str] = Counter()
        self.consumed = 0
        self.epoch = 0
        self._iterator: Iterator | None = None

    def _epoch_iterator(self) -> Iterator:
        import webdataset as wds

        seed = self.seed * 1000 + self.epoch
        dataset = (wds.WebDataset(self.shards, shardshuffle=len(self.shards), seed=seed, detshuffle=True,
                                  empty_check=False, nodesplitter=None, workersplitter=None)
                   .shuffle(self.shuffle_buffer, seed=seed)
                   .decode("pil", handler=self._on_decode_error)
                   .to_tuple(IMAGE_KEYS, TEXT_KEYS))
        return iter(dataset)

    def _on_decode_error(self, error: Exception) -> bool:
        """webdataset handler: True skips the sample; otherwise a one-line error naming it."""
        where = f"{getattr(error, 'url', '?')}:{getattr(error, 'key', '?')}.{getattr(error, 'k', '?')}"
        if not self.skip_corrupt:
            cause = error.__cause__ or error
            raise CorruptSampleError(f"pretraining pool sample {where} is corrupt "
                                     f"({type(cause).__name__}: {cause})") from None
        self.skipped[where] += 1
        return True

    def next(self) -> tuple[Image.Image, str]:
        while True:
            if self._iterator is None:
                self._iterator, self._epoch_start = self._epoch_iterator(), self.consumed
            try:
                image, caption = next(self._iterator)
            except StopIteration:
                if self.consumed == self._epoch_start:
                    raise FifError(f"the pretraining pool ({len(self.shards)} shards from {self.shards[0]}) has "
                                   f"no readable samples") from None
                self.epoch += 1
                self._iterator = None
                continue
            self.consumed += 1
            if isinstance(caption, dict):  # json sidecar
                caption = caption.get("caption") or caption.get("text") or ""
            return image.convert("RGB"), str(caption)

    def take(self, count: int) -> list[tuple[Image.Image, str]]:
        return [self.next() for _ in range(count)]
