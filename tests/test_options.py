"""Options declared once (fif.config.options): the checker, composition, the generated page, and
every declared range fuzzed through the path a run checks it by (no table to keep)."""

from __future__ import annotations

import copy
import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from fif.config import compose, conf_dir
from fif.config.blocks import RunOptions, check_run_options
from fif.config.options import DECLARED, Options, Spec, option
from fif.tools.options_doc import markdown
from fif.errors import FifError
from fif.methods import METHODS

DOCS = Path(__file__).resolve().parents[1] / "docs" / "options.md"


@dataclass(frozen=True)
class Example(Options):
    """A block with one option of each kind."""

    flag: bool = option(False, "a flag")
    rate: float = option(0.5, "a fraction", minimum=0.0, maximum=1.0, exclusive_min=True)
    count: int = option(3, "a whole number", minimum=1)
    size: int | None = option(None, "null or a size", kind="whole", minimum=2, null_means="the batch size")
    mode: str = option("a", "a choice", choices=("a", "b"))


def test_a_block_takes_its_defaults_and_checks_each_value():
    assert Example.from_block(None, "x") == Example()
    assert Example.defaults() == {"flag": False, "rate": 0.5, "count": 3, "size": None, "mode": "a"}
    made = Example.from_block({"rate": 1, "count": 7, "size": 4, "mode": "b", "flag": True}, "x")
    assert (made.rate, made.count, made.size, made.mode, made.flag) == (1.0, 7, 4, "b", True)
    assert isinstance(made.rate, float) and isinstance(made.count, int)
    cases = {("rate", 0.0): "x.rate=0.0 is not valid: expected a number in (0, 1]",
             ("rate", math.nan): "x.rate=nan is not valid: expected a number in (0, 1]",
             ("count", 0): "x.count=0 is not valid: expected a whole number >= 1",
             ("count", 2.0): "x.count=2.0 is not valid: expected a whole number >= 1",
             ("count", True): "x.count=True is not valid: expected a whole number >= 1",
             ("size", 1): "x.size=1 is not valid: expected null (the batch size) or a whole number >= 2",
             ("mode", "c"): "x.mode='c' is not valid: expected one of a, b",
             ("flag", "yes"): "x.flag='yes' is not valid: expected true or false",
             ("mode", 1): "x.mode=1 is not valid: expected one of a, b"}
    for (name, value), message in cases.items():
        with pytest.raises(FifError) as error:
            Example.from_block({name: value}, "x")
        assert str(error.value) == message
    with pytest.raises(FifError, match=r"^x\.sise is not an option of owner \(expected one of: flag, rate, "):
        Example.from_block({"sise": 3}, "x", owner="owner")


def test_a_choice_of_true_false_and_auto_takes_no_number():
    for value in (1, 0, 1.0):
        with pytest.raises(FifError, match=rf"^experiment\.compute\.fused_adamw={value!r} is not valid: expected auto, "):
            check_run_options({"experiment": {"compute": {"fused_adamw": value}}})
    assert check_run_options({"experiment": {"compute": {"fused_adamw": True}}}).experiment.compute.fused_adamw is True


def test_every_method_declares_its_block_and_composition_holds_the_defaults():
    cfg = OmegaConf.to_container(compose(["experiment=mini"]), resolve=True)
    assert cfg["evaluation"] == RunOptions.defaults()["evaluation"]  # the mini preset leaves evaluation alone
    assert check_run_options(cfg).experiment.task.batch_size == 128  # mini.yaml over the declared 512
    assert set(METHODS) <= {key.split(".", 1)[1] for key in DECLARED}
    for name, cls in METHODS.items():
        assert DECLARED[f"continual.{name}"] is cls.Options
        assert cfg["continual"][name] == cls.Options.defaults()
        assert cls.Options.from_block(cfg["continual"][name], f"continual.{name}") == cls.Options()


def test_the_options_page_is_generated_from_the_declarations():
    assert DOCS.read_text() == markdown(), "docs/options.md is stale: python -m fif.tools.options_doc > docs/options.md"


def _numeric_options() -> list[tuple[str, str, Spec]]:
    """(method, option key relative to its block, spec) of every declared option with a range."""
    found = []
    for name, cls in METHODS.items():
        for key, _, spec in cls.Options.rows(f"continual.{name}"):
            if spec.kind in ("number", "whole", "choice", "flag"):
                found.append((name, key, spec))
    return found


