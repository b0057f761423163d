"""The pretraining pool: webdataset tar shards (image + caption per key), streamed with shuffling.

The pool is never loaded into memory: webdataset reads shards sequentially through a shuffle
buffer. The order is a pure function of (seed, epoch), and the stream counts what it has handed
out (``position``: raw samples drawn from the epoch's shuffled order), so a resumed run re-opens
the epoch and skips that many raw samples before touching anything: the shuffle buffer itself is
never saved, only where the stream stood in its deterministic order. Skipping costs reading up to
one epoch of tar data, once per resume.

The stream hands out *undecoded* samples (``PoolRecord``: the image bytes and the caption). Decoding
is the expensive part and happens where the batch is built (a loader worker), so the walk through
the shards stays sequential and deterministic while decoding runs in parallel. A record that does
not decode (a broken image, no image, no caption) is dealt with by the batch builder (a one-line
error naming shard and key, or with ``skip_corrupt`` a replacement drawn from the same batch's pool
samples, counted). A shard that cannot be read as a tar (cut off, empty, not a tar) stops the run
with one line naming it, ``skip_corrupt`` or not.

Because a loader reads ahead, the stream may stand several batches past what training has used.
``settle(state)`` records the stream's state as of the last batch training consumed, and
``state_dict()`` returns that state, so a checkpoint never includes prefetched samples.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterator

from PIL import Image

from fif.data.format.images import decode_rgb
from fif.errors import CorruptSampleError, FifError

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp")
TEXT_EXTENSIONS = ("txt", "caption", "json")


def find_shards(folder: str | Path, limit: int | None = None) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise FifError(f"experiment.dataset.pretraining_pool={folder} {what}: expected a folder of webdataset "
                       f".tar shards")
    shards = sorted(folder.glob("*.tar"))
    if not shards:
        raise FifError(f"experiment.dataset.pretraining_pool={folder}: no .tar shards found")
    return shards[:limit] if limit else shards


@dataclass(frozen=True)
class PoolRecord:
    """One undecoded pool sample: cheap to hand to a worker process (bytes and a string)."""

    where: str  # shard:key, for error messages and skip counts
    image_extension: str | None
    image_bytes: bytes | None
    caption_extension: str | None
    caption_bytes: bytes | None

    def decode(self) -> tuple[Image.Image, str]:
        """The RGB image and the caption; a CorruptSampleError naming ``where`` if either is missing or broken."""
        if self.image_bytes is None:
            raise CorruptSampleError(f"pretraining pool sample {self.where} has no image "
                                     f"(expected a .{'/.'.join(IMAGE_EXTENSIONS)} member)", self.where)
        if self.caption_bytes is None:
            raise CorruptSampleError(f"pretraining pool sample {self.where} has no caption "
                                     f"(expected a .{'/.'.join(TEXT_EXTENSIONS)} member)", self.where)
        image = decode_rgb(io.BytesIO(self.image_bytes), f"{self.where}.{self.image_extension}")
        try:
            text = self.caption_bytes.decode("utf-8")
            if self.caption_extension == "json":  # json sidecar
                sidecar = json.loads(text)
                text = (sidecar.get("caption") or sidecar.get("text") or "") if isinstance(sidecar, dict) else sidecar
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CorruptSampleError(f"pretraining pool sample {self.where}.{self.caption_extension} is not a "
                                     f"readable caption ({type(error).__name__}: {error})", self.where) from None
        return image, str(text)


def _record(sample: dict[str, Any]) -> PoolRecord:
    """A webdataset raw sample (extension -> bytes) as a PoolRecord."""
    where = f"{sample.get('__url__', '?')}:{sample.get('__key__', '?')}"
    image = next((ext for ext in IMAGE_EXTENSIONS if ext in sample), None)
    text = next((ext for ext in TEXT_EXTENSIONS if ext in sample), None)
    return PoolRecord(where, image, sample[image] if image else None, text, sample[text] if text else None)


def _broken_shard(error: Exception, shards: list[str]) -> FifError:
    """A shard that is cut off, empty or not a tar, as one line naming it (webdataset appends the
    stream and the shard's URL to the error's arguments). ``skip_corrupt`` does not cover it: the shard
    is one broken file whose remaining samples are unknown, not a sample that can be replaced."""
    shard = next((a for a in reversed(error.args) if isinstance(a, str) and a in shards), None)
    reason = next((str(a) for a in error.args if isinstance(a, str)), "")
    reason = " ".join(reason.split(" @ <", 1)[0].split())  # tarfile appends the stream's repr
    folder = Path(shard or shards[0]).parent
    where = f"shard {shard}" if shard else f"a shard in {folder}"
    return FifError(f"pretraining pool {where} cannot be read ({type(error).__name__}: {reason or 'no detail'}); "
                    f"expected a complete webdataset tar file: check the pool with `fif data pool {folder}`, then "
                    f"replace or remove the shard")


class PoolStream:
    """Endless shuffled stream of undecoded pool samples over tar shards."""

    def __init__(self, shards: list[Path], seed: int, shuffle_buffer: int = 5000, skip_corrupt: bool = False) -> None:
        if not shards:
            raise FifError("the pretraining pool has no shards")
        self.shards, self.seed, self.shuffle_buffer = [str(s) for s in shards], seed, shuffle_buffer
        self.skip_corrupt = skip_corrupt  # read by the batch builder, which decodes
        self.consumed = 0  # samples handed out, all epochs
        self.epoch = 0
        self.position = 0  # raw samples drawn from this epoch's shuffled order
        self._epoch_start = 0  # ``consumed`` when this epoch began (an epoch that yields nothing is an error)
        self._skip = 0  # resume: raw samples of this epoch to pass over
        self._iterator: Iterator | None = None
        self._settled: dict[str, Any] | None = None  # the state as of the last batch training used

    def _epoch_iterator(self) -> Iterator[dict[str, Any]]:
        import webdataset as wds

        seed = self.seed * 1000 + self.epoch
        dataset = (wds.WebDataset(self.shards, shardshuffle=len(self.shards), seed=seed, detshuffle=True,
                                  empty_check=False, nodesplitter=None, workersplitter=None)
                   .shuffle(self.shuffle_buffer, seed=seed)
                   .compose(self._track))
        return iter(dataset)

    def _track(self, samples: Iterator[dict]) -> Iterator[dict]:
        """Count raw samples in shuffled order; pass over the first ``_skip`` (a resume)."""
        for sample in samples:
            self.position += 1
            if self.position > self._skip:
                yield sample

    def next(self) -> PoolRecord:
        while True:
            if self._iterator is None:
                self._iterator = self._epoch_iterator()
            try:
                sample = next(self._iterator)
            except (tarfile.TarError, OSError, ValueError) as error:  # webdataset re-raises the shard's read error
                raise _broken_shard(error, self.shards) from None
            except StopIteration:
                if self.consumed == self._epoch_start:
                    raise FifError(f"the pretraining pool ({len(self.shards)} shards from {self.shards[0]}) has "
                                   f"no samples") from None
                self.epoch += 1
                self.position, self._skip, self._epoch_start = 0, 0, self.consumed
                self._iterator = None
                continue
            self.consumed += 1
            return _record(sample)

    def take(self, count: int) -> list[PoolRecord]:
        return [self.next() for _ in range(count)]

    def live_state(self) -> dict[str, Any]:
        """Where the stream's reader stands now (possibly ahead of training: see ``settle``)."""
        return {"seed": self.seed, "shards": len(self.shards), "shuffle_buffer": self.shuffle_buffer,
                "epoch": self.epoch, "consumed": self.consumed, "position": self.position,
                "epoch_start": self._epoch_start}

    def settle(self, state: dict[str, Any]) -> None:
        """Training has used every sample up to ``state`` (a ``live_state()`` taken after them)."""
        self._settled = state

    def state_dict(self) -> dict[str, Any]:
        """Where training stands in the stream (plain values: ``torch.load(weights_only=True)`` reads them)."""
        return dict(self._settled if self._settled is not None else self.live_state())

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
        self._iterator = None
        self._settled = {**mine, **{k: state[k] for k in ("epoch", "consumed", "position", "epoch_start")}}
