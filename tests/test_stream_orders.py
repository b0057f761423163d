"""The frequency, time-incremental and reversed orderings, checked against the reference's shipped streams."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from fif.data.format.registry import adaptation_specs, builtin_registry, resolve_registry
from fif.data.format.streams import read_stream, shipped_streams
from fif.errors import FifError
from fif.tools.stream_builders import build_stream
from fif.tools.stream_frequency import ConceptMatcher, concept_counts, frequency_order
from fif.tools.stream_time import dschunked_order, read_years, rsagg_order, year_groups

# --- frequency -----------------------------------------------------------------------------------

NAMES = ["ant", "dog", "sports car", "House", "house", "berry", "bus", "glass", "Animalia Chordata Aves",
         "hard-leaved pocket orchid", "colt's foot"]
CAPTIONS = [
    "A plant and a giant elephant",        # no "ant": whole words only
    "An ant on a leaf",                    # ant
    "Two dogs playing",                    # dog (plural)
    "a DOG in front of a HOUSE",           # dog, House/house (any case)
    "red sports cars parked",              # sports car (plural of the last word)
    "sports and a car",                    # not the phrase "sports car"
    "fresh berries",                       # berry
    "city buses at night",                 # bus
    "glasses on the table",                # glass
    "the Hard-Leaved Pocket Orchid",       # punctuation separates words in names and captions alike
    "colt's foot flower",                  # colt's foot
    "dog dog dog",                         # a caption counts once
]
WITH_PLURALS = [1, 3, 1, 1, 1, 1, 1, 1, 0, 1, 1]
EXACT_WORDS = [1, 2, 0, 1, 1, 0, 0, 0, 0, 1, 1]


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def write_shard(path: Path, captions: list[str], extension: str = "txt", start: int = 0) -> Path:
    """A real webdataset shard: one png and one caption member per sample."""
    image = _png()
    with wds.TarWriter(str(path)) as writer:
        for i, caption in enumerate(captions):
            text = json.dumps({"caption": caption}) if extension == "json" else caption
            writer.write({"__key__": f"{start + i:06d}", "png": image, extension: text.encode()})
    return path


def test_matching_rules_give_the_known_counts():
    matcher = ConceptMatcher(NAMES)
    counts = Counter(k for caption in CAPTIONS for k in matcher.found(caption))
    assert [counts[matcher.of_name[i]] for i in range(len(NAMES))] == WITH_PLURALS
    exact = ConceptMatcher(NAMES, plurals=False)
    counts = Counter(k for caption in CAPTIONS for k in exact.found(caption))
    assert [counts[exact.of_name[i]] for i in range(len(NAMES))] == EXACT_WORDS


def test_counts_over_generated_shards_in_parallel(tmp_path):
    shards = [write_shard(tmp_path / "a.tar", CAPTIONS[:5]),
              write_shard(tmp_path / "b.tar", CAPTIONS[5:9], extension="json", start=5),
              write_shard(tmp_path / "c.tar", CAPTIONS[9:], extension="caption", start=9)]
    with wds.TarWriter(str(tmp_path / "d.tar")) as writer:  # a sample without a caption is skipped, not counted
        writer.write({"__key__": "999999", "png": _png()})
    shards.append(tmp_path / "d.tar")
    serial = concept_counts(shards, NAMES, progress=False)
    parallel = concept_counts(shards, NAMES, workers=2, progress=False)
    assert serial == parallel
    assert serial.counts == WITH_PLURALS and (serial.captions, serial.skipped) == (12, 1)
    assert concept_counts(shards, NAMES, plurals=False, progress=False).counts == EXACT_WORDS
    (tmp_path / "broken.tar").write_bytes(b"not a tar archive" * 64)
    with pytest.raises(FifError, match="pool shard .*broken.tar could not be read"):
        concept_counts([tmp_path / "broken.tar"], NAMES, progress=False)


def test_frequency_order_is_rarest_first_with_seeded_ties():
    entries = [("D", str(i)) for i in range(12)]
    counts = [5, 0, 3, 0, 0, 9, 3, 0, 1, 0, 0, 2]
    ordered = frequency_order(entries, counts, seed=0)
    assert [counts[int(c)] for _, c in ordered] == sorted(counts)
    assert ordered == frequency_order(entries, counts, seed=0)
    ties = {tuple(frequency_order(entries, counts, seed)[:6]) for seed in range(10)}
    assert len(ties) > 5  # the six zero-count classes come in a seeded order
    assert all(sorted(t) == sorted(e for e in entries if counts[int(e[1])] == 0) for t in ties)


def test_frequency_stream_of_the_mini_benchmark_from_a_generated_pool(mini_root, tmp_path, in_process):
    pool = tmp_path / "pool"
    pool.mkdir()
    write_shard(pool / "shard-0.tar", ["a teal wall"] * 4 + ["Night Sky over the hills"] * 3)
    write_shard(pool / "shard-1.tar", ["the beaches of the north"] * 2 + ["a red cube and two red cubes"], start=7)
    out, scores = tmp_path / "freq.json", tmp_path / "scores.json"
    result = in_process("streams", "build", "--root", str(mini_root), "--order", "frequency", "--pool", str(pool),
                     "--out", str(out), "--scores", str(scores), "--workers", "2")
    assert result.returncode == 0, result.stderr
    stream = [f"{d}+++{c}" for d, c in read_stream(out)]
    counts = {key: row["count"] for key, row in json.loads(scores.read_text())["classes"].items()}
    assert len(stream) == 100 and list(counts) == stream
    assert stream[-3:] == ["SCENES+++beach", "SCENES+++night sky", "SWATCHES+++teal"]
    assert {k: v for k, v in counts.items() if v} == {"SWATCHES+++teal": 4, "SCENES+++night sky": 3,
                                                     "SCENES+++beach": 2, "OBJECTS3D+++red cube": 1,
                                                     "DIGITS+++two": 1, "COUNTING+++two": 1}
    assert "captions: 10" in result.stdout and "classes_never_mentioned: 94" in result.stdout


def test_frequency_on_the_mini_pool_is_the_random_order_because_no_caption_names_a_class(mini_root):
    """The mini pool never uses adaptation vocabulary (by design), so every tie is broken by the seed."""
    from fif.data.mini.build import pool_shards

    registry = resolve_registry(None, mini_root)
    built = build_stream("frequency", mini_root, registry, seed=3, pool=pool_shards(mini_root, 2), progress=False)
    assert built.summary["classes_never_mentioned"] == 100 and built.summary["captions"] == 10000
    assert built.entries == build_stream("random", mini_root, registry, seed=3).entries


def test_frequency_needs_a_pool(mini_root, tmp_path, in_process):
    registry = resolve_registry(None, mini_root)
    with pytest.raises(FifError, match="--order frequency needs --pool DIR"):
        build_stream("frequency", mini_root, registry)
    result = in_process("streams", "build", "--root", str(mini_root), "--order", "frequency", "--pool", str(tmp_path),
                     "--out", str(tmp_path / "f.json"))
    assert result.returncode == 2 and result.stderr.strip() == f"error: --pool {tmp_path}: no .tar shards found " \
                                                               f"(expected a folder of webdataset shards)"


# --- time-incremental ----------------------------------------------------------------------------


def _folders_in_order(entries) -> list[str]:
    return list(dict.fromkeys(folder for folder, _ in entries))


@pytest.fixture(scope="module")
def fif_blocks(reference_dir):
    """The 41 adaptation datasets of the built-in registry, in registry order, with the reference's classes."""
    by_folder: dict[str, list] = {}
    for entry in read_stream(reference_dir / "streams" / "random_sequence_1.json"):
        by_folder.setdefault(entry[0], []).append(entry)
    return [sorted(by_folder[spec.folder]) for spec in adaptation_specs(builtin_registry())]