def _out_of_range(spec: Spec) -> st.SearchStrategy:
    """Values the declaration must refuse, drawn from its own range (a new option is fuzzed without a table)."""
    if spec.kind == "flag":
        return st.sampled_from(["yes", 1, 0.0])
    if spec.kind == "choice":
        return st.text(min_size=1, max_size=8).filter(lambda v: v not in spec.choices)
    bad = [st.sampled_from([math.nan, math.inf, -math.inf, True, "abc"])]
    if spec.kind == "whole":
        bad.append(st.floats(allow_nan=False, allow_infinity=False))  # a float is never a whole number here
    if spec.minimum is not None:
        bad.append(st.floats(max_value=spec.minimum, exclude_max=not spec.exclusive_min, allow_nan=False,
                             allow_infinity=False))
    if spec.maximum is not None:
        bad.append(st.floats(min_value=spec.maximum, exclude_min=not spec.exclusive_max, allow_nan=False,
                             allow_infinity=False))
    return st.one_of(bad)


@functools.cache
def _composed_block(method: str) -> dict:
    """The method's block as a run composes it (once per method)."""
    return OmegaConf.to_container(compose([f"continual.method={method}"]).continual[method], resolve=True)


@functools.cache
def _composed() -> dict:
    return OmegaConf.to_container(compose([]), resolve=True)


def _run_wide_options() -> list[tuple[str, Spec]]:
    return [(key, spec) for key, _, spec in RunOptions.rows("") if spec.kind in ("number", "whole", "choice", "flag")]


@pytest.mark.parametrize("key, spec", _run_wide_options(), ids=lambda v: v if isinstance(v, str) else "")
@settings(max_examples=10, deadline=None, database=None)
@given(data=st.data())
def test_a_run_wide_option_refuses_what_its_declaration_refuses_in_one_line(key, spec, data):
    """Through the run's own check (fif.train.components.check_config's first step), before any data is read."""
    value = data.draw(_out_of_range(spec), label=key)
    cfg = copy.deepcopy(_composed())
    *parents, last = key.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[last] = value
    with pytest.raises(FifError) as error:
        check_run_options(cfg)
    message = str(error.value)
    assert "\n" not in message and re.match(rf"{re.escape(key)}=", message), message


def test_every_preset_passes_the_declarations():
    for preset in sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml")):
        check_run_options(compose([f"experiment={preset}"]))


@pytest.mark.parametrize("method, key, spec", _numeric_options(), ids=lambda v: v if isinstance(v, str) else "")
@settings(max_examples=15, deadline=None, database=None)
@given(data=st.data())
def test_a_declared_option_refuses_what_its_declaration_refuses_in_one_line(method, key, spec, data):
    value = data.draw(_out_of_range(spec), label=key)
    if spec.nullable and value is None:
        return
    block = copy.deepcopy(_composed_block(method))
    relative = key.removeprefix(f"continual.{method}.").split(".")
    node = block
    for part in relative[:-1]:
        node = node[part]
    node[relative[-1]] = value
    with pytest.raises(FifError) as error:
        METHODS[method].Options.from_block(block, f"continual.{method}", owner=method)
    message = str(error.value)
    assert "\n" not in message and re.match(rf"{re.escape(key)}=", message), message


README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_tables_are_generated_from_the_declarations():
    """The README's key and method tables are generated (`python -m fif.tools.options_doc --readme`):
    a renamed option, a changed default or a new method fails here until the README is regenerated."""
    from fif.tools.options_doc import readme_with_tables

    text = README.read_text()
    assert readme_with_tables(text) == text, "README.md is stale: run python -m fif.tools.options_doc --readme"
    declared = {key for key, _, _ in RunOptions.rows("")}
    keys = set(re.findall(r"^\| `([a-z0-9_.]+)` \|", text[:text.index("## Update methods")], flags=re.M))
    assert keys == declared | {"experiment"}, sorted(keys ^ (declared | {"experiment"}))
    methods = set(re.findall(r"^\| `([a-z_]+)` \| ", text[text.index("## Update methods"):], flags=re.M))
    builtin = {name for name, cls in METHODS.items() if cls.__module__.startswith("fif.")}
    assert methods == builtin, sorted(methods ^ builtin)
