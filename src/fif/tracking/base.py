"""The tracker interface: every backend receives the same events the run loop emits.

The loop calls ``tracker.log(event, **fields)`` with ``event`` one of ``start``, ``step``,
``eval``, ``end`` (fields: see ``fif.tracking.scalars``) and ``tracker.close()`` at the end. A
backend is anything with those two methods; ``FanOutTracker`` sends each call to several.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class Tracker(ABC):
    """One destination for run events (a file, TensorBoard, W&B)."""

    @abstractmethod
    def log(self, event: str, **fields: Any) -> None:
        """Record one event; fields are JSON-like (numbers, strings, dicts of numbers)."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release; called once, after the last event."""
