"""Send every event to several trackers, so the loop holds one tracker whatever is enabled."""

from __future__ import annotations

from typing import Any
from collections.abc import Sequence

from fif.tracking.base import Tracker


class FanOutTracker(Tracker):
    def __init__(self, trackers: Sequence[Tracker]) -> None:
        self.trackers = list(trackers)

    def log(self, event: str, **fields: Any) -> None:
        for tracker in self.trackers:
            tracker.log(event, **fields)

    def close(self) -> None:
        """Close every backend even if one fails (so files are flushed), then raise the first error."""
        first: BaseException | None = None
        for tracker in self.trackers:
            try:
                tracker.close()
            except BaseException as error:  # noqa: BLE001 - re-raised below after the others closed
                first = first or error
        if first is not None:
            raise first
