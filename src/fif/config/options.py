"""Options declared once: a typed block whose fields carry their default, range or choices and help.

An options block is a frozen dataclass deriving from ``Options`` whose fields are made with
``option(...)``. From that one declaration come:

- the composed defaults (``defaults()``: the block as Hydra composes it, fif.config.compose),
- the one-line range errors (``from_block``: one checker, ``check``, for flags, numbers, whole
  numbers, fractions and choices; a block's rules across fields go in ``validate``),
- the documentation tables (``rows``: key, default, what it means; docs/options.md is generated),
- the bad-value tests (tests/test_options.py draws values outside each declared range).

Blocks that plugins declare (each method's ``continual.<name>``, fif.methods.registry) are kept in
``DECLARED``, which composition reads; this module imports nothing above the config layer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from fif.errors import FifError

_Block = TypeVar("_Block", bound="Options")
KINDS = ("flag", "number", "whole", "choice", "text", "any")


@dataclass(frozen=True)
class Spec:
    """How one option is checked and described (kept in its dataclass field's metadata)."""

    help: str
    kind: str  # flag | number | whole | choice | text | any (checked by the block's validate)
    minimum: float | None = None
    maximum: float | None = None
    exclusive_min: bool = False  # minimum itself is out of range
    exclusive_max: bool = False
    choices: tuple[Any, ...] = ()
    nullable: bool = False
    null_means: str = ""  # what null does, said in the error: "null (all shards) or ..."
    says: str = ""  # what a valid value is, when the error should say more than the range (replaces it)

    def expected(self) -> str:
        """What a valid value is, as the one-line error says it."""
        if self.says:
            return self.says
        if self.kind == "flag":
            text = "true or false"
        elif self.kind == "choice":
            text = f"one of {', '.join(map(str, self.choices))}"
        elif self.kind in ("number", "whole"):
            text = self._range()
        else:
            text = "a value"
        if self.nullable:
            text = f"null{f' ({self.null_means})' if self.null_means else ''} or {text}"
        return text

    def _range(self) -> str:
        noun = "a whole number" if self.kind == "whole" else "a finite number"
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            left, right = "(" if self.exclusive_min else "[", ")" if self.exclusive_max else "]"
            noun = "a whole number" if self.kind == "whole" else "a number"
            return f"{noun} in {left}{low:g}, {high:g}{right}"
        if low is not None:
            return f"{noun} {'>' if self.exclusive_min else '>='} {low:g}"
        if high is not None:
            return f"{noun} {'<' if self.exclusive_max else '<='} {high:g}"
        return noun


def option(default: Any, help: str, *, kind: str | None = None, minimum: float | None = None,
           maximum: float | None = None, exclusive_min: bool = False, exclusive_max: bool = False,
           choices: tuple[Any, ...] = (), nullable: bool | None = None, null_means: str = "", says: str = "") -> Any:
    """A dataclass field with its check and help. ``kind`` defaults from ``default``'s type (a choice
    when ``choices`` is given); ``nullable`` defaults to ``default is None``."""
    if kind is None:
        kind = ("choice" if choices else "flag" if isinstance(default, bool) else "whole" if isinstance(default, int)
                else "number" if isinstance(default, float) else "text" if isinstance(default, str) else "any")
    assert kind in KINDS, kind
    spec = Spec(help, kind, minimum, maximum, exclusive_min, exclusive_max, tuple(choices),
                default is None if nullable is None else nullable, null_means, says)
    if isinstance(default, (list, dict, Options)):
        return field(default_factory=lambda: _copy(default), metadata={"spec": spec})
    return field(default=default, metadata={"spec": spec})


def _copy(value: Any) -> Any:
    return dataclasses.replace(value) if isinstance(value, Options) else type(value)(value)


def block(cls: type[_Block], help: str) -> Any:
    """A nested options block (a field whose value is another Options class, defaults and all)."""
    return field(default_factory=cls, metadata={"spec": Spec(help, "block")})


def check(spec: Spec, value: Any, key: str) -> Any:
    """``value`` if it is valid for ``spec`` (numbers as float, whole numbers as int); else a one-line error."""
    if value is None and spec.nullable:
        return None
    ok = True
    if spec.kind == "flag":
        ok = isinstance(value, bool)
    elif spec.kind == "choice":
        ok = any(c == value and type(c) is type(value) for c in spec.choices)  # 1 is not true, 1.0 not 1
    elif spec.kind in ("number", "whole"):
        ok = _in_range(spec, value)
        if ok:
            value = int(value) if spec.kind == "whole" else float(value)
    elif spec.kind == "text":
        ok = isinstance(value, str)
    if not ok:
        raise FifError(f"{key}={value!r} is not valid: expected {spec.expected()}")
    return value


def _in_range(spec: Spec, value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if spec.kind == "whole" and not isinstance(value, int):
        return False
    low, high = spec.minimum, spec.maximum
    if low is not None and (value <= low if spec.exclusive_min else value < low):
        return False
    return not (high is not None and (value >= high if spec.exclusive_max else value > high))


def spec_of(f: dataclasses.Field) -> Spec:
    return f.metadata["spec"]


class Options:
    """Base of a declared options block; subclasses are frozen dataclasses of ``option`` fields."""

    # Keys the block accepts (and ignores) besides its fields: e.g. a key renamed in a later version.
    tolerated: ClassVar[tuple[str, ...]] = ()
    # True: any other key passes unchecked (a block that holds other declarations' blocks: continual).
    open: ClassVar[bool] = False

    @classmethod
    def from_block(cls: type[_Block], node: Mapping[str, Any] | None, key: str, owner: str | None = None) -> _Block:
        """The checked block from a config node (absent keys take their defaults); ``key`` names errors,
        ``owner`` (default: ``key``) is what an unknown key is said not to be an option of."""
        values = _plain(node)
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        for name in values:
            if name not in known and name not in cls.tolerated and not cls.open:
                raise FifError(f"{_join(key, name)} is not an option of {owner or key or 'the config'} "
                               f"(expected one of: {', '.join(known)})")
        typed = {}
        for name, f in known.items():
            spec = spec_of(f)
            if spec.kind == "block":
                typed[name] = f.default_factory.from_block(values.get(name), _join(key, name))  # type: ignore[union-attr]
            elif name in values:
                typed[name] = check(spec, values[name], _join(key, name))
        made = cls(**typed)
        made.validate(key)
        return made

    @classmethod
    def check_field(cls, name: str, value: Any, key: str) -> Any:
        """One field's value checked against its declaration (``key`` names it in the error)."""
        return check(spec_of({f.name: f for f in fields(cls)}[name]), value, key)  # type: ignore[arg-type]

    def validate(self, key: str) -> None:
        """Rules across fields (or of list values); a broken one is a one-line FifError naming ``key``."""

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The block as composed config: every field's default (nested blocks as dicts)."""
        return _as_dict(cls())

    @classmethod
    def rows(cls, key: str, nested: bool = True) -> Iterator[tuple[str, Any, Spec]]:
        """(dotted key, default, spec) of every option, nested blocks flattened (``nested=False``: left out)."""
        made = cls()
        for f in fields(cls):  # type: ignore[arg-type]
            spec = spec_of(f)
            if spec.kind == "block":
                if nested:
                    yield from type(getattr(made, f.name)).rows(_join(key, f.name))
            else:
                yield _join(key, f.name), getattr(made, f.name), spec


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _as_dict(made: Options) -> dict[str, Any]:
    out = {}
    for f in fields(made):  # type: ignore[arg-type]
        value = getattr(made, f.name)
        out[f.name] = _as_dict(value) if isinstance(value, Options) else (
            list(value) if isinstance(value, tuple) else value)
    return out


def _plain(node: Mapping[str, Any] | None) -> dict[str, Any]:
    """A config node as a plain dict (an OmegaConf node resolved; lists as lists)."""
    if node is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(node, DictConfig):
            return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return dict(node)


# ------------------------------------------------------------------ blocks plugins declare
DECLARED: dict[str, type[Options]] = {}  # dotted key (continual.lora) -> its options class


def declare(key: str, options: type[Options]) -> None:
    """Make ``key`` a block of the composed config, with ``options``' defaults (a method's registration)."""
    DECLARED[key] = options
