"""The reader for the reference on-disk layout: folders and tars, the 224-px variants, errors,
``fif data verify`` and full runs over a generated miniature FiF root."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from conftest import read_results, run_cli
from fif_root_factory import make_fif_root, stream_entries
from fif.data.format.fif_format import DatasetSpec, load_registry, read_split
from fif.data.format.packed import PackedCaptions, PackedStrings
from fif.data.format.storage import TarStore, _scan_fast, _scan_tarfile, build_tar_index
from fif.errors import CorruptSampleError, FifError

MONKEY_KEY = "monkeys10/training/training/n1/n103.jpg"


@pytest.fixture(scope="module")
def fif_root(tmp_path_factory):
    return make_fif_root(tmp_path_factory.mktemp("fif_root"), layout="both")


def _splits(fif_root, **layout):
    registry = load_registry(fif_root.registry)
    return {(name, split): read_split(fif_root.root, spec, split, **layout)
            for name, spec in registry.items() for split in spec.splits}


@pytest.mark.parametrize("resized", [False, True])
def test_folder_and_tar_give_identical_splits_and_images(fif_root, resized):
    folders, tars = _splits(fif_root, resized=resized), _splits(fif_root, tar=True, resized=resized)
    assert sorted(folders) == sorted(tars) and len(folders) == 6
    for key, split in folders.items():
        other = tars[key]
        assert list(split.keys) == list(other.keys) and len(split) > 0
        assert np.array_equal(split.targets, other.targets)
        assert split.classnames == other.classnames and list(split.captions) == list(other.captions)
        assert isinstance(other.store, TarStore)
        for index in range(len(split)):
            a, b = split.image(index), other.image(index)
            assert a.mode == b.mode == "RGB" and a.size == b.size and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_fast_tar_index_matches_tarfile(tmp_path, fmt):
    path = tmp_path / "SET.tar"
    names = ["SET/a.jpg", "./SET/dir/b.png", "SET/" + "deep/" * 22 + "c.jpg", "SET/ünïcode/é.png", "SET/a.jpg"]
    with tarfile.open(path, "w", format=fmt) as archive:
        folder = tarfile.TarInfo("SET/dir")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
        for position, name in enumerate(names):
            data = bytes([position]) * (700 + 300 * position)
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    assert list(_scan_fast(path)) == list(_scan_tarfile(path))
    store = TarStore(path, "SET", build_tar_index(path, "SET"))
    assert store.read_bytes("a.jpg") == bytes([4]) * 1900  # a later duplicate member wins, as in tar
    assert store.read_bytes("dir/b.png") == bytes([1]) * 1000
    assert store.read_bytes("deep/" * 22 + "c.jpg") == bytes([2]) * 1300
    assert store.read_bytes("ünïcode/é.png") == bytes([3]) * 1600
    assert "missing.jpg" not in store and "a.jpg" in store
    with pytest.raises(CorruptSampleError, match=r"SET\.tar: SET/missing\.jpg is not in the tar file"):
        store.read_bytes("missing.jpg")


def test_compressed_or_garbage_tar_is_a_one_line_error(tmp_path):
    packed = tmp_path / "GZ.tar"
    packed.write_bytes(gzip.compress(b"x" * 2000))
    with pytest.raises(FifError, match=r"GZ\.tar is compressed"):
        build_tar_index(packed, "GZ")
    garbage = tmp_path / "BAD.tar"
    garbage.write_bytes(b"this is not a tar file at all " * 40)
    with pytest.raises(FifError, match=r"BAD\.tar is not a readable tar"):
        build_tar_index(garbage, "BAD")


@pytest.mark.parametrize("tar", [False, True])
def test_truncated_jpeg_is_a_corrupt_sample_naming_file_and_member(tmp_path, tar):
    root = make_fif_root(tmp_path, truncate=[("MONKEYS10", MONKEY_KEY)])
    split = read_split(root.root, load_registry(root.registry)["monkeys10"], "train", tar=tar)
    index = list(split.keys).index(MONKEY_KEY)
    with pytest.raises(CorruptSampleError) as caught:
        split.image(index)
    expected = f"{root.root}/MONKEYS10.tar: MONKEYS10/{MONKEY_KEY}" if tar else f"{root.root}/MONKEYS10/{MONKEY_KEY}"
    message = str(caught.value)
    assert expected in message and "truncated" in message and "\n" not in message
    assert caught.value.path == expected
    split.image(index + 1)  # its neighbours still read


def test_bad_entries_and_missing_parts_are_one_line_errors(tmp_path):
    root = make_fif_root(tmp_path, layout="folder")
    spec = load_registry(root.registry)["monkeys10"]
    info_path = root.info_dir / "MONKEYS10_train.json"
    info = json.loads(info_path.read_text())
    info[MONKEY_KEY]["synthetic_merged_caption"] = None
    info[MONKEY_KEY]["primer_caption"] = None
    info_path.write_text(json.dumps(info))
    with pytest.raises(CorruptSampleError, match=rf"^{info_path}: {MONKEY_KEY}: no caption"):
        read_split(root.root, spec, "train")
    problems: list[str] = []
    split = read_split(root.root, spec, "train", problems=problems)
    assert len(split) == 23 and problems == [f"{info_path}: {MONKEY_KEY}: no caption (default_caption, "
                                             f"synthetic_merged_caption and primer_caption are all empty)"]
    info[MONKEY_KEY]["target"] = "one"
    info_path.write_text(json.dumps(info))
    with pytest.raises(CorruptSampleError, match=rf"{MONKEY_KEY}: 'target' is 'one', expected an integer"):
        read_split(root.root, spec, "train")
    with pytest.raises(FifError, match=rf"tar file {root.root}/MONKEYS10.tar does not exist \(dataset 'monkeys10'"):
        read_split(root.root, spec, "test", tar=True)
    (root.info_dir / "MONKEYS10_test.json").unlink()
    with pytest.raises(FifError, match=r"info file .*MONKEYS10_test.json does not exist"):
        read_split(root.root, spec, "test")
    with pytest.raises(FifError, match=r"dataset folder .*NOPE does not exist"):
        read_split(root.root, DatasetSpec("nope", "NOPE", "classification", "adaptation", "{}"), "test")


@pytest.mark.parametrize("name, kind, classes, captions", [("MONKEYS10", "classification", 10, 1),
                                                          ("FLICKR30K", "retrieval", 0, 5),
                                                          ("FSCOCO", "retrieval", 115, 1)])
def test_reader_parses_the_real_info_samples(reference_dir, tmp_path, name, kind, classes, captions):
    (tmp_path / name).mkdir()
    info_dir = reference_dir / "info_samples"
    split = read_split(tmp_path, DatasetSpec(name.lower(), name, kind, "evaluation", "{}"), "test", info_dir)
    raw = json.loads((info_dir / f"{name}_test.json").read_text())
    assert list(split.keys) == list(raw) and len(split) == len(raw)
    assert split.targets.tolist() == [e["target"] for e in raw.values()]
    assert len(split.classnames) == classes
    if classes:
        listed = json.loads((reference_dir / "classnames" / f"{name}_classnames.json").read_text())
        named = {e["target"] for e in raw.values()}
        assert all(split.classnames[t] == listed[t] for t in named)  # class names come from the data
    for entry, got in zip(raw.values(), split.captions):
        assert len(got) == captions
        default = entry["default_caption"]
        expected = entry["synthetic_merged_caption"] if default is None else ([default] if isinstance(default, str) else default)
        assert got == expected
    assert split.where(0) == f"{tmp_path}/{name}/{next(iter(raw))}"


@pytest.mark.parametrize("tar", [False, True])
def test_resized_variant_reads_the_224_files_where_they_exist(fif_root, tar):
    registry = load_registry(fif_root.registry)
    monkeys = read_split(fif_root.root, registry["monkeys10"], "test", tar=tar, resized=True)
    assert monkeys.info_path.name == "MONKEYS10_test_224.json"
    assert all(key.startswith("MONKEYS10_test_224/monkeys10/validation/validation/") for key in monkeys.keys)
    plain = read_split(fif_root.root, registry["monkeys10"], "test", tar=tar)
    assert [k.split("/", 1)[1] for k in monkeys.keys] == list(plain.keys)
    assert list(monkeys.captions) == list(plain.captions) and np.array_equal(monkeys.targets, plain.targets)
    for index in range(len(monkeys)):
        assert min(monkeys.image(index).size) == 224 and max(plain.image(index).size) < 64
    flickr = read_split(fif_root.root, registry["flickr30k"], "test", tar=tar, resized=True)
    assert flickr.info_path.name == "FLICKR30K_test_224.json" and min(flickr.image(3).size) == 224
    cub = read_split(fif_root.root, registry["cub200"], "train", tar=tar, resized=True)  # no variant: originals
    assert cub.info_path.name == "CUB200_train.json" and max(cub.image(0).size) < 64


def test_resized_variant_needs_its_folder_in_folder_layout(tmp_path):
    root = make_fif_root(tmp_path, layout="folder")
    (root.root / "MONKEYS10" / "MONKEYS10_test_224").rename(root.root / "moved_away")
    split = read_split(root.root, load_registry(root.registry)["monkeys10"], "test", resized=True)
    assert split.info_path.name == "MONKEYS10_test.json" and max(split.image(0).size) < 64


def test_packed_strings_and_captions_round_trip():
    strings = ["", "a", "ünïcode ✓", "x" * 1000, "tail"]
    packed = PackedStrings(strings)
    assert list(packed) == strings and len(packed) == 5 and packed[-1] == "tail" and packed[1:3] == strings[1:3]
    with pytest.raises(IndexError):
        packed[5]
    groups = [["one"], ["a", "b", "c", "d", "e"], ["é"]]
    captions = PackedCaptions(groups)
    assert list(captions) == groups and captions[1] == groups[1] and captions[-1] == ["é"]
    assert PackedCaptions.from_flat(["one", "a", "b", "c", "d", "e", "é"], [1, 5, 1])[1] == groups[1]


def _problem_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("problem: ")]


@pytest.mark.parametrize("tar", [False, True])
def test_verify_clean_root_exits_0_with_counts(fif_root, tar):
    result = run_cli("data", "verify", str(fif_root.root), "--workers", "2" if tar else "0", "--no-progress",
                     *(["--tar"] if tar else []))
    assert result.returncode == 0, result.stdout + result.stderr
    assert _problem_lines(result.stdout) == []
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:6]}
    assert rows["monkeys10"][3:8] == ["24", "12", "3", "0", "0"] and rows["monkeys10"][-1] == "complete"
    assert rows["gtsrb"][3:5] == ["-", "10"] and rows["flickr30k"][4] == "8"
    assert ("4 datasets: 4 complete, 0 corrupt, 0 missing, 0 absent (not in benchmark); 78 images checked, "
            "0 unreadable; 0 bad info entries; 0 problems") in result.stdout


def _truncated(tmp_path: Path, tar: bool):
    make_fif_root(tmp_path, layout="tar" if tar else "folder", truncate=[("MONKEYS10", MONKEY_KEY)])
    return f"{tmp_path}/MONKEYS10.tar: MONKEYS10/{MONKEY_KEY}" if tar else f"{tmp_path}/MONKEYS10/{MONKEY_KEY}"


def _no_caption(tmp_path: Path, tar: bool):
    root = make_fif_root(tmp_path, layout="folder")
    info = root.info("GTSRB", "test")
    key = next(iter(info))
    info[key].update(default_caption=None, synthetic_merged_caption=[], primer_caption=None)
    (root.info_dir / "GTSRB_test.json").write_text(json.dumps(info))
    return f"{root.info_dir}/GTSRB_test.json: {key}: no caption"


def _no_folder(tmp_path: Path, tar: bool):
    make_fif_root(tmp_path, layout="folder")
    shutil.rmtree(tmp_path / "CUB200")
    return f"dataset folder {tmp_path}/CUB200 does not exist (dataset 'cub200')"


def _wrong_classname(tmp_path: Path, tar: bool):
    root = make_fif_root(tmp_path, layout="folder")
    (root.info_dir / "MONKEYS10_classnames.json").write_text(json.dumps(["mantled howler", "patas", "bald uakari"]))
    return (f"{root.info_dir}/MONKEYS10_train.json: target 1 is 'patas monkey' but "
            f"{root.info_dir}/MONKEYS10_classnames.json has 'patas'")


@pytest.mark.parametrize("break_root, tar, status", [(_truncated, False, "corrupt"), (_truncated, True, "corrupt"),
                                                     (_no_caption, False, "corrupt"), (_no_folder, False, "missing"),
                                                     (_wrong_classname, False, "corrupt")])
def test_verify_reports_one_line_per_problem_and_exits_1(tmp_path, break_root, tar, status):
    expected = break_root(tmp_path, tar)
    result = run_cli("data", "verify", str(tmp_path), "--workers", "0", "--no-progress", *(["--tar"] if tar else []))
    assert result.returncode == 1, result.stdout + result.stderr
    problems = _problem_lines(result.stdout)
    assert len(problems) == 1 and expected in problems[0], result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert f"1 {status}" in result.stdout.splitlines()[-1]


def test_verify_bad_usage_exits_2(tmp_path):
    result = run_cli("data", "verify", str(tmp_path / "nowhere"), "--workers", "0")
    assert result.returncode == 2 and result.stderr.strip() == f"error: data root {tmp_path / 'nowhere'} does not exist"


def _run(root: Path, runs: Path, name: str, *overrides: str) -> dict:
    from fif.config import compose
    from fif.train.run import run_experiment

    stream = root / "stream.json"
    stream.write_text(json.dumps(stream_entries()))
    cfg = compose([f"experiment.dataset.root={root}", f"experiment.dataset.sequence={stream}",
                   "experiment.backbone.name=mini_clip", "experiment.task.num=2", "experiment.task.n_samples=64",
                   "experiment.task.batch_size=32", "experiment.dataset.data_mixture.pretraining=0",
                   "experiment.dataset.data_mixture.update=0.5", "experiment.dataset.data_mixture.buffer=0.5",
                   f"log.folder={runs}", f"log.name={name}", "log.progress=false", *overrides])
    run_experiment(cfg, echo=lambda *_: None)
    return read_results(runs / name)


def test_fif_run_over_the_generated_root_in_folder_and_tar_layouts(tmp_path):
    root = make_fif_root(tmp_path / "root", layout="both").root
    folder = _run(root, tmp_path / "runs", "folder", "experiment.dataset.preload=true")
    tar = _run(root, tmp_path / "runs", "tar", "experiment.dataset.tar=true", "experiment.dataset.preload=false",
               "experiment.dataset.preload_test_only=true")
    workers = _run(root, tmp_path / "runs", "workers", "experiment.dataset.tar=true", "experiment.dataset.preload=false",
                   "experiment.dataset.num_workers=2")
    for results in (folder, tar, workers):
        assert results["status"] == "complete" and len(results["tasks"]) == 2
        assert set(results["final"]["per_dataset"]) == {"monkeys10", "cub200", "gtsrb", "flickr30k"}
        assert results["tasks"][-1]["samples_seen"] == 2 * 2 * 32
    assert tar["config"]["experiment"]["dataset"]["tar"] is True
    for key in ("zero_shot", "final"):  # same images, same batches: the layout changes nothing
        assert tar[key]["per_dataset"] == pytest.approx(folder[key]["per_dataset"])
        assert workers[key]["per_dataset"] == pytest.approx(folder[key]["per_dataset"])


def test_tools_read_a_tar_only_root(tmp_path):
    """Streaming by dataset name, `data show` and `streams build` work where only ROOT/<FOLDER>.tar exists."""
    from fif.data.format.registry import resolve_registry
    from fif.data.format.streams import dataset_stream

    root = make_fif_root(tmp_path / "root", layout="tar").root
    registry = resolve_registry(None, root)
    expected = [tuple(e.split("+++")) for e in stream_entries() if e.startswith("MONKEYS10+++")]
    assert dataset_stream(["MONKEYS10"], root, registry, tar=True) == expected
    with pytest.raises(FifError, match="does not exist"):
        dataset_stream(["MONKEYS10"], root, registry, tar=False)
    png = tmp_path / "sheet.png"
    shown = run_cli("data", "show", "MONKEYS10", "--root", str(root), "--tar", "--n", "4", "--out", str(png))
    assert shown.returncode == 0, shown.stderr
    assert png.stat().st_size > 1000
    out = tmp_path / "stream.json"
    built = run_cli("streams", "build", "--root", str(root), "--tar", "--order", "random", "--out", str(out))
    assert built.returncode == 0, built.stderr
    adaptation = {tuple(e.split("+++")) for e in stream_entries()}
    assert {tuple(e.split("+++")) for e in json.loads(out.read_text())} == adaptation
