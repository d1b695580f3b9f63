"""The house rules of the book's figures, checked on every committed chapter notebook ``book/0*.ipynb``.

A chapter renders in a column of about 7 in (676 CSS px), so a wider figure is shrunk and its text
becomes unreadable (issue "A book that reads like a finished book", point 1). The rules checked here:

1. every ``image/png`` output is at most ``round(plots.FIG_WIDTH * 150)`` = 1050 px wide (the style
   draws at 150 dpi; the width is read from the PNG header);
2. no code cell asks for a figure wider than :data:`vaeas.plots.FIG_WIDTH` (a literal ``figsize=(w, h)``,
   ``set_size_inches(w, h)``, ``set_figwidth(w)`` or ``rcParams["figure.figsize"]``) or for a font
   smaller than :data:`vaeas.plots.MIN_FONT` (a literal ``fontsize=``/``labelsize=``/``titlesize=``,
   ``size=`` of a text call, ``set_fontsize(...)``, a ``prop``/``fontdict`` or rcParams entry, or a named
   size below ``medium``).

Each check is a small function that returns a list of problems (empty: the notebook follows the rule);
the synthetic notebooks at the end show that each check can fail.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import re
import struct
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from vaeas import plots  # noqa: E402

BOOK = Path(__file__).resolve().parents[1] / "book"
NOTEBOOKS = sorted(BOOK.glob("0*.ipynb"))
#: The resolution of the book's figures (plots.use_style) and the widest PNG it allows.
DPI = 150
MAX_PNG_WIDTH = round(plots.FIG_WIDTH * DPI)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

MAGIC = re.compile(r"^(\s*)[%!]")
#: Keyword arguments that set a font size in any matplotlib call.
FONT_KEYWORDS = {"fontsize", "labelsize", "titlesize", "title_fontsize"}
#: Calls whose ``size=`` is a font size (elsewhere, e.g. ``rng.integers(0, 9, size=3)``, it is not).
TEXT_CALLS = {"text", "annotate", "figtext", "title", "set_title", "suptitle", "supxlabel", "supylabel",
              "xlabel", "ylabel", "set_xlabel", "set_ylabel", "legend", "set_xticklabels", "set_yticklabels",
              "setp", "FontProperties", "table", "clabel", "colorbar"}
#: Methods whose first argument is a font size.
FONT_SETTERS = {"set_fontsize", "set_size"}
#: Keyword arguments that take a dict of font properties.
FONT_DICTS = {"prop", "fontdict", "title_fontproperties"}
#: matplotlib's named sizes below ``medium`` (= font.size, the style's MIN_FONT).
SMALL_NAMES = {"xx-small", "x-small", "small", "smaller"}
#: rcParams keys of a font size ("font.size", "legend.fontsize", "xtick.labelsize", "axes.titlesize", ...).
RC_FONT_KEY = re.compile(r"^[\w.]+\.(?:size|fontsize|labelsize|titlesize|title_fontsize)$")
NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
#: The fallback for a cell that is not Python (a cell magic, a syntax error): literal numbers only.
FONT_RE = re.compile(r"\b(?:fontsize|labelsize|titlesize|title_fontsize)\s*=\s*" + NUMBER
                     + r"|\bset_(?:font)?size\(\s*" + NUMBER)
WIDTH_RE = re.compile(r"\bfigsize\s*=\s*[(\[]\s*" + NUMBER + r"|\bset_size_inches\(\s*\(?\s*" + NUMBER
                      + r"|\bset_figwidth\(\s*" + NUMBER)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels from the IHDR chunk that opens every PNG."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    return struct.unpack(">II", data[16:24])


def _text(value: str | list[str]) -> str:
    return "".join(value) if isinstance(value, list) else value


def png_width_problems(nb: dict) -> list[str]:
    """One line per ``image/png`` output wider than MAX_PNG_WIDTH pixels."""
    problems = []
    for i, cell in enumerate(nb["cells"]):
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png is None:
                continue
            width, height = png_size(base64.b64decode(_text(png)))
            if width > MAX_PNG_WIDTH:
                problems.append(f"cell {i}: a {width} x {height} px image, wider than {MAX_PNG_WIDTH} px "
                                f"({plots.FIG_WIDTH:g} in at {DPI} dpi)")
    return problems


def _number(node: ast.AST | None) -> float | None:
    """The value of a literal int or float, else None (names and expressions are not checked)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return float(node.value)
    return None


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _font(node: ast.AST, what: str) -> list[str]:
    """A problem if ``node`` is a literal font size below MIN_FONT or a named size below medium."""
    value = _number(node)
    if value is not None and value < plots.MIN_FONT:
        return [f"{what}={value:g}, below MIN_FONT = {plots.MIN_FONT} pt"]
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in SMALL_NAMES:
        return [f"{what}={node.value!r}, below MIN_FONT = {plots.MIN_FONT} pt"]
    return []


