"""Bad input, pretraining-pool shards: a sample without a caption, a cut-off or empty shard, an
empty or missing pool folder. Each is one line naming the shard (and the sample key); with
``experiment.dataset.skip_corrupt=true`` a bad *sample* is skipped and counted, a bad *shard* still
stops the run (its remaining samples are unknown).

tests/test_corrupt.py checks the pool stream and batch builder on their own; here the samples go
through ``fif run`` over the mini benchmark with a pool built from the mini pool's first shard.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest

from bad_input_helpers import SHORT_RUN, nothing_left, one_line_error
from fif.data.samples.pool import PoolStream
from fif.errors import FifError

# One task of two steps: the pool's first ~90 samples are drawn (a third of each batch of 128).
ONE_TASK = (*SHORT_RUN, "experiment.task.num=1", "experiment.dataset.pool_shuffle_buffer=1")
SAMPLES = 300  # per shard: more than the run draws, so no sample comes round twice


def _members(mini_root: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(mini_root / "pool" / "shard-00000.tar") as tar:
        members = tar.getmembers()[: 2 * SAMPLES]  # image and caption of each sample
        return [(m, tar.extractfile(m).read()) for m in members]


def _write_shard(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    import io

    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def members(mini_root) -> list[tuple[tarfile.TarInfo, bytes]]:
    return _members(mini_root)


@pytest.fixture()
def captionless(tmp_path, members) -> tuple[Path, str]:
    """A pool folder whose shard's second sample has an image but no caption; (folder, "shard:key")."""
    key = members[2][0].name.split(".")[0]
    kept = [(info, data) for info, data in members if not (info.name.startswith(key + ".") and
                                                           info.name.endswith(".txt"))]
    assert len(kept) == len(members) - 1
    shard = _write_shard(tmp_path / "pool" / "shard-00000.tar", kept)
    return shard.parent, f"{shard}:{key}"


def _run(capsys, tmp_path: Path, pool: Path, *overrides: str, pattern: str | None = None) -> Path:
    argv = ["run", *ONE_TASK, f"log.folder={tmp_path / 'runs'}", "log.name=r",
            f"experiment.dataset.pretraining_pool={pool}", *overrides]
    if pattern is not None:
        one_line_error(capsys, argv, pattern)
    else:
        from fif.cli import main

        assert main(argv) == 0, capsys.readouterr().err
    return tmp_path / "runs" / "r"


def test_a_sample_without_a_caption_is_one_line_naming_shard_and_key(capsys, tmp_path, captionless):
    pool, where = captionless
    _run(capsys, tmp_path, pool, pattern=f"^error: pretraining pool sample {re.escape(where)} has no caption "
                                         f"\\(expected a .txt/.caption/.json member\\)$")


def test_with_skip_corrupt_a_sample_without_a_caption_is_skipped_and_counted(capsys, tmp_path, captionless):
    pool, where = captionless
    run = _run(capsys, tmp_path, pool, "experiment.dataset.skip_corrupt=true")
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "complete"
    assert results["skipped_corrupt_files"] == {where: 1} and results["skipped_corrupt"] == 1


@pytest.mark.parametrize("skip_corrupt", [False, True])
def test_a_cut_off_shard_is_named_even_with_skip_corrupt(tmp_path, members, skip_corrupt):
    """The batch builder never sees such a shard's samples: the stream that reads it stops (a stream
    knows nothing of skip_corrupt, which replaces samples, not the unknown rest of a shard)."""
    shard = _write_shard(tmp_path / "shard-00000.tar", members)
    with tarfile.open(shard) as tar:  # cut inside the data of sample 20's image (a cut inside a
        cut = tar.getmembers()[40].offset_data + 100  # *header* is taken by tarfile for the archive's end)
    shard.write_bytes(shard.read_bytes()[:cut])
    stream = PoolStream([shard], seed=0, shuffle_buffer=1, skip_corrupt=skip_corrupt)
    assert len(stream.take(15)) == 15  # what precedes the cut is read
    with pytest.raises(FifError) as error:
        stream.take(20)
    assert str(error.value) == (f"pretraining pool shard {shard} cannot be read (ReadError: unexpected end of data); "
                                f"expected a complete webdataset tar file: check the pool with `fif data pool "
                                f"{shard.parent}`, then replace or remove the shard")


@pytest.mark.parametrize("content, reason", [(b"", "empty file"), (b"not a tar at all " * 64, "invalid header")])
def test_a_shard_that_is_not_a_tar_is_named(tmp_path, members, content, reason):
    good = _write_shard(tmp_path / "shard-00000.tar", members[:20])
    bad = tmp_path / "shard-00001.tar"
    bad.write_bytes(content)
    stream = PoolStream([good, bad], seed=0, shuffle_buffer=1)
    with pytest.raises(FifError) as error:
        stream.take(25)  # both shards, in either order
    assert str(error.value).startswith(f"pretraining pool shard {bad} cannot be read (ReadError: {reason}); ")


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "experiment.dataset.pretraining_pool={p}: no .tar shards found"),
    (lambda p: None, "experiment.dataset.pretraining_pool={p} does not exist: expected a folder of webdataset "
                     ".tar shards"),
    (lambda p: p.write_text("x"), "experiment.dataset.pretraining_pool={p} is a file: expected a folder of "
                                  "webdataset .tar shards"),
])
def test_an_empty_missing_or_file_pool_is_refused_before_anything_is_written(capsys, tmp_path, make, message):
    pool = tmp_path / "pool"
    make(pool)
    _run(capsys, tmp_path, pool, pattern="^error: " + re.escape(message.format(p=pool)) + "$")
    nothing_left(tmp_path / "runs")