def test_the_year_table_covers_every_streamed_dataset_with_a_source():
    years = read_years()
    adaptation = {spec.folder for spec in builtin_registry().values() if spec.role == "adaptation"}
    from fif.data.mini.worlds import DATASETS

    mini = {d.folder for d in DATASETS if d.role == "adaptation"}
    assert set(years) == adaptation | mini and len(adaptation) == 41 and len(mini) == 8
    assert all(1990 < r.year < 2030 and r.source for r in years.values())


def test_dschunked_dataset_order_is_the_references(fif_blocks, reference_dir):
    reference = [read_stream(reference_dir / "streams" / f"time_incremental_dschunked_{k}.json") for k in range(1, 6)]
    ours = [dschunked_order(fif_blocks, read_years(), seed) for seed in range(1, 6)]
    assert len({tuple(_folders_in_order(r)) for r in reference}) == 1  # the reference: one dataset order, all seeds
    assert _folders_in_order(ours[0]) == _folders_in_order(reference[0]) and len(_folders_in_order(ours[0])) == 41
    for stream in ours:
        folders = [f for f, _ in stream]
        assert sum(a != b for a, b in zip(folders, folders[1:])) == 40  # every dataset one contiguous chunk
        assert _folders_in_order(stream) == _folders_in_order(ours[0]) and sorted(stream) == sorted(reference[0])
    # like the reference, seeds reorder classes inside a dataset, never the datasets
    assert len({tuple(s) for s in ours}) == 5 and len({tuple(r) for r in reference}) == 5


