"""The house rules of the package, checked on its source: small modules, short functions, one
direction of imports (files -> tensors -> models -> objectives -> metrics -> train -> cli)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vaeas"
MODULES = sorted(PACKAGE.glob("*.py"))

# Each module may import only the modules listed before it in this order (lower layers).
ORDER = ["io", "runtime", "distributions", "datasets", "corpora", "data", "heads", "sequence", "models", "objectives",
         "metrics", "posterior", "diagnose", "train", "tables", "results", "report", "plots", "sweep", "cli",
         "__main__", "__init__"]


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _package_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.add((node.module or "").split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vaeas."):
            names.add(node.module.split(".")[1])
    return names - {""}


def test_every_module_has_a_place_in_the_layer_order():
    assert {p.stem for p in MODULES} <= set(ORDER)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_is_short(path):
    assert len(path.read_text().splitlines()) <= 600


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_functions_are_short(path):
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(_tree(path))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 70]
    assert not long, long


# sweep reads the train command's own parser to validate configs (one list of options): the one
# upward import, done inside a function.
ALLOWED_UPWARD = {("sweep", "cli")}


@pytest.mark.parametrize("path", [p for p in MODULES if p.stem != "__init__"], ids=lambda p: p.name)
def test_imports_go_one_way(path):
    rank = ORDER.index(path.stem)
    upward = {m for m in _package_imports(path) if ORDER.index(m) > rank and (path.stem, m) not in ALLOWED_UPWARD}
    assert not upward, f"{path.name} imports higher layers {sorted(upward)}"


def test_metrics_and_diagnose_read_only_the_protocol():
    for name in ("metrics", "diagnose"):
        assert not _package_imports(PACKAGE / f"{name}.py") & {"models", "heads", "sequence", "data", "datasets"}
