"""The layer rules of ``/work/shared/DESIGN.md`` ("Layout") and ``docs/architecture.md``,
checked on the imports of every module under ``src/feedtag``: at module level, inside
functions and under ``TYPE_CHECKING`` alike. A failure names the module, the line and the
import that breaks the rule."""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SOURCE / "feedtag"

#: modules beside the layers, importable by all of them (docs/architecture.md)
BASE = {"feedtag", "core", "errors", "urls", "addresses", "files", "samples"}
#: the data flow, left to right: a layer may import the layers to its left, the base
#: modules and ``config`` (DESIGN.md: "A layer imports only from layers to its left in the
#: data flow and from core, errors, config")
DATA_FLOW = ("ingest", "vision", "analytics", "store", "alerts")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    line: int
    target: str  # the imported module, dotted

    def layer(self) -> str:
        return _layer(self.module)

    def target_layer(self) -> str:
        return _layer(self.target)

    def __str__(self) -> str:
        path = self.module.replace(".", "/")
        return f"{path}.py:{self.line} imports {self.target}"


def _layer(module: str) -> str:
    parts = module.split(".")
    return "feedtag" if len(parts) == 1 else parts[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    base = SOURCE.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports_of(path: Path) -> list[Import]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            # ``from feedtag.vision import registry`` imports feedtag.vision.registry
            targets = [
                f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base
                for alias in node.names
            ]
        else:
            continue
        found += [
            Import(module, node.lineno, target)
            for target in targets
            if target == "feedtag" or target.startswith("feedtag.")
        ]
    return found


def all_imports() -> list[Import]:
    return [item for path in sorted(PACKAGE.rglob("*.py")) for item in _imports_of(path)]


def allowed_layers(layer: str) -> set[str] | None:
    """The layers ``layer`` may import besides itself; None: any."""
    if layer in BASE:
        return set(BASE)
    if layer == "config":
        return BASE | {"config"}  # config may not import a data-flow layer
    if layer in DATA_FLOW:
        return BASE | {"config", *DATA_FLOW[: DATA_FLOW.index(layer)]}
    if layer == "runtime":  # wires the data flow; never api, cli or bench
        return BASE | {"config", *DATA_FLOW}
    return None


def _broken(rule: str, offenders: list[Import]) -> str:
    return f"{rule}:\n  " + "\n  ".join(str(item) for item in offenders)


def test_the_scan_sees_imports_of_every_kind() -> None:
    imports = {(item.module, item.target) for item in all_imports()}
    assert ("feedtag.cli.run", "feedtag.api.app") in imports  # inside a function
    assert ("feedtag.runtime.detection", "feedtag.vision.registry") in imports  # from-import
    assert ("feedtag.vision.registry", "feedtag.vision.modelbuild.default_model") in imports
    assert ("feedtag.config.loading", "feedtag.config.models") in imports


def test_nothing_imports_api_or_cli() -> None:
    offenders = [
        item
        for item in all_imports()
        if (item.target_layer() == "api" and item.layer() not in {"api", "cli"})
        or (item.target_layer() == "cli" and item.layer() != "cli")
    ]
    assert not offenders, _broken("only cli imports api; nothing imports cli", offenders)


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [("vision", "bench"), ("store", "runtime")],
)
def test_named_pairs(layer: str, forbidden: str) -> None:
    offenders = [
        item for item in all_imports() if item.layer() == layer and item.target_layer() == forbidden
    ]
    assert not offenders, _broken(f"{layer} imports no {forbidden}", offenders)


def test_layers_import_only_to_their_left() -> None:
    offenders = []
    for item in all_imports():
        allowed = allowed_layers(item.layer())
        target = item.target_layer()
        if allowed is not None and target != item.layer() and target not in allowed:
            offenders.append(item)
    assert not offenders, _broken(
        "base modules import only base modules, config only those, each data-flow layer "
        f"({' -> '.join(DATA_FLOW)}) only the ones to its left, runtime no api, cli or bench",
        offenders,
    )


def test_only_cli_imports_bench() -> None:
    offenders = [
        item
        for item in all_imports()
        if item.target_layer() == "bench" and item.layer() not in {"bench", "cli"}
    ]
    assert not offenders, _broken("bench measures runtime; only cli imports it", offenders)


def test_the_package_never_imports_the_rtsp_server_script() -> None:
    offenders = [item for item in all_imports() if item.target == "feedtag.bench.rtsp_server"]
    assert not offenders, _broken("bench/rtsp_server.py runs as a process", offenders)


def test_model_build_tooling_is_imported_only_on_demand() -> None:
    """The Darknet converter and the quantizer are build tooling: only the registry (when a
    build is needed) and the ``feedtag models`` facade import them."""
    importers = {"feedtag.vision.registry", "feedtag.vision.models"}
    offenders = [
        item
        for item in all_imports()
        if item.target.startswith("feedtag.vision.modelbuild")
        and not item.module.startswith("feedtag.vision.modelbuild")
        and item.module not in importers
    ]
    assert not offenders, _broken(
        "only the registry and vision.models import modelbuild", offenders
    )


def test_the_runtime_detector_path_does_not_load_the_build_tooling() -> None:
    """Nor the onnx package (0.4 s and 17 MB per process): only a build, or the GPU probe
    where ONNX Runtime lists a GPU provider, needs it."""
    script = (
        "import sys\n"
        "import feedtag.api.app, feedtag.runtime.detection, feedtag.runtime.node\n"
        "print(sorted(m for m in sys.modules if m.startswith(("
        "'feedtag.vision.modelbuild', 'onnxruntime.quantization', 'feedtag.bench'))"
        " or m == 'onnx'))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={"PYTHONPATH": str(SOURCE), "PATH": "/usr/bin:/bin"},
    ).stdout.strip()
    assert loaded == "[]", f"loading the runtime loads build or bench modules: {loaded}"
