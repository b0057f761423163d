"""``fif data download`` and ``fif data resize``: get the reference's datasets and their 224-px variants."""

from __future__ import annotations

import argparse


def add_commands(data: argparse._SubParsersAction) -> None:
    """Register the commands (filled in by the module's owner)."""
