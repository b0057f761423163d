"""The reference's 29 stream files ship in the package and are usable by name (and by its path spelling)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from fif.config.blocks import check_run_options
from fif.config import compose
from fif.data.format.registry import builtin_registry
from fif.data.format.streams import check_stream, make_tasks, read_stream, resolve_stream, shipped_streams
from fif.errors import FifError

MAIN_SIZE = 18381  # the main streams: every class (with training samples) of the 41 adaptation datasets
SMALL = {"random_sequence_1_short": (1000, 37), "debug_sequence": (100, 24), "debug_seq_small": (40, 5)}
MAIN = ([f"{kind}_sequence_{k}" for kind in ("random", "similarity") for k in range(1, 6)]
        + ["frequency_sequence_1", "performance_sequence_1"]
        + [f"{kind}_sequence_reverse_1" for kind in ("random", "similarity", "frequency", "performance")]
        + [f"time_incremental_{kind}_{k}" for kind in ("dschunked", "rsagg") for k in range(1, 6)])
REFERENCE_NAMES = sorted(MAIN + list(SMALL))


def _reference_shipped() -> dict[str, Path]:
    return {name: path for name, path in shipped_streams().items() if path.name.endswith(".json.gz")}


def test_all_29_reference_streams_ship_next_to_the_mini_ones():
    shipped = shipped_streams()
    assert sorted(_reference_shipped()) == REFERENCE_NAMES and len(REFERENCE_NAMES) == 29
    assert {"mini_random_1", "mini_dataset_incremental"} <= set(shipped) and len(shipped) == 31
    for name in REFERENCE_NAMES:
        assert resolve_stream(name) == shipped[name]


def test_every_shipped_reference_stream_has_its_documented_size_and_datasets():
    registry = builtin_registry()
    adaptation = {spec.folder for spec in registry.values() if spec.role == "adaptation"}
    assert len(adaptation) == 41
    main_sets = set()
    for name, path in _reference_shipped().items():
        entries = check_stream(read_stream(path), registry, name)
        folders = {folder for folder, _ in entries}
        if name in SMALL:
            assert (len(entries), len(folders)) == SMALL[name], name
        else:
            assert len(entries) == len(set(entries)) == MAIN_SIZE and folders == adaptation, name
            main_sets.add(frozenset(entries))
    assert len(main_sets) == 1  # all 26 main streams order the same 18,381 classes
    first = read_stream(shipped_streams()["random_sequence_1"])
    assert read_stream(shipped_streams()["random_sequence_1_short"]) == first[:1000]
    assert read_stream(shipped_streams()["debug_sequence"]) == first[:100]


def test_shipped_streams_equal_the_reference_files_byte_for_byte(reference_dir):
    files = sorted((reference_dir / "streams").glob("*.json"))
    assert sorted(p.stem for p in files) == REFERENCE_NAMES
    shipped = _reference_shipped()
    for path in files:
        assert gzip.decompress(shipped[path.stem].read_bytes()) == path.read_bytes(), path.stem
        assert read_stream(shipped[path.stem]) == read_stream(path), path.stem


def _tasks(name: str, num: int = 20):
    cfg = compose([f"experiment.dataset.sequence={name}", f"experiment.task.num={num}"])
    return make_tasks(check_run_options(cfg).experiment, "/no/data/root/needed", builtin_registry())


def test_every_shipped_reference_stream_chunks_into_20_tasks():
    sizes = {MAIN_SIZE: [920] + [919] * 19, 1000: [50] * 20, 100: [5] * 20, 40: [2] * 20}
    for name in REFERENCE_NAMES:
        entries, tasks = _tasks(name)
        assert [len(t) for t in tasks] == sizes[len(entries)], name
        assert [e for t in tasks for e in t] == entries
    entries, tasks = _tasks("time_incremental_dschunked_1")
    assert tasks[0][0][0] == "FLOWERS102" and tasks[-1][-1][0] == "SynthCLIP106"  # oldest first, newest last


def test_the_reference_path_spelling_means_the_shipped_stream(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = shipped_streams()
    assert resolve_stream("stream_construction/random_sequence_1.json") == shipped["random_sequence_1"]
    assert resolve_stream("stream_construction/debug_seq_small.json") == shipped["debug_seq_small"]
    entries, tasks = _tasks("stream_construction/time_incremental_dschunked_1.json")
    assert entries == read_stream(shipped["time_incremental_dschunked_1"]) and len(tasks) == 20
    # a file at that path wins over the shipped stream of the same name
    (tmp_path / "stream_construction").mkdir()
    own = tmp_path / "stream_construction" / "random_sequence_1.json"
    own.write_text(json.dumps(["CIFAR100+++apple", "DTD+++banded"]))
    spelled = "stream_construction/random_sequence_1.json"
    assert resolve_stream(spelled) == Path(spelled)
    assert _tasks("stream_construction/random_sequence_1.json", 2)[0] == [("CIFAR100", "apple"), ("DTD", "banded")]


def test_an_unknown_stream_is_one_line_listing_every_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for value in ("stream_construction/random_sequence_1_fast.json", "random_sequence_9",
                  "elsewhere/random_sequence_1.json"):
        with pytest.raises(FifError) as caught:
            resolve_stream(value)
        message = str(caught.value)
        assert "\n" not in message and message.startswith(f"experiment.dataset.sequence={value!r}")
        assert all(name in message for name in REFERENCE_NAMES + ["mini_random_1"])


def test_read_stream_reads_gzip_and_plain_json_and_names_a_broken_file(tmp_path):
    entries = [("CIFAR100", "apple"), ("DTD", "banded")]
    text = json.dumps([f"{d}+++{c}" for d, c in entries], indent=4).encode()
    (tmp_path / "s.json").write_bytes(text)
    (tmp_path / "s.json.gz").write_bytes(gzip.compress(text))
    (tmp_path / "zipped_but_named.json").write_bytes(gzip.compress(text))  # recognised by content, not name
    for name in ("s.json", "s.json.gz", "zipped_but_named.json"):
        assert read_stream(tmp_path / name) == entries
    (tmp_path / "cut.json.gz").write_bytes(gzip.compress(text)[:20])
    (tmp_path / "junk.json.gz").write_bytes(b"\x1f\x8b" + os.urandom(64))
    for name in ("cut.json.gz", "junk.json.gz"):
        with pytest.raises(FifError, match=f"stream file .*{name} could not be read"):
            read_stream(tmp_path / name)


def test_streams_list_prints_every_shipped_stream_with_its_size(in_process):
    result = in_process("streams", "list")
    assert result.returncode == 0, result.stderr
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in result.stdout.splitlines()}
    assert len(rows) == 31
    assert rows["random_sequence_1"] == ["18381 classes", "41 datasets", "reference"]
    assert rows["debug_seq_small"] == ["40 classes", "5 datasets", "reference"]
    assert rows["mini_random_1"] == ["100 classes", "8 datasets", "mini"]
