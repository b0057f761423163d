"""The pretraining pool: webdataset tar shards (image + caption per key), streamed with shuffling.

The pool is never loaded into memory: webdataset reads shards sequentially through a shuffle
buffer. The order is a pure function of (seed, epoch), and the stream counts what it has handed
out (``position``: raw samples drawn from the epoch's shuffled order, corrupt ones included), so
a resumed run re-opens the epoch and skips that many raw samples before decoding anything: the
shuffle buffer itself is never saved, only where the stream stood in its deterministic order.
Skipping costs reading (not decoding) up to one epoch of tar data, once per resume.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterator

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
        self.consumed = 0  # samples handed out, all epochs
        self.epoch = 0
        self.position = 0  # raw samples drawn from this epoch's shuffled order (corrupt ones included)
        self._epoch_start = 0  # ``consumed`` when this epoch began (an epoch that yields nothing is an error)
        self._skip = 0  # resume: raw samples of this epoch to pass over undecoded
        self._iterator: Iterator | None = None

    def _epoch_iterator(self) -> Iterator:
        import webdataset as wds

        seed = self.seed * 1000 + self.epoch
        dataset = (wds.WebDataset(self.shards, shardshuffle=len(self.shards), seed=seed, detshuffle=True,
                                  empty_check=False, nodesplitter=None, workersplitter=None)
                   .shuffle(self.shuffle_buffer, seed=seed)
                   .compose(self._track)
                   .decode("pil", handler=self._on_decode_error)
                   .to_tuple(IMAGE_KEYS, TEXT_KEYS))
        return iter(dataset)

    def _track(self, samples: Iterator[dict]) -> Iterator[dict]:
        """Count raw samples in shuffled order; pass over the first ``_skip`` (a resume) without decoding."""
        for sample in samples:
            self.position += 1
            if self.position > self._skip:
                yield sample

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
                self._iterator = self._epoch_iterator()
            try:
                image, caption = next(self._iterator)
            except StopIteration:
                if self.consumed == self._epoch_start:
                    raise FifError(f"the pretraining pool ({len(self.shards)} shards from {self.shards[0]}) has "
                                   f"no readable samples") from None
                self.epoch += 1
                self.position, self._skip, self._epoch_start = 0, 0, self.consumed
                self._iterator = None
                continue
            self.consumed += 1
            if isinstance(caption, dict):  # json sidecar
                caption = caption.get("caption") or caption.get("text") or ""
            return image.convert("RGB"), str(caption)

    def take(self, count: int) -> list[tuple[Image.Image, str]]:
        return [self.next() for _ in range(count)]

    def state_dict(self) -> dict[str, Any]:
        """Where the stream stands (plain values: ``torch.load(weights_only=True)`` reads them)."""
        return {"seed": self.seed, "shards": len(self.shards), "shuffle_buffer": self.shuffle_buffer,
                "epoch": self.epoch, "consumed": self.consumed, "position": self.position,
                "epoch_start": self._epoch_start, "skipped": dict(self.skipped)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where ``state`` stood: the next sample is the one the saved stream would hand out next."""
        mine = {"seed": self.seed, "shards": len(self.shards), "shuffle_buffer": self.shuffle_buffer}
        for key, value in mine.items():
            if state[key] != value:
                raise FifError(f"the saved pretraining-pool stream has {key}={state[key]} but this run has {value} "
                               f"(experiment.seed, experiment.dataset.pretraining_pool / pool_shards, "
                               f"pool_shuffle_buffer must match the run's)")
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])
        self._epoch_start, self._skip, self.position = int(state["epoch_start"]), int(state["position"]), 0
        self.skipped = Counter({str(k): int(v) for k, v in state["skipped"].items()})
        self._iterator = None
