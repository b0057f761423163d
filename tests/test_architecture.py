"""The shape of src/fif, read with ast (nothing is imported, no torch): layers, cycles, function size.

- Layers: a module imports only its own layer or lower ones (imports inside functions count).
  A module's layer is the first component after ``fif.`` (``fif/config/settings.py`` -> config).
- Cycles: no two modules import each other, directly or through others (module-level and
  function-level imports both count).
- Size: no function has more than MAX_LOGIC_LINES lines of logic (non-blank, non-comment lines of
  its body, docstring excluded; nested functions count towards the function holding them).
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "fif"
# Bottom to top: a module may import its own layer and any lower one.
LAYERS: list[set[str]] = [
    {"errors", "utils", "runtime", "config", "results"},
    {"models", "tracking", "optim"},
    {"data"},
    {"eval"},
    {"methods"},
    {"budget"},
    {"train"},
    {"tools", "report"},
    {"studies"},  # grids of runs over seeds, judged and reported (fif.report)
    {"cli"},
]
# Inside fif.data: what each sub-package (or module directly in fif/data) may use of the others. The
# on-disk format is the bottom; the run-time sample path and the embedded mini benchmark both build
# on it, not on each other; roots (where a run's data comes from) may build the mini benchmark.
DATA_USES: dict[str, set[str]] = {"format": set(), "samples": {"format"}, "mini": {"format"},
                                  "roots": {"format", "samples", "mini"}, "reference": set(),
                                  "fetch": set(), "pool_folder": {"samples"}, "pool_build": {"pool_folder"}}
MAX_LOGIC_LINES = 60


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported fif module (a submodule where ``from package import submodule``)
    where: str  # file:line, the file relative to the folder holding src/


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules(src: Path = SRC) -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    return {module_name(path, src): path for path in sorted((src / ROOT).rglob("*.py"))}


@cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    """The absolute module a (possibly relative) ``from X import`` names."""
    if not node.level:
        return node.module or ""
    base = name.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(src: Path = SRC) -> list[Import]:
    """Every import of a fif module anywhere in a module (top level, functions, classes, branches)."""
    known = modules(src)
    found = []
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, name, is_package)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
            else:
                continue
            for target in dict.fromkeys(targets):  # ``from a import b, c``: one edge per module
                if target == ROOT or target.startswith(ROOT + "."):
                    while target not in known and "." in target:  # ``import fif.a.b`` of a name, not a module
                        target = target.rsplit(".", 1)[0]
                    found.append(Import(name, target, f"{path.relative_to(src.parent)}:{node.lineno}"))
    return found


def layer(module: str) -> int:
    """The index in LAYERS of a module (the package root and unknown components: see the tests)."""
    parts = module.split(".")
    if len(parts) == 1:  # fif/__init__.py: importing any fif module runs it, so it sits at the bottom
        return 0
    for index, group in enumerate(LAYERS):
        if parts[1] in group:
            return index
    raise KeyError(parts[1])


def describe_layer(module: str) -> str:
    index = layer(module)
    return f"layer {index} ({', '.join(sorted(LAYERS[index]))})"


def layer_violations(src: Path = SRC) -> list[str]:
    out = []
    for imp in imports(src):
        if layer(imp.target) > layer(imp.source):
            out.append(f"{imp.where}: {imp.source} [{describe_layer(imp.source)}] imports {imp.target} "
                       f"[{describe_layer(imp.target)}]")
            continue
        source, target = imp.source.split("."), imp.target.split(".")
        if source[1:2] == target[1:2] == ["data"]:
            sub, used = (source[2] if len(source) > 2 else None), (target[2] if len(target) > 2 else None)
            if used is not None and sub != used and used not in DATA_USES.get(sub, set()):
                out.append(f"{imp.where}: {imp.source} imports {imp.target} (fif.data.{sub} may use only "
                           f"{', '.join(sorted(f'fif.data.{u}' for u in DATA_USES.get(sub, set()))) or 'itself'})")
    return out


def cycles(src: Path = SRC) -> list[str]:
    """One cycle path per strongly connected group of modules (Tarjan), with where each edge is."""
    edges: dict[str, dict[str, Import]] = {name: {} for name in modules(src)}
    for imp in imports(src):
        if imp.target != imp.source:
            edges[imp.source].setdefault(imp.target, imp)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_cycle_path(group, edges) for group in groups]


def _cycle_path(group: list[str], edges: dict[str, dict[str, Import]]) -> str:
    """The shortest cycle through the group's first module (breadth-first inside the group)."""
    start, members = group[0], set(group)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(edges[node]):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    path.reverse()
                    path.append(start)
                    return " -> ".join(f"{a} ({edges[a][b].where})" for a, b in zip(path, path[1:])) + f" -> {start}"
                if nxt in members and nxt not in previous and nxt != start:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # unreachable for a strongly connected group


def _code_lines(text: str) -> set[int]:
    """Line numbers holding a token of code (not only a comment, blank space or a line break)."""
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in skip:
            lines.update(range(token.start[0], token.end[0] + 1))
    return lines


