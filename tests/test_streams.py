import json

import pytest

from fif.data.streams import chunk_into_tasks, read_stream, resolve_stream, shipped_streams, write_stream
from fif.errors import FifError


def test_chunking_gives_the_first_remainder_tasks_one_more_class():
    entries = [("D", str(i)) for i in range(23)]
    tasks = chunk_into_tasks(entries, 5)
    assert [len(t) for t in tasks] == [5, 5, 5, 4, 4]
    assert [e for t in tasks for e in t] == entries  # contiguous, order kept


def test_chunking_rejects_more_tasks_than_classes():
    with pytest.raises(FifError, match="experiment.task.num=11"):
        chunk_into_tasks([("D", "a")] * 10, 11)


def test_every_reference_stream_parses(reference_dir):
    streams = sorted((reference_dir / "streams").glob("*.json"))
    assert streams
    for path in streams:
        entries = read_stream(path)
        assert entries and all(folder and classname for folder, classname in entries)
    main = read_stream(reference_dir / "streams" / "random_sequence_1.json")
    assert len(main) == 18381
    assert len({folder for folder, _ in main}) == 41


def test_round_trip_and_malformed_entries(tmp_path):
    entries = [("SWATCHES", "teal"), ("GLYPHS", "k")]
    write_stream(tmp_path / "s.json", entries)
    assert read_stream(tmp_path / "s.json") == entries
    (tmp_path / "bad.json").write_text(json.dumps(["SWATCHES+++teal", "no separator"]))
    with pytest.raises(FifError, match="entry 1"):
        read_stream(tmp_path / "bad.json")


def test_shipped_default_stream_covers_every_adaptation_class_once():
    from fif.data.mini.worlds import DATASETS

    entries = read_stream(resolve_stream("mini_random_1"))
    expected = {(d.folder, c) for d in DATASETS if d.role == "adaptation" for c in d.classnames}
    assert len(entries) == len(expected) == len(set(entries))
    assert set(entries) == expected
    assert "mini_dataset_incremental" in shipped_streams()


def test_unknown_stream_name_is_a_clear_error():
    with pytest.raises(FifError, match="no_such_stream"):
        resolve_stream("no_such_stream")
