"""The book's notebooks are readers of the package: every code cell compiles, and no top-level function
is defined in two different notebooks (a helper two chapters need belongs in ``vaeas``).

Within one notebook a name may be defined twice (the exercise templates and their
solutions); the student edition (``student/``) is generated from the book and not checked here.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
MAGIC = re.compile(r"^(\s*)[%!]")


def cell_sources(path: Path) -> list[str]:
    """The Python source of each code cell: IPython line magics and shell lines (``%pip``, ``!ls``)
    become ``pass`` at the same indentation; cell magics (``%%bash``) are skipped."""
    cells = json.loads(path.read_text())["cells"]
    out = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if src.lstrip().startswith("%%"):
            continue
        out.append("\n".join(MAGIC.sub(r"\1pass  # ", line) if MAGIC.match(line) else line
                             for line in src.splitlines()))
    return out


def _module_scope(body: list[ast.stmt]) -> Iterable[ast.stmt]:
    """The statements that run in the notebook's namespace: the cell's, and those nested in its
    ``if``/``for``/``while``/``with``/``try`` blocks (not those inside functions or classes)."""
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.For | ast.AsyncFor | ast.While | ast.With | ast.AsyncWith | ast.Try):
            for block in ("body", "orelse", "finalbody"):
                yield from _module_scope(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                yield from _module_scope(handler.body)


def top_level_functions(source: str) -> set[str]:
    """Names a cell binds to a function in the notebook's namespace: ``def``/``async def`` and
    ``name = lambda ...``, also inside ``if``/``for``/``with``/``try`` blocks."""
    names = set()
    for node in _module_scope(ast.parse(source).body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def duplicated_functions(paths: Iterable[Path]) -> dict[str, list[str]]:
    """``{function name: [notebooks]}`` for every name defined in more than one notebook."""
    where: dict[str, set[str]] = {}
    for path in paths:
        for src in cell_sources(path):
            for name in top_level_functions(src):
                where.setdefault(name, set()).add(path.name)
    return {name: sorted(nbs) for name, nbs in sorted(where.items()) if len(nbs) > 1}


def test_the_book_has_notebooks():
    assert len(NOTEBOOKS) >= 7, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_code_cell_compiles(path):
    for i, src in enumerate(cell_sources(path)):
        try:
            ast.parse(src)
        except SyntaxError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{path.name}, code cell {i}: {exc}")


def test_no_function_is_defined_in_two_notebooks():
    dups = duplicated_functions(NOTEBOOKS)
    assert not dups, "functions defined in more than one notebook (move them into vaeas): " + "; ".join(
        f"{name} in {', '.join(nbs)}" for name, nbs in dups.items())


def _notebook(path: Path, *cells: str) -> Path:
    nb = {"cells": [{"cell_type": "code", "source": c, "metadata": {}, "outputs": []} for c in cells]
          + [{"cell_type": "markdown", "source": "def not_code(): pass", "metadata": {}}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))
    return path


def test_the_check_finds_a_helper_defined_in_two_notebooks(tmp_path):
    a = _notebook(tmp_path / "a.ipynb", "import os\nif os.sep:\n    %pip install x\n\ndef table(h, rows):\n    pass",
                  "pm = lambda s: str(s)\ndef only_here(): pass\ndef only_here(): return 1")
    b = _notebook(tmp_path / "b.ipynb", "def table(h, rows, digits=2):\n    return None\n", "pm = lambda x: x",
                  "def not_top_level():\n    def only_here(): pass", "!ls\n%%bash is not python",
                  "if True:\n    for i in []:\n        sd = lambda v: v")
    c = _notebook(tmp_path / "c.ipynb", "try:\n    pass\nexcept Exception:\n    def sd(v): return v")
    assert duplicated_functions([a, b, c]) == {"pm": ["a.ipynb", "b.ipynb"], "sd": ["b.ipynb", "c.ipynb"],
                                               "table": ["a.ipynb", "b.ipynb"]}
    assert duplicated_functions([a]) == {}  # twice in one notebook (template and solution) is allowed