def test_rsagg_mixes_exactly_the_references_year_chunks(fif_blocks, reference_dir):
    years = read_years()
    reference = read_stream(reference_dir / "streams" / "time_incremental_rsagg_1.json")
    ours = rsagg_order(fif_blocks, years, seed=1)
    year = [years[f].year for f, _ in ours]
    assert year == [years[f].year for f, _ in reference]  # the same chunk at every one of 18,381 positions
    assert year == sorted(year) and len(set(year)) == 15
    groups = year_groups(fif_blocks, years)
    start = 0
    for y, blocks in groups:  # each year chunk holds its datasets' classes, mixed
        size = sum(len(b) for b in blocks)
        assert sorted(ours[start:start + size]) == sorted(reference[start:start + size])
        folders = [f for f, _ in ours[start:start + size]]
        changes = sum(a != b for a, b in zip(folders, folders[1:]))
        same = sum(len(b) * (len(b) - 1) for b in blocks) / (size * (size - 1)) if size > 1 else 1.0
        assert changes >= 0.5 * (size - 1) * (1 - same), y  # about as mixed as a uniform shuffle (0 for one dataset)
        start += size
    assert [y for y, _ in groups][:6] == [2008, 2009, 2010, 2011, 2013, 2014]
    assert [b[0][0] for b in dict(groups)[2014]] == ["BIRDSNAP", "DTD", "ZAPPOS50k"]


def test_time_orders_on_the_mini_benchmark_through_the_cli(mini_root, tmp_path, in_process):
    outputs = {}
    for order in ("time_incremental_dschunked", "time_incremental_rsagg"):
        outputs[order] = tmp_path / f"{order}.json"
        result = in_process("streams", "build", "--root", str(mini_root), "--order", order, "--out",
                         str(outputs[order]), "--seed", "4", "--scores", str(tmp_path / f"{order}.scores.json"))
        assert result.returncode == 0, result.stderr
        assert "datasets: 8" in result.stdout and "years: 5" in result.stdout
    chunked, mixed = (read_stream(outputs[o]) for o in outputs)
    assert _folders_in_order(chunked) == ["DIGITS", "SCENES", "SWATCHES", "TEXTURES", "COUNTING", "GLYPHS",
                                          "SPRITES2D", "OBJECTS3D"]
    scores = json.loads((tmp_path / "time_incremental_rsagg.scores.json").read_text())["classes"]
    assert [scores[f"{d}+++{c}"]["year"] for d, c in mixed] == sorted(scores[f"{d}+++{c}"]["year"] for d, c in mixed)
    assert sorted(chunked) == sorted(mixed) and len(mixed) == 100
    assert {f for f, _ in mixed[10:32]} == {"SCENES", "SWATCHES"}  # the 2010 chunk: 8 scenes + 14 swatches, mixed


def test_a_dataset_without_a_year_and_a_bad_table_are_clear_errors(fif_blocks, tmp_path):
    table = tmp_path / "years.json"
    table.write_text(json.dumps({"CIFAR100": 2009, "dtd": {"year": 2014, "source": "Cimpoi et al."}}))
    years = read_years(table)
    blocks = [[("DTD", "banded")], [("CIFAR100", "apple")]]
    assert dschunked_order(blocks, years, 0) == [("CIFAR100", "apple"), ("DTD", "banded")]
    with pytest.raises(FifError, match="no release year for FLOWERS102, SUN397"):
        dschunked_order(blocks + [[("FLOWERS102", "rose")], [("SUN397", "abbey")]], years, 0)
    table.write_text(json.dumps({"CIFAR100": "2009"}))
    with pytest.raises(FifError, match="dataset 'CIFAR100' has year '2009'; expected a whole number"):
        read_years(table)


# --- reversed ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["random", "similarity", "frequency", "performance"])
def test_reversed_reproduces_the_references_reverse_streams(kind):
    shipped = shipped_streams()
    built = build_stream("reversed", None, None, source=f"{kind}_sequence_1")
    assert built.entries == read_stream(shipped[f"{kind}_sequence_reverse_1"]) and len(built.entries) == 18381


def test_reversed_through_the_cli_writes_the_reference_file_byte_for_byte(reference_dir, tmp_path, in_process):
    out = tmp_path / "rev.json"
    result = in_process("streams", "build", "--order", "reversed", "--from", "stream_construction/random_sequence_1.json",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == (reference_dir / "streams" / "random_sequence_reverse_1.json").read_bytes()
    back = tmp_path / "back.json"
    assert in_process("streams", "build", "--order", "reversed", "--from", str(out), "--out", str(back)).returncode == 0
    assert back.read_bytes() == (reference_dir / "streams" / "random_sequence_1.json").read_bytes()


def test_reversed_needs_a_stream_and_from_belongs_to_reversed(mini_root, tmp_path, in_process):
    for args, message in ((["--order", "reversed"], "error: --order reversed needs --from NAME_OR_FILE"),
                          (["--order", "reversed", "--from", "nope_7"], "error: --from='nope_7' is neither a file"),
                          (["--order", "random", "--root", str(mini_root), "--from", "mini_random_1"],
                           "error: --from=mini_random_1 is only read by --order reversed")):
        result = in_process("streams", "build", *args, "--out", str(tmp_path / "x.json"))
        assert result.returncode == 2 and result.stderr.startswith(message), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.json").exists()
    mini = build_stream("reversed", None, None, source="mini_random_1").entries
    assert mini[::-1] == read_stream(shipped_streams()["mini_random_1"]) and len(set(mini)) == 100
