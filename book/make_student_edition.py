"""Write the student editions of the chapters with exercises: each book notebook without its solutions.

Run from anywhere in the repository::

    python book/make_student_edition.py            # writes student/<chapter>.ipynb for every CHAPTERS entry
    python book/make_student_edition.py --check    # exit 1 if any of those files is out of date

A student edition keeps every cell of ``book/<chapter>.ipynb`` except those tagged ``solution`` (the
solution code cells and the Markdown cells that hold a ``{solution}`` directive),
clears all outputs and execution counts, keeps only the ``tags`` of each cell's metadata and puts a
note on top saying where the file comes from. The output is deterministic: the same book notebook
always gives the same bytes (sorted keys, one-space indent and one line per list item of
``source``, as ``nbformat`` writes notebooks). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The chapters with exercises, in book order: every lesson chapter ends with an Exercises section
#: (pen-and-paper exercises with hidden solutions; chapters 5-8 also have template, solution and check cells).
CHAPTERS = ("01_vae.ipynb", "02_mutual_information.ipynb", "03_collapse.ipynb", "04_vaeas.ipynb",
            "05_comparison_mnist.ipynb", "06_omniglot.ipynb", "07_total_collapse.ipynb", "08_exercises.ipynb")
SOURCE = Path("book") / CHAPTERS[-1]
TARGET = Path("student") / CHAPTERS[-1]
SOLUTION_TAG = "solution"

NOTE = (
    "*Student edition.* This notebook is generated from `book/{name}` by "
    "`python book/make_student_edition.py`; edit the book notebook, not this file. Fill in each "
    "template cell (replace the `raise NotImplementedError(...)` line), then run the check cell "
    "below it: it prints `✓ correct` or tells you what is wrong."
)
#: The note of a chapter whose exercises are all on paper (no template cell).
NOTE_PAPER = (
    "*Student edition.* This notebook is generated from `book/{name}` by "
    "`python book/make_student_edition.py`; edit the book notebook, not this file. The exercises "
    "at the end of the chapter are worked on paper; their solutions are left out of this edition."
)


def _text(source: str | list[str]) -> str:
    return "".join(source) if isinstance(source, list) else source


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def render(book_text: str, name: str = CHAPTERS[-1]) -> str:
    """The student edition (as the text of an .ipynb file) of the book notebook ``name`` given as text."""
    book = json.loads(book_text)
    has_code = any("template" in c.get("metadata", {}).get("tags", []) for c in book["cells"])
    cells: list[dict] = [{"cell_type": "markdown", "id": "student-edition", "metadata": {},
                          "source": _lines((NOTE if has_code else NOTE_PAPER).format(name=name))}]
    for i, cell in enumerate(book["cells"]):
        tags = list(cell.get("metadata", {}).get("tags", []))
        if SOLUTION_TAG in tags:
            continue
        new = {
            "cell_type": cell["cell_type"],
            "id": cell.get("id", f"cell-{i}"),
            "metadata": {"tags": tags} if tags else {},
            "source": _lines(_text(cell.get("source", ""))),
        }
        if cell["cell_type"] == "code":
            new["execution_count"] = None
            new["outputs"] = []
        elif "attachments" in cell:
            new["attachments"] = cell["attachments"]
        cells.append(new)
    meta = book.get("metadata", {})
    student = {
        "cells": cells,
        "metadata": {key: meta[key] for key in ("kernelspec", "language_info") if key in meta},
        "nbformat": 4,
        "nbformat_minor": max(5, int(book.get("nbformat_minor", 5))),
    }
    return json.dumps(student, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def _write_or_check(source: Path, target: Path, shown: str, check: bool) -> int:
    text = render(source.read_text(encoding="utf-8"), source.name)
    if check:
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current != text:
            state = "is missing" if current is None else "is out of date"
            print(f"{shown} {state}; run: python book/make_student_edition.py")
            return 1
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(f"wrote {shown}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if a student edition differs from what would be written")
    parser.add_argument("--source", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--target", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.source is not None or args.target is not None:  # one notebook (tests)
        source = args.source or ROOT / SOURCE
        target = args.target or ROOT / "student" / source.name
        return _write_or_check(source, target, target.name, args.check)
    codes = [_write_or_check(ROOT / "book" / name, ROOT / "student" / name, f"student/{name}", args.check)
             for name in CHAPTERS]
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