def logic_lines(function: ast.FunctionDef | ast.AsyncFunctionDef, code: set[int]) -> int:
    """Lines of code in the function's body after its docstring."""
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    if not body:
        return 0
    return len([n for n in range(body[0].lineno, function.end_lineno + 1) if n in code])


def long_functions(src: Path = SRC, limit: int = MAX_LOGIC_LINES) -> list[str]:
    out = []
    for path in modules(src).values():
        code = _code_lines(path.read_text())
        for node in ast.walk(parsed(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                count = logic_lines(node, code)
                if count > limit:
                    out.append(f"{path.relative_to(src.parent)}:{node.lineno}: {node.name} has {count} lines of "
                               f"logic (at most {limit})")
    return out


# ----------------------------------------------------------------------------- the rules
def test_every_top_level_component_has_a_layer():
    unknown = set()
    for name in modules():
        try:
            layer(name)
        except KeyError as error:
            unknown.add(f"fif.{error.args[0]}")
    assert not unknown, f"add these to a layer in tests/test_architecture.py: {', '.join(sorted(unknown))}"
    parts = {name.split(".")[2] for name in modules() if name.startswith(f"{ROOT}.data.")}
    assert parts <= set(DATA_USES), f"add to DATA_USES: {', '.join(sorted(parts - set(DATA_USES)))}"


def test_no_module_imports_a_higher_layer():
    found = layer_violations()
    assert not found, "imports of a higher layer:\n" + "\n".join(found)


def test_no_import_cycles():
    found = cycles()
    assert not found, "import cycles:\n" + "\n".join(found)


def test_no_function_is_over_the_size_limit():
    found = long_functions()
    assert not found, f"functions over {MAX_LOGIC_LINES} lines of logic:\n" + "\n".join(found)


# ----------------------------------------------------------------------------- the checks themselves
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "src"


def test_the_checks_catch_planted_violations(tmp_path):
    long_body = "\n".join(f"    x{i} = {i}  # a comment" for i in range(MAX_LOGIC_LINES + 1))
    src = _tree(tmp_path, {
        "fif/__init__.py": "",
        "fif/errors.py": "def boom():\n    from fif.train import loop\n",
        "fif/train/__init__.py": "",
        "fif/train/loop.py": "from fif.errors import boom\nfrom fif.data.samples import batches\n",
        "fif/data/__init__.py": "",
        "fif/data/format/__init__.py": "",
        "fif/data/format/info.py": "from ..samples.batches import Batch\n",
        "fif/data/samples/__init__.py": "",
        "fif/data/samples/batches.py": "class Batch:\n    pass\n",
        "fif/data/mini/__init__.py": "",
        "fif/data/mini/build.py": "from fif.data.format import info\nfrom fif.data.samples import batches\n",
        "fif/budget/__init__.py": "",
        "fif/budget/plan.py": (f'def long():\n    """Doc.\n\n    More doc.\n    """\n{long_body}\n\n'
                               f'def short():\n    # only comments\n\n' + "    y = 1\n" * MAX_LOGIC_LINES),
    })
    assert sorted(layer_violations(src)) == sorted([
        "src/fif/errors.py:2: fif.errors [layer 0 (config, errors, results, runtime, utils)] imports "
        "fif.train.loop [layer 6 (train)]",
        "src/fif/data/format/info.py:1: fif.data.format.info imports fif.data.samples.batches "
        "(fif.data.format may use only itself)",
        "src/fif/data/mini/build.py:2: fif.data.mini.build imports fif.data.samples.batches "
        "(fif.data.mini may use only fif.data.format)",
    ])
    assert cycles(src) == ["fif.errors (src/fif/errors.py:2) -> fif.train.loop (src/fif/train/loop.py:1) -> fif.errors"]
    assert long_functions(src) == [f"src/fif/budget/plan.py:1: long has {MAX_LOGIC_LINES + 1} lines of logic "
                                   f"(at most {MAX_LOGIC_LINES})"]


@pytest.mark.parametrize("text, expected", [
    ("def f():\n    '''doc'''\n    return 1\n", 1),
    ("def f():\n    s = '''\n\n# not a comment\n'''\n    return s\n", 5),
    ("def f():\n    def g():\n        pass\n    # note\n\n    return g\n", 3),
])
def test_logic_lines_skip_blanks_comments_and_the_docstring(text, expected):
    function = ast.parse(text).body[0]
    assert logic_lines(function, _code_lines(text)) == expected


# The raw config (omegaconf) stays with the command line and the config package; below them modules
# get typed settings (fif.config.settings.RunSettings). The run may be handed the composed config
# (its type named under `if TYPE_CHECKING:` only) and turns it into settings at once.


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks (imports for annotations, never run)."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            inside |= {id(child) for statement in node.body for child in ast.walk(statement)}
    return inside


def test_only_the_command_line_and_the_config_package_read_the_raw_config():
    readers = set()
    for name, path in modules().items():
        tree = parsed(path)
        annotations_only = _type_checking_only(tree)
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if id(node) not in annotations_only and any(n == "omegaconf" or n.startswith("omegaconf.") for n in names):
                readers.add(name)
    below = {n for n in readers if not n.startswith(("fif.cli", "fif.config"))}
    assert not below, sorted(below)
