"""Millions of short strings without millions of Python objects.

A FiF root has ~2.5M info entries. As Python lists, their keys and captions cost ~100 bytes of
object overhead each, and DataLoader workers slowly copy them (reference counts touch every
page). Packed, a string is UTF-8 bytes in one buffer plus one int64 end offset; items are decoded
on access (~0.2 us).
"""

from __future__ import annotations

from typing import overload
from collections.abc import Iterable, Iterator, Sequence

import numpy as np


class PackedStrings(Sequence[str]):
    """An immutable sequence of str stored as one UTF-8 buffer and end offsets."""

    def __init__(self, strings: Iterable[str]) -> None:
        encoded = [s.encode("utf-8", "surrogatepass") for s in strings]
        self._blob = b"".join(encoded)
        self._ends = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)).cumsum()

    def __len__(self) -> int:
        return len(self._ends)

    def _span(self, index: int) -> tuple[int, int]:
        n = len(self._ends)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} strings")
        return (int(self._ends[index - 1]) if index else 0), int(self._ends[index])

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        start, end = self._span(index)
        return self._blob[start:end].decode("utf-8", "surrogatepass")

    def __iter__(self) -> Iterator[str]:
        blob, start = self._blob, 0
        for end in self._ends.tolist():
            yield blob[start:end].decode("utf-8", "surrogatepass")
            start = end

    @property
    def nbytes(self) -> int:
        return len(self._blob) + self._ends.nbytes


class PackedCaptions(Sequence[list[str]]):
    """Per entry a list of captions (1 for most datasets, 5 for FLICKR30K/MSCOCO), packed."""

    def __init__(self, groups: Iterable[Sequence[str]]) -> None:
        flat: list[str] = []
        counts: list[int] = []
        for group in groups:
            flat.extend(group)
            counts.append(len(group))
        self._flat = PackedStrings(flat)
        self._ends = np.array(counts, dtype=np.int64).cumsum()

    @classmethod
    def from_flat(cls, flat: list[str], counts: list[int]) -> PackedCaptions:
        """Build from captions already flattened (the fast path of the info-file reader)."""
        packed = cls.__new__(cls)
        packed._flat = PackedStrings(flat)
        packed._ends = np.array(counts, dtype=np.int64).cumsum()
        return packed

    def __len__(self) -> int:
        return len(self._ends)

    @overload
    def __getitem__(self, index: int) -> list[str]: ...
    @overload
    def __getitem__(self, index: slice) -> list[list[str]]: ...

    def __getitem__(self, index: int | slice) -> list[str] | list[list[str]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self._ends)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} entries")
        start = int(self._ends[index - 1]) if index else 0
        return [self._flat[i] for i in range(start, int(self._ends[index]))]

    def __iter__(self) -> Iterator[list[str]]:
        flat, start = iter(self._flat), 0
        for end in self._ends.tolist():
            yield [next(flat) for _ in range(end - start)]
            start = end

    @property
    def nbytes(self) -> int:
        return self._flat.nbytes + self._ends.nbytes
