"""Configuration: composition (Hydra), typed settings, the reference's key aliases and the presets.

``compose(overrides)`` gives the run config; ``fif.config.settings`` turns its blocks into typed,
validated settings; ``fif.config.reference_keys`` rewrites the reference's key names; the presets
are ``conf/experiment/*.yaml``.
"""

from fif.config.compose import (SECRET_KEYS, check_config, compose, conf_dir, declared_defaults, leaves,
                                public_config, store_declared, to_container, with_values)

__all__ = ["SECRET_KEYS", "check_config", "compose", "conf_dir", "declared_defaults", "leaves", "public_config",
           "store_declared", "to_container", "with_values"]
