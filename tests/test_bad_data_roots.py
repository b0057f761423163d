"""Bad input, data roots and images: a missing root, dataset folder, tar or info file, a backbone
checkpoint that is not there, a bad loader setting on a FiF root, a corrupt image in a tar. Each is
one line naming the path (or key) through ``fif run``; a refusal that can come before the run folder
does, and leaves nothing behind.

tests/test_fif_root.py checks the reader on these cases and tests/test_corrupt.py corrupt images of
the mini benchmark's folders; here they go through the entry point over a generated FiF root
(tests/fif_root_factory.py).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from bad_input_helpers import SHORT_RUN, nothing_left, one_line_error
from fif_root_factory import make_fif_root, stream_entries

GTSRB_KEY = "gtsrb/GTSRB/Final_Test/Images/00001_00002.png"  # a test image of an evaluation-only dataset
# One task of one step of 32 over the generated root, no pool.
FIF_RUN = ("experiment.backbone.name=mini_clip", "experiment.task.num=1", "experiment.task.n_samples=32",
           "experiment.task.batch_size=32", "experiment.dataset.data_mixture.pretraining=0",
           "experiment.dataset.data_mixture.update=0.5", "experiment.dataset.data_mixture.buffer=0.5",
           "log.progress=false")


def _argv(root: Path, runs: Path, *overrides: str) -> list[str]:
    stream = root.parent / "stream.json"
    stream.write_text(json.dumps(stream_entries()))
    return ["run", *FIF_RUN, f"experiment.dataset.root={root}", f"experiment.dataset.sequence={stream}",
            f"log.folder={runs}", "log.name=r", *overrides]


@pytest.fixture()
def root(tmp_path) -> Path:
    return make_fif_root(tmp_path / "root", layout="both").root


def test_a_missing_root_is_named(capsys, tmp_path, root):
    runs = tmp_path / "runs"
    one_line_error(capsys, _argv(tmp_path / "nowhere", runs),
                   f"^error: experiment.dataset.root={re.escape(str(tmp_path / 'nowhere'))} does not exist")
    nothing_left(runs)


@pytest.mark.parametrize("layout, gone, message", [
    ("folder", "CUB200", "dataset folder {root}/CUB200 does not exist \\(dataset 'cub200'\\)"),
    ("tar", "CUB200.tar", "tar file {root}/CUB200.tar does not exist \\(dataset 'cub200'"),
    ("folder", "00_info/GTSRB_test.json",
     "info file {root}/00_info/GTSRB_test.json does not exist \\(dataset 'gtsrb', split 'test'\\)"),
])
def test_a_missing_dataset_part_is_named_before_anything_is_written(capsys, tmp_path, root, layout, gone, message):
    runs = tmp_path / "runs"
    target = root / gone
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    one_line_error(capsys, _argv(root, runs, f"experiment.dataset.tar={layout == 'tar'}"),
                   "^error: " + message.format(root=re.escape(str(root))))
    nothing_left(runs)


def test_num_workers_below_zero_on_a_fif_root_leaves_nothing(capsys, tmp_path, root):
    """Before: the check came from torch's DataLoader at the zero-shot evaluation, after config.yaml
    and events.jsonl were written."""
    runs = tmp_path / "runs"
    one_line_error(capsys, _argv(root, runs, "experiment.dataset.num_workers=-1"),
                   "^error: experiment.dataset.num_workers=-1 is not valid: expected a whole number >= 0$")
    nothing_left(runs)


@pytest.mark.parametrize("name", ["mini_clip", "openclip_vit_b32"])
def test_a_missing_backbone_checkpoint_is_refused_for_every_backbone(capsys, tmp_path, name):
    runs = tmp_path / "runs"
    missing = tmp_path / "no" / "such.pt"
    one_line_error(capsys, ["run", *SHORT_RUN, f"log.folder={runs}", f"experiment.backbone.name={name}",
                            f"experiment.backbone.checkpoint={missing}"],
                   f"^error: experiment.backbone.checkpoint={re.escape(str(missing))} does not exist \\(expected a "
                   f"weights file \\(.pt/.bin/.safetensors, a run's final_model.pt\\) or an open_clip local-dir "
                   f"folder\\)$")
    nothing_left(runs)


def test_a_weights_file_that_random_weights_would_ignore_is_refused(capsys, tmp_path):
    runs = tmp_path / "runs"
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    one_line_error(capsys, ["run", *SHORT_RUN, f"log.folder={runs}", f"experiment.backbone.checkpoint={weights}",
                            "experiment.backbone.pretrained=false"],
                   f"^error: experiment.backbone.checkpoint={re.escape(str(weights))} is a weights file, but "
                   f"experiment.backbone.pretrained=false builds random weights and would ignore it")
    nothing_left(runs)


@pytest.fixture()
def corrupt_tar_root(tmp_path) -> tuple[Path, str]:
    """A tar-only root whose GTSRB test image GTSRB_KEY is cut in half; (root, how errors name it)."""
    root = make_fif_root(tmp_path / "root", layout="tar", truncate=[("GTSRB", GTSRB_KEY)]).root
    return root, f"{root}/GTSRB.tar: GTSRB/{GTSRB_KEY}"


def test_a_corrupt_test_image_in_a_tar_is_one_line_naming_archive_and_member(capsys, tmp_path, corrupt_tar_root):
    root, where = corrupt_tar_root
    one_line_error(capsys, _argv(root, tmp_path / "runs", "experiment.dataset.tar=true"),
                   f"^error: image {re.escape(where)} is corrupt or unreadable \\(OSError: image file is truncated\\)$")
    nothing_left(tmp_path / "runs")  # preloaded (the mini experiment's preload=true): read while the run builds


def test_with_skip_corrupt_it_is_left_out_and_counted(capsys, tmp_path, corrupt_tar_root):
    from fif.cli import main

    root, where = corrupt_tar_root
    assert main(_argv(root, tmp_path / "runs", "experiment.dataset.tar=true", "experiment.dataset.skip_corrupt=true")) == 0
    results = json.loads((tmp_path / "runs" / "r" / "results.json").read_text())
    assert results["status"] == "complete"
    assert results["skipped_corrupt_files"] == {where: results["skipped_corrupt"]} and results["skipped_corrupt"] >= 1
