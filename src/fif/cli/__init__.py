"""The ``fif`` command line: one entry point (``main``), one module per command group."""

from fif.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
