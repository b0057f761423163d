"""Run tracking: the JSONL event log (always), TensorBoard and Weights & Biases (optional)."""

from fif.tracking.base import Tracker
from fif.tracking.build import build_tracker
from fif.tracking.fanout import FanOutTracker
from fif.tracking.jsonl import JsonlTracker

__all__ = ["Tracker", "FanOutTracker", "JsonlTracker", "build_tracker"]
