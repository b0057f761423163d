"""The pretraining pool: webdataset tar shards (image + caption per key), streamed with shuffling.

The pool is never loaded into memory: webdataset reads shards sequentially through a shuffle
buffer. The order is a pure function of (seed, epoch), and the stream counts what it has handed
out, so a run can reproduce its position.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from PIL import Image

from fif.errors import FifError

IMAGE_KEYS = "png;jpg;jpeg;webp"
TEXT_KEYS = "txt;caption;json"


def find_shards(folder: str | Path, limit: int | None = None) -> list[Path]:
    folder = Path(folder)
    shards = sorted(folder.glob("*.tar"))
    if not shards:
        raise FifError(f"experiment.dataset.pretraining_pool={folder}: no .tar shards found")
    return shards[:limit] if limit else shards


class PoolStream:
    """Endless shuffled (image, caption) stream over tar shards."""

    def __init__(self, shards: list[Path], seed: int, shuffle_buffer: int = 5000) -> None:
        if not shards:
            raise FifError("the pretraining pool has no shards")
        self.shards, self.seed, self.shuffle_buffer = [str(s) for s in shards], seed, shuffle_buffer
        self.consumed = 0
        self.epoch = 0
        self._iterator: Iterator | None = None

    def _epoch_iterator(self) -> Iterator:
        import webdataset as wds

        seed = self.seed * 1000 + self.epoch
        dataset = (wds.WebDataset(self.shards, shardshuffle=len(self.shards), seed=seed, detshuffle=True,
                                  empty_check=False, nodesplitter=None, workersplitter=None)
                   .shuffle(self.shuffle_buffer, seed=seed)
                   .decode("pil")
                   .to_tuple(IMAGE_KEYS, TEXT_KEYS))
        return iter(dataset)

    def next(self) -> tuple[Image.Image, str]:
        while True:
            if self._iterator is None:
                self._iterator = self._epoch_iterator()
            try:
                image, caption = next(self._iterator)
            except StopIteration:
                self.epoch += 1
                self._iterator = None
                continue
            self.consumed += 1
            if isinstance(caption, dict):  # json sidecar
                caption = caption.get("caption") or caption.get("text") or ""
            return image.convert("RGB"), str(caption)

    def take(self, count: int) -> list[tuple[Image.Image, str]]:
        return [self.next() for _ in range(count)]
