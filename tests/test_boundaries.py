"""The API and the CLI talk to the engine only through its control interface
(``feedtag.runtime.control``): none of their modules imports ``feedtag.runtime.node`` or
names ``NodeEngine``, and ``runtime`` imports neither ``api`` nor ``cli``. Read from the
source (AST), so that a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import REPO

PACKAGE = REPO / "src" / "feedtag"
CONSUMERS = sorted([*(PACKAGE / "api").glob("*.py"), *(PACKAGE / "cli").glob("*.py")])


def imported_modules(tree: ast.AST) -> set[str]:
    """Every module an ``import`` or ``from ... import`` names, with ``from a import b``
    counted as both ``a`` and ``a.b`` (``b`` may be a module)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def names_used(tree: ast.AST) -> set[str]:
    """Every identifier: names, attributes, imported names and their aliases."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.alias):
            found.add(node.name.rsplit(".", 1)[-1])
            if node.asname:
                found.add(node.asname)
    return found


def test_the_consumers_are_found() -> None:
    names = {path.relative_to(PACKAGE).as_posix() for path in CONSUMERS}
    assert {"api/app.py", "api/metrics.py", "api/state.py", "cli/__init__.py", "cli/run.py"} <= (
        names
    )


@pytest.mark.parametrize("path", CONSUMERS, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_api_and_cli_never_reach_into_the_node_engine(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    imports = imported_modules(tree)
    assert "feedtag.runtime.node" not in imports
    assert "NodeEngine" not in names_used(tree)


@pytest.mark.parametrize(
    "source",
    [
        "from feedtag.runtime.node import NodeEngine",
        "from feedtag.runtime import node",
        "import feedtag.runtime.node as engine_module",
        "def f():\n    from feedtag.runtime.node import NodeEngine as Engine",
        "x = something.NodeEngine",
    ],
)
def test_the_check_sees_each_way_in(source: str) -> None:
    tree = ast.parse(source)
    assert "feedtag.runtime.node" in imported_modules(tree) or "NodeEngine" in names_used(tree)


def test_runtime_imports_neither_api_nor_cli() -> None:
    for path in sorted((PACKAGE / "runtime").glob("*.py")):
        imports = imported_modules(ast.parse(path.read_text()))
        wrong = {m for m in imports if m.startswith(("feedtag.api", "feedtag.cli"))}
        assert not wrong, f"{path.name} imports {sorted(wrong)}"
