import hashlib
import json
import random

import webdataset as wds
from PIL import Image

from fif.data.format.fif_format import load_registry, read_split
from fif.data.mini.build import _sample_rng
from fif.data.mini.worlds import DATASETS, HELDOUT_COMBOS, pool_sample

INFO_FIELDS = {"classname", "default_caption", "primer_caption", "synthetic_caption", "synthetic_merged_caption", "target"}


def test_benchmark_has_the_required_kinds_of_datasets(mini_root):
    registry = load_registry(mini_root / "datasets.json")
    roles = [s.role for s in registry.values()]
    assert roles.count("adaptation") >= 8
    assert roles.count("evaluation") >= 4
    assert any(s.kind == "retrieval" for s in registry.values())


def test_info_files_follow_the_reference_format(mini_root, reference_dir):
    reference = json.loads((reference_dir / "info_samples" / "MONKEYS10_test.json").read_text())
    assert set(next(iter(reference.values()))) == INFO_FIELDS
    for dataset in DATASETS:
        for split in ("train", "test"):
            path = mini_root / "00_info" / f"{dataset.folder}_{split}.json"
            if split == "train" and dataset.train_per_class == 0:
                assert not path.exists()
                continue
            info = json.loads(path.read_text())
            assert len(info) == len(dataset.classnames) * (dataset.train_per_class if split == "train" else dataset.test_per_class)
            key, entry = next(iter(info.items()))
            assert set(entry) == INFO_FIELDS
            assert (mini_root / dataset.folder / key).is_file()


def test_every_sample_has_an_image_a_class_and_a_richer_caption(mini_root):
    registry = load_registry(mini_root / "datasets.json")
    for spec in registry.values():
        split = read_split(mini_root, spec, "test")
        with Image.open(split.where(0)) as image:
            assert image.size == (32, 32) and image.mode == "RGB"
        for index in range(0, len(split), 37):
            for caption in split.captions[index]:
                if spec.kind == "classification":
                    classname = split.classnames[split.targets[index]]
                    assert classname in caption and len(caption) > len(classname) + 10
                else:
                    assert len(caption.split()) >= 6


def test_generation_is_deterministic_from_the_seed():
    for dataset in DATASETS:
        a, caps_a = dataset.draw(_sample_rng(0, dataset.folder, "test", 0, 3), 0, "test", 3)
        b, caps_b = dataset.draw(_sample_rng(0, dataset.folder, "test", 0, 3), 0, "test", 3)
        c, _ = dataset.draw(_sample_rng(1, dataset.folder, "test", 0, 3), 0, "test", 3)
        assert a.tobytes() == b.tobytes() and caps_a == caps_b
        if dataset.folder != "DIGITS":  # digits are real scans: only colour and offset vary
            assert a.tobytes() != c.tobytes()


def test_pool_shards_are_real_tars_and_never_show_held_out_pairs(mini_root):
    shards = sorted((mini_root / "pool").glob("*.tar"))
    assert len(shards) >= 4
    captions = [caption for _, caption in wds.WebDataset(str(shards[0]), shardshuffle=False, empty_check=False)
                .decode("pil").to_tuple("png", "txt")]
    assert len(captions) == 5000
    for colour, shape in HELDOUT_COMBOS:
        assert not any(f"{colour} {shape}" in c for c in captions)
    digest = hashlib.sha256(shards[0].read_bytes()).hexdigest()
    image, caption = pool_sample(random.Random("0/pool/0/0"))
    assert caption == captions[0]
    assert digest  # shard content is stable for a seed (pure function of seed and shard index)