def _width(node: ast.AST | None, what: str) -> list[str]:
    """A problem if ``node`` is a literal width, or a literal (width, height), above FIG_WIDTH."""
    if isinstance(node, ast.Tuple | ast.List) and node.elts:
        node = node.elts[0]
    value = _number(node)
    if value is not None and value > plots.FIG_WIDTH:
        return [f"{what} width {value:g} in, above FIG_WIDTH = {plots.FIG_WIDTH:g} in"]
    return []


def _rc_entry(key: ast.AST | None, value: ast.AST) -> list[str]:
    """rcParams-style entries: ``"font.size": 8``, ``"figure.figsize": (9, 3)``."""
    if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
        return []
    if key.value == "figure.figsize":
        return _width(value, "figure.figsize")
    return _font(value, key.value) if RC_FONT_KEY.match(key.value) else []


def _font_dict(node: ast.AST, what: str) -> list[str]:
    """``prop={"size": 8}`` or ``prop=dict(size=8)``."""
    entries = []
    if isinstance(node, ast.Dict):
        entries = [(k.value, v) for k, v in zip(node.keys, node.values, strict=True)
                   if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    elif isinstance(node, ast.Call) and _call_name(node) == "dict":
        entries = [(kw.arg, kw.value) for kw in node.keywords if kw.arg]
    return [p for k, v in entries if k in ("size", "fontsize") for p in _font(v, f"{what}[{k!r}]")]


def _python_problems(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _call_name(node)
            for kw in node.keywords:
                if kw.arg in FONT_KEYWORDS or (kw.arg == "size" and name in TEXT_CALLS):
                    found += [(node.lineno, p) for p in _font(kw.value, kw.arg)]
                elif kw.arg == "figsize":
                    found += [(node.lineno, p) for p in _width(kw.value, "figsize")]
                elif kw.arg in FONT_DICTS:
                    found += [(node.lineno, p) for p in _font_dict(kw.value, kw.arg)]
            first = node.args[0] if node.args else None
            if name in FONT_SETTERS and first is not None:
                found += [(node.lineno, p) for p in _font(first, name)]
            elif name in ("set_size_inches", "set_figwidth") and first is not None:
                found += [(node.lineno, p) for p in _width(first, name)]
        elif isinstance(node, ast.Dict):
            found += [(node.lineno, p) for k, v in zip(node.keys, node.values, strict=True) for p in _rc_entry(k, v)]
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Subscript):
                    found += [(node.lineno, p) for p in _rc_entry(target.slice, node.value)]
    return found


def _regex_problems(source: str) -> list[tuple[int, str]]:
    found = []
    for lineno, line in enumerate(source.splitlines(), 1):
        for m in FONT_RE.finditer(line):
            value = float(m.group(1) or m.group(2))
            if value < plots.MIN_FONT:
                found.append((lineno, f"font size {value:g}, below MIN_FONT = {plots.MIN_FONT} pt"))
        for m in WIDTH_RE.finditer(line):
            value = float(next(g for g in m.groups() if g))
            if value > plots.FIG_WIDTH:
                found.append((lineno, f"figure width {value:g} in, above FIG_WIDTH = {plots.FIG_WIDTH:g} in"))
    return found


def source_problems(nb: dict) -> list[str]:
    """One line per literal figure width above FIG_WIDTH or font size below MIN_FONT in a code cell.

    A cell is parsed as Python (IPython line magics and shell lines become ``pass``); a cell that does
    not parse (a cell magic, a syntax error) is scanned with regular expressions instead."""
    problems = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = _text(cell["source"])
        python = "\n".join(MAGIC.sub(r"\1pass  # ", line) for line in source.splitlines())
        try:
            found = _python_problems(ast.parse(python))
        except SyntaxError:
            found = _regex_problems(source)
        problems += [f"cell {i}, line {lineno}: {p}" for lineno, p in sorted(set(found))]
    return problems


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- the committed notebooks
def test_the_book_has_notebooks():
    assert len(NOTEBOOKS) >= 8, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_png_outputs_fit_the_column(path):
    problems = png_width_problems(load(path))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_asks_for_no_wide_figure_or_small_font(path):
    problems = source_problems(load(path))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


# ----------------------------------------------------------------------------- each check can fail
def png_bytes(width_px: int, height_px: int = 200) -> bytes:
    """A real PNG drawn by matplotlib, ``width_px`` x ``height_px`` pixels."""
    fig, ax = plt.subplots(figsize=(width_px / 100, height_px / 100), dpi=100)
    ax.plot([0, 1], [0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def notebook(*cells: dict) -> dict:
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def code_cell(source: str, pngs: tuple[bytes, ...] = ()) -> dict:
    outputs = [{"output_type": "display_data", "metadata": {},
                "data": {"image/png": base64.b64encode(png).decode() + "\n", "text/plain": ["<Figure>"]}}
               for png in pngs]
    return {"cell_type": "code", "id": "c", "metadata": {}, "execution_count": 1, "outputs": outputs,
            "source": source.splitlines(keepends=True)}


def test_png_size_reads_the_header():
    assert png_size(png_bytes(1400, 300)) == (1400, 300)
    with pytest.raises(ValueError):
        png_size(b"GIF89a" + bytes(30))


def test_png_width_check_catches_a_wide_image():
    nb = notebook(code_cell("plt.show()", (png_bytes(MAX_PNG_WIDTH),)),
                  {"cell_type": "markdown", "id": "m", "metadata": {}, "source": ["text"]},
                  code_cell("plt.show()", (png_bytes(700), png_bytes(1400))))
    problems = png_width_problems(nb)
    assert len(problems) == 1 and problems[0].startswith("cell 2: a 1400 x 200 px image"), problems


WIDE = ["fig, ax = plt.subplots(figsize=(12, 3))", "fig = plt.figure(figsize=[7.5, 3])", "fig.set_size_inches(8, 4.4)",
        "fig.set_size_inches((9, 4))", "fig.set_figwidth(7.2)", 'plt.rcParams["figure.figsize"] = (10, 4)']
SMALL = ["ax.legend(fontsize=8, frameon=False)", "ax.text(0, 0, 'a', fontsize=9.5)", "ax.set_title('a', size=9)",
         "ax.title.set_fontsize(9)", "ax.tick_params(labelsize=8)", "ax.legend(prop={'size': 8})",
         "ax.legend(prop=dict(size=7))", "ax.text(0, 0, 'a', fontsize='small')", 'plt.rcParams["font.size"] = 8',
         'plt.rcParams.update({"legend.fontsize": 9})']


@pytest.mark.parametrize(("source", "message"), [(s, "above FIG_WIDTH") for s in WIDE]
                         + [(s, "below MIN_FONT") for s in SMALL])
def test_source_check_catches_a_wide_figure_or_a_small_font(source, message):
    problems = source_problems(notebook(code_cell(source)))
    assert len(problems) == 1 and message in problems[0], problems


def test_source_check_on_a_cell_with_both_and_magics():
    cell = code_cell("%matplotlib inline\nfig, ax = plt.subplots(figsize=(12, 3))\n!ls\nax.legend(fontsize=8)\n")
    assert source_problems(notebook(code_cell("x = 1"), cell)) == [
        "cell 1, line 2: figsize width 12 in, above FIG_WIDTH = 7 in",
        "cell 1, line 4: fontsize=8, below MIN_FONT = 10 pt"]


def test_source_check_falls_back_to_regex_on_non_python():
    cell = code_cell("%%time\nfig, ax = plt.subplots(figsize = (12, 3))\nax.legend(fontsize = 8\n")
    problems = source_problems(notebook(cell))
    assert problems == ["cell 0, line 2: figure width 12 in, above FIG_WIDTH = 7 in",
                        "cell 0, line 3: font size 8, below MIN_FONT = 10 pt"], problems


def test_source_check_accepts_what_the_rules_allow():
    source = "\n".join([
        "fig, ax = plt.subplots(figsize=(7, 3))",
        "fig, ax = plt.subplots(figsize=(plots.FIG_WIDTH, 3))",
        "ax.legend(fontsize=10, loc='upper left', bbox_to_anchor=(1.02, 1))",
        "ax.set_title('a', fontsize=plots.MIN_FONT, size=12)",
        "ax.text(0, 0, 'a', fontsize='large')",
        "ax.scatter(x, y, s=2)",
        "ax.plot(x, y, 'o', ms=4, markersize=3, lw=0.8)",
        "idx = rng.integers(0, 9, size=3)",
        "batches = loader(batch_size=8, size=4)",
        "size = n if batch_size is None else batch_size",
    ])
    assert source_problems(notebook(code_cell(source))) == []
