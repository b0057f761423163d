"""Method plugins: the modules of the ``fif.methods`` entry-point group, imported once.

Importing such a module registers its methods (``fif.methods.registry.register_method``), which
declares each method's options block (fif.config.options.DECLARED) for composition. The built-in
methods are an entry of the same group (pyproject.toml), so a researcher's package is found
exactly as they are. Modules are imported by name: composition needs the blocks, not the classes,
so this layer never imports the methods statically.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from fif.errors import FifError

GROUP = "fif.methods"
BUILTIN = "fif.methods.builtin"  # the group's entry in pyproject.toml; loaded by name when not installed
_loaded = False


def load_plugins() -> None:
    """Import every ``fif.methods`` entry point's module (the built-ins first); a broken one is one line."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module(BUILTIN)  # also from a source tree whose distribution has no entry points
    for entry in entry_points(group=GROUP):
        if entry.value == BUILTIN:
            continue
        try:
            entry.load()
        except Exception as error:  # a broken plugin names itself instead of a traceback
            raise FifError(f"method plugin {entry.name!r} ({entry.value}, entry-point group {GROUP}) failed to "
                           f"load: {type(error).__name__}: {error}") from None
