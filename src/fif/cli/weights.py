"""``fif weights fetch``: prefetch a named backbone's open_clip weights for offline use."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the commands (filled in by the module's owner)."""
