"""The built-in methods: importing this module registers them, in the order `fif flops` lists them.

It is the ``builtin`` entry of the ``fif.methods`` entry-point group (pyproject.toml), the same
way a method of another package is found (fif.config.plugins).
"""

# Families in the order of the `fif flops` rows: finetune (the MAF yardstick), parameter-additive,
# selective, regularised, merging; each module registers its classes in definition order.
from fif.methods import finetune  # noqa: F401, I001 - registers; the order is the rows'
from fif.methods import adapters  # noqa: F401
from fif.methods import selective  # noqa: F401
from fif.methods import regularisation  # noqa: F401
from fif.methods import merging  # noqa: F401
