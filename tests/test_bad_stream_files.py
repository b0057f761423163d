"""Bad input, stream files: through ``fif run``, every broken stream file is one line naming the file
(and the entry), and the run writes nothing.

tests/test_streams.py and tests/test_reference_streams.py check the parser and the registry check on
their own; here each case goes through the entry point over the mini benchmark.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from bad_input_helpers import SHORT_RUN, nothing_left, one_line_error
from fif.data.format.streams import read_stream, resolve_stream

pytestmark = pytest.mark.usefixtures("mini_root")  # the mini benchmark, built once per session
EXPECTED = 'expected a JSON list of "FOLDER\\+\\+\\+classname" strings'


@pytest.fixture(scope="module")
def mini_stream() -> list[str]:
    return [f"{d}+++{c}" for d, c in read_stream(resolve_stream("mini_random_1"))]


def _refused(capsys, tmp_path: Path, stream: Path, pattern: str) -> str:
    runs = tmp_path / "runs"
    line = one_line_error(capsys, ["run", *SHORT_RUN, f"log.folder={runs}", f"experiment.dataset.sequence={stream}"],
                          pattern)
    nothing_left(runs)
    return line


@pytest.mark.parametrize("name, content, message", [
    ("cut.json", b'["GLYPHS+++g", "COUNT', "is not JSON \\(Unterminated string starting at: line 1 column 16 "
                                            "\\(char 15\\)\\): " + EXPECTED),
    ("latin1.json", '["GLYPHS+++é"]'.encode("latin-1"), "is not JSON \\('utf-8' codec can't decode byte 0xe9"),
    ("dict.json", b'{"stream": ["GLYPHS+++g"]}', "holds a JSON dict: " + EXPECTED),
    ("empty.json", b"[]", "is an empty list: " + EXPECTED + " \\(at least one\\)"),
    ("cut.json.gz", gzip.compress(b'["GLYPHS+++g"]')[:12], "could not be read \\(EOFError: Compressed file ended"),
])
def test_a_stream_file_that_is_not_a_list_of_entries_is_named(capsys, tmp_path, name, content, message):
    stream = tmp_path / name
    stream.write_bytes(content)
    _refused(capsys, tmp_path, stream, f"^error: stream file {re.escape(str(stream))} {message}")


def test_an_entry_without_the_separator_is_named_with_its_position(capsys, tmp_path, mini_stream):
    stream = tmp_path / "s.json"
    stream.write_text(json.dumps([*mini_stream[:3], "GLYPHS/g", *mini_stream[3:]]))
    _refused(capsys, tmp_path, stream,
             f"^error: stream file {re.escape(str(stream))}, entry 3: 'GLYPHS/g' is not \"FOLDER\\+\\+\\+classname\"$")


def test_an_unknown_dataset_is_named_with_the_known_ones(capsys, tmp_path, mini_stream):
    stream = tmp_path / "s.json"
    stream.write_text(json.dumps([*mini_stream[:5], "NOSUCH+++x"]))
    _refused(capsys, tmp_path, stream,
             f"^error: stream {re.escape(str(stream))}, entry 5 \\(NOSUCH\\+\\+\\+x\\): dataset 'NOSUCH' is not in "
             f"the dataset registry \\(known folders: CAPTIONS, .*SWATCHES, TEXTURES\\)$")


def test_a_class_absent_from_its_dataset_is_named(capsys, tmp_path, mini_stream):
    stream = tmp_path / "s.json"
    stream.write_text(json.dumps([*mini_stream[:7], "SWATCHES+++ultraviolet"]))
    _refused(capsys, tmp_path, stream,
             f"^error: stream {re.escape(str(stream))}, entry 7 \\(SWATCHES\\+\\+\\+ultraviolet\\): class "
             f"'ultraviolet' does not exist in SWATCHES's train split \\(e.g. ")


def test_more_tasks_than_the_stream_has_classes(capsys, tmp_path, mini_stream):
    stream = tmp_path / "s.json"
    stream.write_text(json.dumps(mini_stream[:1]))
    _refused(capsys, tmp_path, stream, "^error: experiment.task.num=2 exceeds the stream's 1 classes$")


def test_a_missing_stream_file_lists_the_shipped_streams(capsys, tmp_path):
    _refused(capsys, tmp_path, tmp_path / "nowhere.json",
             f"^error: experiment.dataset.sequence='{re.escape(str(tmp_path / 'nowhere.json'))}' is neither a file "
             f"nor a shipped stream \\(shipped: mini_dataset_incremental, mini_random_1, ")
