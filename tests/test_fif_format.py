import json
import shutil

import pytest

from fif.data.format.fif_format import DatasetSpec, load_registry, read_split
from fif.data.format.images import load_rgb
from fif.errors import FifError


def test_reference_registry_loads(reference_dir):
    registry = load_registry(reference_dir / "datasets.json")
    roles = [s.role for s in registry.values()]
    assert roles.count("adaptation") == 41 and roles.count("evaluation") == 22


@pytest.mark.parametrize("name, kind, classes", [("MONKEYS10", "classification", 10),
                                                  ("FLICKR30K", "retrieval", 0)])
def test_reference_info_files_read(reference_dir, tmp_path, name, kind, classes):
    (tmp_path / name).mkdir()
    info_dir = tmp_path / "info"
    info_dir.mkdir()
    shutil.copy(reference_dir / "info_samples" / f"{name}_test.json", info_dir / f"{name}_test.json")
    split = read_split(tmp_path, DatasetSpec(name.lower(), name, kind, "adaptation", "A photo of a {}."), "test", info_dir)
    raw = json.loads((info_dir / f"{name}_test.json").read_text())
    assert len(split) == len(raw)
    assert len(split.classnames) == classes
    if kind == "retrieval":
        assert all(len(c) == 5 for c in split.captions)  # FLICKR30K: five default captions
    else:
        assert split.captions[0] == next(iter(raw.values()))["synthetic_merged_caption"]
        assert "mantled howler" in split.classnames


def test_missing_folder_and_info_file_are_clear_errors(tmp_path):
    spec = DatasetSpec("x", "XSET", "classification", "adaptation", "{}")
    with pytest.raises(FifError, match="XSET"):
        read_split(tmp_path, spec, "test")
    (tmp_path / "XSET").mkdir()
    with pytest.raises(FifError, match="XSET_test.json"):
        read_split(tmp_path, spec, "test")


def test_corrupt_image_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(FifError, match="broken.png"):
        load_rgb(bad)
