"""Compose the run configuration with Hydra: defaults < experiment yaml < command line."""

from __future__ import annotations

import re
import sys
from importlib import resources
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator, Sequence

from omegaconf import DictConfig, OmegaConf

from fif.config.blocks import RunOptions
from fif.config.options import DECLARED
from fif.config.plugins import load_plugins
from fif.errors import FifError

DECLARED_NODE = "fif_declared"


def conf_dir() -> Path:
    return Path(str(resources.files("fif.config") / "conf"))


def declared_defaults() -> dict[str, Any]:
    """Every declared default: the run-wide blocks (fif.config.blocks.RunOptions) and the blocks plugins
    declare (fif.config.options.DECLARED: each method's ``continual.<name>``), nested."""
    load_plugins()
    tree: dict[str, Any] = RunOptions.defaults()
    for key, options in DECLARED.items():
        *parents, last = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = options.defaults()
    return tree


def store_declared() -> None:
    """Put the declared blocks into Hydra's ConfigStore as ``fif_declared`` (config.yaml's first default)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=DECLARED_NODE, node=OmegaConf.create(declared_defaults()))


def _hydra_compose(overrides: Sequence[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    store_declared()

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def _one_line(error: Exception, overrides: Sequence[str]) -> str:
    text = str(error).strip()
    missing = re.search(r"Could not override '([^']+)'", text)
    if missing:
        return f"unknown config key {missing.group(1)!r} (run `fif run --cfg` to list every key)"
    group = re.search(r"Could not find '(\w+)/([^']+)'", text)
    if group:
        options = sorted(p.stem for p in (conf_dir() / group.group(1)).glob("*.yaml"))
        return f"{group.group(1)}={group.group(2)!r} does not exist (expected one of: {', '.join(options)})"
    first = text.splitlines()[0] if text else type(error).__name__
    if first.startswith("Ambiguous value"):
        first += " (to sweep comma-separated values, use `fif run -m`; for a list, use [a,b])"
    return f"bad override ({' '.join(overrides)}): {first}"


def leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a nested dict."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


def _check_types(cfg: DictConfig, defaults: DictConfig) -> None:
    """Hydra accepts ``experiment.task.num=abc``; reject values whose type differs from the default's."""
    values = dict(leaves(OmegaConf.to_container(cfg, resolve=True)))
    for key, default in leaves(OmegaConf.to_container(defaults, resolve=True)):
        value = values.get(key, default)
        if value is None or default is None:
            continue
        if isinstance(default, bool):
            ok, expected = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif isinstance(default, float):
            ok, expected = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        else:
            continue
        if not ok:
            raise FifError(f"{key}={value!r} is not valid: expected {expected}")


def compose(overrides: Sequence[str] = (), echo: Callable[[str], object] | None = None) -> DictConfig:
    """The resolved config; a bad override is a one-line FifError naming it.

    The reference's key names are accepted (fif.config.reference_keys): each is rewritten to ours and
    ``echo`` (default: stderr) gets one note line naming the new key.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from fif.config.reference_keys import translate_overrides

    overrides, notes = translate_overrides(overrides)
    for note in notes:
        (echo or _to_stderr)(note)

    try:
        cfg = _hydra_compose(overrides)
        defaults = _hydra_compose([o for o in overrides if o.split("=")[0] == "experiment"])
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        raise FifError(_one_line(error, overrides)) from None
    _check_types(cfg, defaults)
    return cfg


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def check_config(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """compose()'s type checks for a config Hydra composed itself (the ``fif-hydra`` app)."""
    from hydra import compose as hydra_compose
    from hydra.core.global_hydra import GlobalHydra

    experiment = [o for o in overrides if o.split("=")[0] == "experiment"]
    if GlobalHydra.instance().is_initialized():  # inside a running Hydra app: reuse its config search path
        defaults = hydra_compose(config_name="config", overrides=experiment)
    else:
        defaults = _hydra_compose(experiment)
    _check_types(cfg, defaults)


SECRET_KEYS = ("log.wandb_key",)


def public_config(cfg: DictConfig) -> DictConfig:
    """The config as written to disk (config.yaml, results.json, checkpoints): secrets redacted."""
    public = cfg.copy()
    for key in SECRET_KEYS:
        if OmegaConf.select(public, key) is not None:
            OmegaConf.update(public, key, "<redacted>")
    return public


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def read_config_file(path: str | Path) -> dict:
    """A run folder's config.yaml as plain data (resolved); an unreadable one is one line naming the file."""
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=True)  # type: ignore[return-value]
    except Exception as error:  # noqa: BLE001 - yaml and omegaconf raise many types; the user needs the file
        raise FifError(f"{path}: not a readable config ({type(error).__name__}: {str(error).splitlines()[0]})") \
            from None


def with_values(cfg: DictConfig, values: dict[str, Any]) -> DictConfig:
    """A copy of ``cfg`` with ``{dotted key: value}`` set as they are (no parsing: a folder name stays a string)."""
    out = OmegaConf.create(to_container(cfg))
    for key, value in values.items():
        OmegaConf.update(out, key, value, merge=False)
    return out
