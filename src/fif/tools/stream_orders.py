"""The names of the stream orderings ``fif streams build`` makes, and one line on each.

A module of its own (no torch, no data imports) so that the command line can list the orderings
in its help without importing the builders.
"""

from __future__ import annotations

ORDER_HELP: dict[str, str] = {
    "random": "every class in a seeded random order",
    "dataset_incremental": "each dataset one contiguous chunk (--datasets order, else seeded)",
    "performance_easy_to_hard": "by the backbone's zero-shot accuracy per class, highest first",
    "performance_hard_to_easy": "by the backbone's zero-shot accuracy per class, lowest first",
    "similarity": "chains of semantically similar class names (text embeddings, k-means, nearest-neighbour chains)",
    "frequency": "rare concepts first, by how many pretraining-pool captions name each class",
    "time_incremental_dschunked": "datasets in release-year order, each dataset one chunk",
    "time_incremental_rsagg": "years in order, each year one chunk with its datasets' classes mixed",
    "reversed": "the exact reverse of --from (a shipped stream name or a stream file)",
}
ORDERS: tuple[str, ...] = tuple(ORDER_HELP)
