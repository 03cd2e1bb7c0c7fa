"""The house rules that keep nlbench easy to change (issue 27), checked on nlbench's own source: every received
YAML through nlbench.yamlsafe, one name per module, imports in one direction without cycles (function-level imports
included), every module in a layer of the import-linter contract, one owner for the record's vocabulary."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "nlbench"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(path): path for path in SOURCES}


def _imports(path: Path) -> list[tuple[ast.AST, str, str | None]]:
    """(node, imported module or name, alias) for every import statement, at any depth (function-level too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node, alias.name, alias.asname) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node, f"{node.module}.{alias.name}", alias.asname) for alias in node.names]
    return found


# ---- received YAML ----------------------------------------------------------------------------------------------
YAML_LOADERS = {
    "load",
    "safe_load",
    "full_load",
    "unsafe_load",
    "load_all",
    "safe_load_all",
    "full_load_all",
    "unsafe_load_all",
    "compose",
    "compose_all",
    "parse",
    "scan",
}


def yaml_loads_outside_yamlsafe(sources: list[Path], root: Path = REPO) -> list[str]:
    """``yaml.<loader>(...)`` calls (and loaders imported by name) anywhere but nlbench/yamlsafe.py."""
    bad = []
    for path in sources:
        if path.name == "yamlsafe.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in YAML_LOADERS
                and isinstance(node.value, ast.Name)
                and node.value.id == "yaml"
            ):
                bad.append(f"{path.relative_to(root)}:{node.lineno}: yaml.{node.attr}")
            elif isinstance(node, ast.ImportFrom) and node.module == "yaml":
                bad += [
                    f"{path.relative_to(root)}:{node.lineno}: from yaml import {a.name}"
                    for a in node.names
                    if a.name in YAML_LOADERS
                ]
    return bad


def test_every_yaml_load_goes_through_yamlsafe() -> None:
    assert yaml_loads_outside_yamlsafe(SOURCES) == []


def test_the_yaml_check_finds_a_plain_load(tmp_path: Path) -> None:
    (tmp_path / "reader.py").write_text("import yaml\n\ndef f(p):\n    return yaml.safe_load(open(p))\n")
    (tmp_path / "other.py").write_text("from yaml import load_all\n")
    sources = [tmp_path / "reader.py", tmp_path / "other.py"]
    assert yaml_loads_outside_yamlsafe(sources, root=tmp_path) == [
        "reader.py:4: yaml.safe_load",
        "other.py:1: from yaml import load_all",
    ]


# ---- names -------------------------------------------------------------------------------------------------------
def test_module_names_are_unique_across_the_package() -> None:
    names: dict[str, list[str]] = {}
    for path in SOURCES:
        if path.name not in ("__init__.py", "__main__.py"):
            names.setdefault(path.stem, []).append(str(path.relative_to(REPO)))
    assert {name: paths for name, paths in names.items() if len(paths) > 1} == {}


def test_nlbench_modules_are_imported_under_their_own_name() -> None:
    """``from nlbench import run as run_`` is how one module came to have four names; names of functions and
    classes may be aliased, modules may not."""
    bad = [
        f"{path.relative_to(REPO)}:{node.lineno}: {name} as {alias}"
        for path in SOURCES
        for node, name, alias in _imports(path)
        if alias and name in MODULES and alias != name.rsplit(".", 1)[-1]
    ]
    assert bad == []


# ---- layers and cycles ---------------------------------------------------------------------------------------------
def _layers() -> list[list[str]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    [contract] = [c for c in config["contracts"] if c["type"] == "layers"]
    return [[m.strip() for m in layer.replace("|", ":").split(":")] for layer in contract["layers"]]


def test_every_top_level_module_is_in_a_layer() -> None:
    """A module outside every layer would escape the contract (import-linter's layers are not exhaustive)."""
    placed = {module for layer in _layers() for module in layer}
    top = {".".join(module.split(".")[:2]) for module in MODULES if module != "nlbench"}
    assert sorted(top - placed) == [] and sorted(placed - top) == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(edges):
        if node not in index:
            visit(node)
    return found


def import_edges() -> dict[str, set[str]]:
    """module -> the nlbench modules it imports, function-level imports included (a name imported from a package
    counts as the package unless it is a submodule)."""
    edges: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = set()
        for _, name, _ in _imports(path):
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        edges[module] = targets
    return edges


def test_no_import_cycle_counting_function_level_imports() -> None:
    assert _cycles(import_edges()) == []


def test_the_cycle_check_finds_a_function_level_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_import_linter_contracts_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    """`make lint` runs lint-imports; this runs the same contracts, so `make test` alone also catches a layer
    violation."""
    pytest.importorskip("importlinter")
    import importlinter.cli  # noqa: F401  (configures import-linter's adapters, as the lint-imports command does)
    from importlinter.application.use_cases import lint_imports

    kept = lint_imports(config_filename=str(REPO / "pyproject.toml"), cache_dir=None, no_logo=True)
    assert kept, capsys.readouterr().out[-3000:]


# ---- one owner for the vocabulary ----------------------------------------------------------------------------------
def test_the_schema_is_the_one_place_that_spells_the_record_fields() -> None:
    """The flat config keys of the record's fields appear in nlbench's source only in nlbench/schema.py (and the
    classes that define the options), so a new field is one row of its table."""
    from nlbench import schema

    keys = [field.key for field in schema.FIELDS if field.key.startswith(("model.", "trainer.", "data."))]
    # Not the record's vocabulary: benchmarks write synthetic configs, and the sweep's cost estimate reads the
    # parsed config of runs that have no record yet.
    elsewhere = ("nlbench/schema.py", "nlbench/bench/", "nlbench/sweep/eta.py", "nlbench/sweep_command.py")
    bad = [
        f"{path.relative_to(REPO)}: {key}"
        for path in SOURCES
        if not str(path.relative_to(REPO)).startswith(elsewhere)
        for key in keys
        if f'"{key}"' in path.read_text()
    ]
    assert bad == []


def test_design_doc_shows_the_schema_table() -> None:
    from nlbench import schema

    text = (REPO / "docs" / "design.md").read_text()
    missing = [
        f.name for f in schema.FIELDS if f.name not in schema.NL_FIELDS and f"| `{f.name}` | `{f.key}` |" not in text
    ]
    assert missing == []
