"""pyproject.toml declares every third-party package the package imports: each top-level
import of ``src/feedtag`` (at module level, in functions, under ``TYPE_CHECKING``) is the
import name of a distribution in ``dependencies`` or in an optional extra."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "feedtag"
#: files that do not run in the package's environment, with why
NOT_IN_THE_ENVIRONMENT = {
    "bench/rtsp_server.py": "runs under Debian's /usr/bin/python3 with its GStreamer bindings",
}


def third_party_imports() -> dict[str, set[str]]:
    """Top-level import name -> the files (relative to the package) that import it."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative in NOT_IN_THE_ENVIRONMENT:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "feedtag" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(relative)
    return found


def declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {canonicalize_name(Requirement(text).name) for text in requirements}


def test_every_third_party_import_is_declared() -> None:
    imports = third_party_imports()
    assert {"numpy", "supervision", "yaml"} <= set(imports)  # the scan sees real imports
    distributions = importlib.metadata.packages_distributions()
    declared = declared_distributions()
    undeclared = []
    for name, files in sorted(imports.items()):
        providers = {canonicalize_name(d) for d in distributions.get(name, [])}
        if not providers & declared:
            provided_by = ", ".join(sorted(providers)) or "no installed distribution"
            undeclared.append(f"{name} ({provided_by}) imported by {', '.join(sorted(files))}")
    assert not undeclared, "imported but not in pyproject.toml:\n  " + "\n  ".join(undeclared)
