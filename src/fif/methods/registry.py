"""The method registry: ``@register_method`` on a class in its own module is all a method needs.

Registration puts the class under its ``name`` (``continual.method=NAME``) and declares its
``Options`` as the ``continual.NAME`` block of the composed config (fif.config.options), so a
method's options are written once, beside its code. Built-in methods and methods of other
installed packages are found the same way: through the ``fif.methods`` entry-point group, whose
entries name modules that register methods when imported (docs/adding-a-method.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from fif.config.options import declare
from fif.config.plugins import load_plugins
from fif.errors import FifError

if TYPE_CHECKING:
    from fif.methods.base import ContinualMethod

_Method = TypeVar("_Method", bound="type[ContinualMethod]")
METHODS: dict[str, type[ContinualMethod]] = {}  # name -> class, in registration order (the `fif flops` rows)


def register_method(cls: _Method) -> _Method:
    """Class decorator: ``continual.method=<cls.name>`` builds ``cls``; its ``Options`` become ``continual.<name>``."""
    name = cls.name
    if not name or name == "base":
        raise TypeError(f"{cls.__qualname__} needs a class attribute `name` to be registered")
    if name in METHODS and METHODS[name] is not cls:
        raise FifError(f"method {name!r} is registered twice ({METHODS[name].__module__} and {cls.__module__})")
    METHODS[name] = cls
    declare(f"continual.{name}", cls.Options)
    return cls


def load_methods() -> dict[str, type[ContinualMethod]]:
    """Every registered method: the built-ins, then each ``fif.methods`` entry point's (fif.config.plugins)."""
    load_plugins()
    return METHODS


def method_class(name: str) -> type[ContinualMethod]:
    methods = load_methods()
    if name not in methods:
        raise FifError(f"continual.method={name!r} is not a known method (expected one of: {', '.join(methods)})")
    return methods[name]
