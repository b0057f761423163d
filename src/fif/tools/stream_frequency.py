"""Concept frequency in the pretraining pool's captions, and the ``frequency`` ordering (rare first).

The paper orders concepts by how often the pretraining data shows them, following the
concept-frequency study of Udandarao et al. (2024, "No zero-shot without exponential data"), and
streams the rarest first. The reference ships ``frequency_sequence_1`` but not the counting
script; its order is what the rules below follow:

- rare first: it opens with classes no caption names verbatim (full iNaturalist taxonomies, Dollar
  Street "object from country" names, 3D Shapes descriptions) and closes with "house", "book",
  "map", "place", "people", "sign", "view", "can";
- case-insensitive: "House" (OPENIMAGES) and "house" (CIFAR100, SUN397, ...) sit together;
- whole words: "ant" and "ear" sit among ordinary nouns below "cat" and "car", where substring
  matching ("plant", "want", "year", "wear") would have put them at the very end;
- the whole class name as a phrase: every word, in order, adjacent ("red cube" is not "red" + "cube");
- plural forms of the last word count too ("dogs", "buses", "berries" for "dog", "bus", "berry"):
  the lemmatised match of the concept-frequency study (``plurals=False``: exact words only).

A class's count is the number of captions that mention it at least once. Ties (above all the many
classes no caption names) are broken by seed: a seeded shuffle, then a stable sort by count.

Words are runs of letters and digits (a regex), so punctuation, hyphens and apostrophes separate
words in class names and captions alike ("hard-leaved" matches "hard leaved"). Hand-written rather
than spaCy or NLTK lemmatisers because those need model downloads and are slow over millions of
captions; the plural rule covers what lemmatising a noun phrase's head does for English plurals.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterator, Sequence

import numpy as np
from tqdm import tqdm

from fif.data.format.streams import StreamEntry
from fif.data.samples.pool import TEXT_EXTENSIONS
from fif.errors import FifError

WORD = re.compile(r"[^\W_]+")


def words(text: str) -> tuple[str, ...]:
    """Lower-cased words: runs of letters and digits."""
    return tuple(WORD.findall(text.lower()))


def singular_forms(word: str) -> set[str]:
    """The word and what it may be the plural of: dogs -> dog, buses -> bus, berries -> berry."""
    forms = {word}
    if len(word) > 3 and word.endswith("ies"):
        forms.add(word[:-3] + "y")
    if len(word) > 2 and word.endswith("es"):
        forms.add(word[:-2])
    if len(word) > 1 and word.endswith("s") and not word.endswith("ss"):
        forms.add(word[:-1])
    return forms


class ConceptMatcher:
    """Finds which of many class names a caption mentions, in one pass over the caption's words."""

    def __init__(self, names: Sequence[str], plurals: bool = True) -> None:
        self.plurals = plurals
        self.keys: dict[tuple[str, ...], int] = {}  # word tuple -> concept id (names with equal words share one)
        self.of_name = [self.keys.setdefault(words(name), len(self.keys)) for name in names]
        self.keys.pop((), None)  # a name without words is never mentioned
        self.prefixes = {key[:n] for key in self.keys for n in range(1, len(key))}
        self.longest = max((len(key) for key in self.keys), default=0)

    def found(self, caption: str) -> set[int]:
        """Ids of the concepts the caption mentions (each once)."""
        tokens, hits = words(caption), set()
        for start in range(len(tokens)):
            for n in range(1, min(self.longest, len(tokens) - start) + 1):
                head = tokens[start:start + n - 1]
                if n > 1 and head not in self.prefixes:
                    break
                last = tokens[start + n - 1]
                for form in (singular_forms(last) if self.plurals else (last,)):
                    concept = self.keys.get(head + (form,))
                    if concept is not None:
                        hits.add(concept)
        return hits


def caption_of(sample: dict[str, Any]) -> str | None:
    """A webdataset sample's caption (.txt, .caption, or a .json sidecar's caption/text); None if it has none.

    Only the caption is decoded (the pool reader's PoolRecord decodes the image as well)."""
    extension = next((ext for ext in TEXT_EXTENSIONS if ext in sample), None)
    if extension is None:
        return None
    try:
        text = sample[extension].decode("utf-8")
        if extension == "json":
            sidecar = json.loads(text)
            text = (sidecar.get("caption") or sidecar.get("text")) if isinstance(sidecar, dict) else sidecar
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return text if isinstance(text, str) else None


def _samples(shard: str) -> Iterator[dict[str, Any]]:
    import webdataset as wds

    yield from wds.WebDataset(shard, shardshuffle=False, empty_check=False, nodesplitter=None,
                              workersplitter=None)


def count_shard(shard: str, names: Sequence[str], plurals: bool = True) -> tuple[list[int], int, int]:
    """Per name, how many of the shard's captions mention it; and how many captions were read and skipped."""
    matcher = ConceptMatcher(names, plurals)
    per_concept = [0] * len(matcher.of_name)
    read = skipped = 0
    try:
        for sample in _samples(shard):
            text = caption_of(sample)
            if text is None:
                skipped += 1
                continue
            read += 1
            for concept in matcher.found(text):
                per_concept[concept] += 1
    except Exception as error:  # webdataset/tarfile raise several types for a broken shard; name the shard
        raise FifError(f"pool shard {shard} could not be read ({type(error).__name__}: {error})") from None
    return [per_concept[concept] for concept in matcher.of_name], read, skipped


@dataclass
class ConceptCounts:
    """Captions mentioning each class name (in the order the names were given)."""

    counts: list[int]
    captions: int
    skipped: int  # samples without a readable caption


def concept_counts(shards: Sequence[str | Path], names: Sequence[str], plurals: bool = True, workers: int = 0,
                   progress: bool = True) -> ConceptCounts:
    """Count over every shard, one process per shard when ``workers`` > 1 (shards are independent)."""
    if not shards:
        raise FifError("--pool: no .tar shards to count concepts in")
    total = ConceptCounts([0] * len(names), 0, 0)
    paths = [str(s) for s in shards]
    bar = tqdm(total=len(paths), desc="counting concepts", unit="shard", disable=None if progress else True,
               leave=False)  # None: off when stderr is not a terminal
    executor = ProcessPoolExecutor(min(workers, len(paths))) if workers > 1 and len(paths) > 1 else None
    try:
        results = (executor.map(count_shard, paths, [names] * len(paths), [plurals] * len(paths)) if executor
                   else (count_shard(path, names, plurals) for path in paths))
        for counts, read, skipped in results:
            total.counts = [a + b for a, b in zip(total.counts, counts)]
            total.captions += read
            total.skipped += skipped
            bar.update(1)
    finally:
        if executor:
            executor.shutdown(cancel_futures=True)
        bar.close()
    return total


def frequency_order(entries: list[StreamEntry], counts: Sequence[int], seed: int) -> list[StreamEntry]:
    """Rarest first; equal counts in a seeded random order (shuffle, then a stable sort)."""
    shuffled = np.random.RandomState(seed).permutation(len(entries))
    order = sorted(shuffled, key=lambda i: counts[i])
    return [entries[i] for i in order]
