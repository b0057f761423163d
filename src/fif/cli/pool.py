"""``fif data pool``: build a pretraining pool of webdataset shards, or adopt and verify one."""

from __future__ import annotations

import argparse


def add_commands(data: argparse._SubParsersAction) -> None:
    """Register the commands (filled in by the module's owner)."""
