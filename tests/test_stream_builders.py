"""Deployment orderings built from the mini benchmark with the shipped mini CLIP, checked by numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fif.data.format.fif_format import read_split
from fif.data.format.registry import resolve_registry
from fif.tools.stream_builders import (ORDERS, build_stream, class_accuracies, mean_adjacent_similarity,
                                      name_embeddings, similarity_order)
from fif.data.format.streams import read_stream, write_stream
from fif.errors import FifError
from fif.eval.zero_shot import class_embeddings, top1_accuracy
from fif.models.backbone import build_backbone


@pytest.fixture(scope="module")
def registry(mini_root):
    return resolve_registry(None, mini_root)


@pytest.fixture(scope="module")
def all_classes(mini_root, registry):
    """Every adaptation class that has training samples, read straight from the info files."""
    classes = set()
    for spec in registry.values():
        if spec.role == "adaptation":
            split = read_split(mini_root, spec, "train")
            classes |= {(spec.folder, split.classnames[t]) for t in set(split.targets)}
    return classes


@pytest.fixture(scope="module")
def built(mini_root, registry):
    from fif.data.mini.build import pool_shards

    return {order: build_stream(order, mini_root, registry, seed=0, max_per_class=8, progress=False,
                                pool=pool_shards(mini_root, 4), source="mini_random_1" if order == "reversed" else None)
            for order in ORDERS}


def test_every_ordering_is_a_permutation_of_all_adaptation_classes(built, all_classes):
    assert len(all_classes) == 100 and len(ORDERS) == 9
    for order, stream in built.items():
        assert len(stream.entries) == len(set(stream.entries)) == 100, order
        assert set(stream.entries) == all_classes, order
    # the mini pool's captions never name an adaptation class, so frequency is all ties: the seeded random order
    assert built["frequency"].entries == built["random"].entries
    assert len({tuple(s.entries) for s in built.values()}) == len(ORDERS) - 1  # the other eight all differ


def test_performance_orders_are_monotone_in_measured_accuracy(built):
    easy, hard = built["performance_easy_to_hard"], built["performance_hard_to_easy"]
    accuracy = [easy.scores[f"{d}+++{c}"]["accuracy"] for d, c in easy.entries]
    assert all(a >= b for a, b in zip(accuracy, accuracy[1:]))
    assert accuracy[0] > accuracy[-1]  # the base model finds some classes far easier than others
    assert all(a * 8 / 100 == pytest.approx(round(a * 8 / 100)) for a in accuracy)  # k of 8 probe images
    assert hard.entries == easy.entries[::-1]
    print(f"\nmini CLIP zero-shot per-class accuracy on 8 train images: easiest {accuracy[0]:.1f}, "
          f"hardest {accuracy[-1]:.1f}, mean {easy.summary['mean_class_accuracy']:.2f}")


def test_per_class_accuracies_agree_with_the_evaluation_top1(mini_root, registry):
    """Class-weighted per-class accuracy = plain zero-shot top-1 on the same images (fif.eval pieces)."""
    backbone = build_backbone("mini_clip")
    split = read_split(mini_root, registry["swatches"], "train")
    scores = class_accuracies(backbone, [split], max_per_class=1000, seed=0, device=torch.device("cpu"),
                              progress=False)
    model = backbone.model.eval()
    with torch.no_grad():
        images = torch.stack([backbone.eval_transform(split.image(i)) for i in range(len(split))])
        features = torch.nn.functional.normalize(model.encode_image(images), dim=-1)
        text = class_embeddings(model, backbone.tokenizer, split.classnames, [split.spec.primer], torch.device("cpu"))
    overall = top1_accuracy(features, text, torch.tensor(split.targets))
    counts = np.bincount(split.targets)
    weighted = sum(scores[("SWATCHES", c)][0] * counts[t] for t, c in enumerate(split.classnames)) / counts.sum()
    assert weighted == pytest.approx(overall, abs=1e-3)


def test_similarity_puts_related_names_closer_than_random(built, mini_root, registry):
    stream = built["similarity"]
    backbone = build_backbone("mini_clip")
    emb = name_embeddings(backbone.model, backbone.tokenizer, [c for _, c in stream.entries], "{}",
                          torch.device("cpu"))
    ours = mean_adjacent_similarity(emb)
    rng = np.random.RandomState(1)
    randoms = [mean_adjacent_similarity(emb[torch.from_numpy(rng.permutation(len(emb)))]) for _ in range(50)]
    print(f"\nmean adjacent cosine: similarity order {ours:.4f}, random orders {np.mean(randoms):.4f} "
          f"(max {np.max(randoms):.4f})")
    assert ours == pytest.approx(stream.summary["mean_adjacent_similarity"], abs=1e-5)
    assert ours > max(randoms) + 0.02
    names = [c for _, c in stream.entries]
    for word in ("one", "two", "three", "four", "five", "six"):  # in COUNTING and in DIGITS: neighbours
        first = names.index(word)
        assert names[first + 1] == word, word


def test_similarity_chains_keep_separated_concept_groups_contiguous():
    rng = np.random.RandomState(0)
    centres = torch.eye(4, 16) * 5
    points = torch.cat([centres[g] + 0.3 * torch.from_numpy(rng.randn(6, 16)).float() for g in range(4)])
    order = similarity_order(points, seed=0)
    groups = [i // 6 for i in order]
    assert sorted(order) == list(range(24))
    assert sum(a != b for a, b in zip(groups, groups[1:])) == 3  # each group visited once, in one run


def test_dataset_incremental_keeps_each_dataset_contiguous(built, mini_root, registry):
    folders = [d for d, _ in built["dataset_incremental"].entries]
    assert sum(a != b for a, b in zip(folders, folders[1:])) == 7  # 8 datasets, 8 blocks
    given = build_stream("dataset_incremental", mini_root, registry, datasets=["scenes", "GLYPHS"])
    assert list(dict.fromkeys(d for d, _ in given.entries)) == ["SCENES", "GLYPHS"]
    glyphs = read_split(mini_root, registry["glyphs"], "train").classnames
    assert [c for d, c in given.entries if d == "GLYPHS"] == glyphs  # dataset (target) order inside


def test_same_seed_gives_the_same_file_and_another_seed_another(mini_root, registry, tmp_path, in_process):
    paths = [tmp_path / f"random_{k}.json" for k in range(3)]
    for path, seed in zip(paths, (0, 0, 1)):
        result = in_process("streams", "build", "--root", str(mini_root), "--order", "random", "--out", str(path),
                         "--seed", str(seed))
        assert result.returncode == 0, result.stderr
    assert paths[0].read_bytes() == paths[1].read_bytes() != paths[2].read_bytes()
    assert len(read_stream(paths[0])) == 100 and len(json.loads(paths[0].read_text())) == 100
    for order in ("similarity", "performance_easy_to_hard"):
        files = []
        for k in range(2):
            write_stream(tmp_path / f"{order}_{k}.json",
                         build_stream(order, mini_root, registry, seed=5, max_per_class=4, progress=False).entries)
            files.append((tmp_path / f"{order}_{k}.json").read_bytes())
        assert files[0] == files[1], order


def test_cli_writes_scores_and_rejects_held_out_datasets(mini_root, tmp_path, in_process):
    out, scores = tmp_path / "perf.json", tmp_path / "scores.json"
    result = in_process("streams", "build", "--root", str(mini_root), "--order", "performance_hard_to_easy",
                     "--out", str(out), "--datasets", "DIGITS,SWATCHES", "--max-per-class", "5", "--workers", "2",
                     "--scores", str(scores))
    assert result.returncode == 0, result.stderr
    measured = json.loads(scores.read_text())["classes"]
    stream = [f"{d}+++{c}" for d, c in read_stream(out)]
    assert stream == list(measured) and len(stream) == 24
    accuracy = [measured[k]["accuracy"] for k in stream]
    assert accuracy == sorted(accuracy)  # hard first
    bad = in_process("streams", "build", "--root", str(mini_root), "--order", "random", "--out",
                  str(tmp_path / "x.json"), "--datasets", "PRIMSHAPES")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: --datasets: PRIMSHAPES is not an adaptation")
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.json").exists()


def test_unknown_order_is_a_clear_error(mini_root, registry):
    with pytest.raises(FifError, match="'sideways' is not a stream ordering"):
        build_stream("sideways", mini_root, registry)
