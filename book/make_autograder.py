"""Export the book's exercises to otter-grader assignments: public tests, hidden tests, an autograder.

Run from anywhere in the repository (needs ``pip install -e ".[course]"``, which brings otter-grader 7)::

    python book/make_autograder.py assign                    # every chapter with exercises
    python book/make_autograder.py assign 08_exercises       # one chapter (name with or without .ipynb)
    python book/make_autograder.py assign --out DIR          # default: _build/autograder
    python book/make_autograder.py assign --no-run-tests     # skip otter's own grading of the solutions
    python book/make_autograder.py assign --master-only      # write the otter master notebooks, stop there

    VAEAS_DATA=/path/to/datasets python book/make_autograder.py grade 08_exercises submissions/*.ipynb

``assign`` builds one otter master notebook per chapter (otter's v1 format: raw ``# ASSIGNMENT
CONFIG``, ``# BEGIN QUESTION`` ... cells) from the same tagged cells as the student edition
(``book/make_student_edition.py``) and runs ``otter assign`` on it. For a chapter ``C`` it writes
``DIR/C/master/C.ipynb`` (the master and its support files) and what ``otter assign`` makes of it:

* ``DIR/C/student/C.ipynb``: the notebook to hand out. Each exercise is a question named after the
  function it asks for; its answer cell is the book's ``template`` cell, followed by
  ``grader.check("<function>")``, which runs the public tests.
* ``DIR/C/autograder/C.ipynb`` (the solutions) and ``DIR/C/autograder/C-autograder_<time>.zip``, the
  autograder that ``otter run`` (one notebook, no Docker) or ``grade`` below uses.

The pieces of a question: the statement (the Markdown, and any code cell such as exercise 7's
broken run, between the previous exercise and the template); the ``template`` cell, with the
``solution`` cell after it in a ``# BEGIN SOLUTION NO PROMPT`` block, so that the solutions notebook
runs both (as the book does) and the student notebook keeps the template only; the ``check`` cell
as the public test (1 point); and the hidden tests of ``book/autograder_tests/<C>.py`` (1 point
shared among them). Tests use otter's exception-based format: each test is a function whose
parameters are the notebook names its code reads (the student's function, ``torch``, ...), found
with :mod:`symtable`. The Markdown solution notes are left out. A lesson chapter (one with an
``## Exercises`` section) contributes its first code cell (the setup) and that section only, as
``tests/test_exercises.py`` runs it; the setup keeps everything but the ``os.chdir("..")`` that
finds the repository root, because the assignment folder carries the data files its checks read
(``SUPPORT_FILES``).

``grade`` grades submissions with otter's non-containerised runner (what ``otter run`` does), one
notebook after the other, in the current Python environment, and writes ``grades.csv`` (one row
per submission, one column per exercise). Neither command needs Docker or a network connection;
exercise 7 of chapter 8 needs MNIST (``$VAEAS_DATA`` or ``./data``).
"""

from __future__ import annotations

import argparse
import ast
import builtins
import csv
import json
import os
import re
import shutil
import subprocess
import symtable
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The chapters with code exercises (template, solution and check cells), in book order. (Chapters 1-4
#: have pen-and-paper exercises only: nothing to grade automatically.)
CHAPTERS = ("05_comparison_mnist.ipynb", "06_omniglot.ipynb", "07_total_collapse.ipynb", "08_exercises.ipynb")
HIDDEN_TESTS = Path(__file__).resolve().parent / "autograder_tests"
DEFAULT_OUT = ROOT / "_build" / "autograder"
#: Files (relative to the repository root) that a chapter's checks read; copied next to the notebooks.
SUPPORT_FILES = {"05_comparison_mnist.ipynb": ("results/images-long", "results/configs/images_long.json"),
                 "06_omniglot.ipynb": ("results/images-long", "results/configs/images_long.json"),
                 "07_total_collapse.ipynb": ("results/sequence",)}
#: Points per exercise: the public test (the book's check) and the hidden tests together.
PUBLIC_POINTS, QUESTION_POINTS = 1, 2
#: Installed by otter's Docker/Gradescope image (``otter run`` and ``grade`` use the current environment).
REQUIREMENTS = ["vaeas @ git+https://github.com/vaeas/vaeas"]

NOTE = (
    "*Autograded edition.* This notebook is generated from `book/{name}` by "
    "`python book/make_autograder.py`; edit the book notebook, not this file. Fill in each answer "
    "cell (replace the `raise NotImplementedError(...)` line) and run the `grader.check(...)` cell "
    "below it: it runs the public tests, the book's check. Hidden tests on other inputs run when "
    "your notebook is graded."
)
CHDIR = re.compile(r"^if [^\n]*\n[ \t]+os\.chdir\(\"\.\.\"\)[^\n]*\n", re.M)
EXERCISES_HEADING = re.compile(r"^## Exercises\s*$", re.M)
#: Where an exercise's statement starts: a heading "## Exercise 3" (with its MyST label) or the opening
#: fence of a sphinx-exercise directive, ":::{exercise} Title" (or with backticks).
EXERCISE_HEADING = re.compile(
    r"^(?:\([\w-]+\)=\n)?(?:#{2,3} Exercise \d+|(?::{3,}|`{3,})\{exercise(?:-start)?\})", re.M)
DROPPED_LINES = re.compile(r"^# check of exercise.*\n|^print\(\"✓ correct\"\)\n?", re.M)


# ----------------------------------------------------------------------------- reading the book
def _text(source: str | list[str]) -> str:
    return "".join(source) if isinstance(source, list) else source


def _tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def _defined_function(code: str, where: str) -> str:
    """The name of the (last) function that ``code`` defines at top level."""
    defs = [n.name for n in ast.parse(code).body if isinstance(n, ast.FunctionDef)]
    if not defs:
        raise ValueError(f"{where}: the template cell defines no function")
    return defs[-1]


@dataclass
class Exercise:
    """One exercise of a chapter: ``name`` is the function its template defines."""

    name: str
    statement: list[dict]
    template: str
    solution: str
    check: str
    hidden: list[tuple[str, str]] = field(default_factory=list)  # (test name, code)


@dataclass
class Chapter:
    name: str
    title: str
    kernelspec: dict
    #: the cells of the master in order: ("cell", cell) or ("exercise", Exercise)
    items: list[tuple[str, object]]
    #: True for a chapter of exercises (taken whole), False for a lesson chapter's exercises section
    whole: bool = True

    @property
    def exercises(self) -> list[Exercise]:
        return [item for kind, item in self.items if kind == "exercise"]


def _md(source: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def _code(source: str) -> dict:
    return {"cell_type": "code", "metadata": {}, "source": source, "outputs": [], "execution_count": None}


def _raw(source: str) -> dict:
    return {"cell_type": "raw", "metadata": {}, "source": source}


def _clean(cell: dict) -> dict:
    """A book cell for the master: its source (and attachments), no metadata, no outputs."""
    new = {"cell_type": cell["cell_type"], "metadata": {}, "source": cell["source"]}
    if cell["cell_type"] == "code":
        new.update(outputs=[], execution_count=None)
    elif "attachments" in cell:
        new["attachments"] = cell["attachments"]
    return new


def _part(cells: list[dict]) -> list[dict]:
    """All cells of an exercises chapter; of a lesson chapter, the setup cell and the exercises section."""
    start = next((i for i, c in enumerate(cells)
                  if c["cell_type"] == "markdown" and EXERCISES_HEADING.search(_text(c["source"]))), None)
    if start is None:
        return [{**c, "source": _text(c["source"])} for c in cells]
    setup = next(c for c in cells if c["cell_type"] == "code")
    heading = _text(cells[start]["source"])
    first = {**cells[start], "source": heading[EXERCISES_HEADING.search(heading).start():]}
    return [{**setup, "source": _text(setup["source"])}, first,
            *({**c, "source": _text(c["source"])} for c in cells[start + 1:])]


def _split_statement(cell: dict) -> list[dict]:
    """A Markdown cell that ends with an exercise's statement, cut in two at the exercise's heading."""
    text = cell["source"]
    starts = [m.start() for m in EXERCISE_HEADING.finditer(text)]
    if not starts or starts[-1] == 0:
        return [cell]
    return [{**cell, "source": text[:starts[-1]].rstrip() + "\n"}, {**cell, "source": text[starts[-1]:]}]


def read_chapter(name: str, book_text: str | None = None, hidden_text: str | None = None) -> Chapter:
    """The exercises of ``book/<name>`` (with their hidden tests) and the cells around them."""
    if book_text is None:
        book_text = (ROOT / "book" / name).read_text(encoding="utf-8")
    book = json.loads(book_text)
    cells = _part(book["cells"])
    whole = len(cells) == len(book["cells"])
    first_md = next((c["source"] for c in book["cells"] if c["cell_type"] == "markdown"), "")
    title = next((line[2:].strip() for line in _text(first_md).splitlines() if line.startswith("# ")), name)
    setup = cells[0] if cells[0]["cell_type"] == "code" else next(c for c in cells if c["cell_type"] == "code")
    setup["source"] = CHDIR.sub("", setup["source"])  # the assignment folder is the working directory

    items: list[tuple[str, object]] = []
    i = 0
    while i < len(cells):
        cell = cells[i]
        tags = _tags(cell)
        if "template" not in tags:
            if "solution" in tags:  # the solution notes (Markdown) stay in the book
                i += 1
                continue
            items.append(("cell", cell))
            i += 1
            continue
        where = f"book/{name}, cell {cell.get('id', i)}"
        solution, check = (cells[i + 1:i + 3] + [None, None])[:2]
        if solution is None or "solution" not in _tags(solution) or solution["cell_type"] != "code":
            raise ValueError(f"{where}: the template must be followed by its solution cell")
        if check is None or "check" not in _tags(check):
            raise ValueError(f"{where}: the solution must be followed by its check cell")
        # the statement: the cells since the last Markdown cell before the template
        back = len(items)
        while back > 0 and items[back - 1][0] == "cell" and items[back - 1][1]["cell_type"] != "markdown":
            back -= 1
        if back == 0 or items[back - 1][0] != "cell":
            raise ValueError(f"{where}: no Markdown statement between the previous exercise and the template")
        head = _split_statement(items[back - 1][1])
        statement = [head[-1], *(c for _, c in items[back:])]
        items[back - 1:] = [("cell", c) for c in head[:-1]]
        exercise = Exercise(_defined_function(cell["source"], where), statement, cell["source"],
                            solution["source"], check["source"])
        items.append(("exercise", exercise))
        i += 3

    names = [e.name for e in (item for kind, item in items if kind == "exercise")]
    if len(set(names)) != len(names):
        raise ValueError(f"book/{name}: two exercises define the same function: {names}")
    chapter = Chapter(name, title, book.get("metadata", {}).get("kernelspec", {}), items, whole)
    _attach_hidden_tests(chapter, hidden_text)
    return chapter


def _attach_hidden_tests(chapter: Chapter, text: str | None) -> None:
    """Read ``book/autograder_tests/<chapter>.py``: each top-level ``def <function>__<what>():`` is a test."""
    path = HIDDEN_TESTS / (Path(chapter.name).stem + ".py")
    if text is None:
        text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    by_name = {e.name: e for e in chapter.exercises}
    for node in ast.parse(text).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        target, sep, _ = node.name.partition("__")
        if not sep or target not in by_name:
            raise ValueError(f"{path.name}: {node.name}() names no exercise of {chapter.name} "
                             f"(expected <function>__<what>, function one of {', '.join(by_name)})")
        if node.args.args or node.args.vararg or node.args.kwarg or node.args.kwonlyargs:
            raise ValueError(f"{path.name}: {node.name}() must take no arguments (names come from the notebook)")
        body = textwrap.dedent("".join(lines[node.body[0].lineno - 1:node.end_lineno]))
        by_name[target].hidden.append((node.name, body))
    missing = [e.name for e in chapter.exercises if not e.hidden]
    if missing:
        raise ValueError(f"{path.name}: no hidden test for {', '.join(missing)}")


# ----------------------------------------------------------------------------- the master notebook
def free_names(code: str) -> list[str]:
    """The names that ``code``, run as a function body, reads from its globals (builtins excepted)."""
    table = symtable.symtable("def _f():\n" + textwrap.indent(code, "    ") + "\n", "<test>", "exec")
    found: set[str] = set()

    def walk(scope: symtable.SymbolTable) -> None:
        for symbol in scope.get_symbols():
            if symbol.is_global() and symbol.is_referenced():
                found.add(symbol.get_name())
        for child in scope.get_children():
            walk(child)

    walk(table.get_children()[0])
    return sorted(found - set(dir(builtins)))


def test_cell(function: str, code: str, hidden: bool, points: float | None = None) -> str:
    """An otter exception-based test cell: the config, a function of the names ``code`` reads, its call."""
    code = DROPPED_LINES.sub("", code).strip("\n") + "\n"
    params = ", ".join(free_names(code))
    config = [f"hidden: {'true' if hidden else 'false'}"] + ([f"points: {points}"] if points is not None else [])
    return ('""" # BEGIN TEST CONFIG\n' + "\n".join(config) + '\n""" # END TEST CONFIG\n'
            f"def {function}({params}):\n{textwrap.indent(code, '    ')}\n{function}({params})")


def master_notebook(chapter: Chapter) -> dict:
    """The otter master notebook (v1 format) of a chapter, as an nbformat-4 dict."""
    config = {
        "name": f"vaeas-{Path(chapter.name).stem}",
        "init_cell": True,
        "check_all_cell": False,
        "export_cell": False,
        "solutions_pdf": False,
        "requirements": REQUIREMENTS,
        "generate": {"pdf": False, "show_stdout": True, "show_hidden": False},
        "tests": {"files": False, "ok_format": False},
    }
    files = SUPPORT_FILES.get(chapter.name, ())
    if files:
        config["files"] = sorted({Path(f).parts[0] for f in files})
    title = "" if chapter.whole else f"# {chapter.title}\n\n"  # a whole chapter keeps its own title cell
    cells = [_raw("# ASSIGNMENT CONFIG\n" + _yaml(config)), _md(title + NOTE.format(name=chapter.name))]
    for kind, item in chapter.items:
        if kind == "cell":
            cells.append(_clean(item))
            continue
        ex: Exercise = item  # type: ignore[assignment]
        cells.append(_raw(f"# BEGIN QUESTION\nname: {ex.name}\npoints: {QUESTION_POINTS}"))
        cells.extend(_clean(c) for c in ex.statement)
        cells.append(_raw("# BEGIN SOLUTION"))
        cells.append(_code(ex.template.rstrip("\n") + "\n# BEGIN SOLUTION NO PROMPT\n"
                           + ex.solution.rstrip("\n") + "\n# END SOLUTION"))
        cells.append(_raw("# END SOLUTION"))
        cells.append(_raw("# BEGIN TESTS"))
        cells.append(_code(test_cell(f"public_{ex.name}", ex.check, hidden=False, points=PUBLIC_POINTS)))
        cells.extend(_code(test_cell(f"hidden_{test}", code, hidden=True)) for test, code in ex.hidden)
        cells.append(_raw("# END TESTS"))
        cells.append(_raw("# END QUESTION"))
    for n, cell in enumerate(cells):
        cell["id"] = f"otter-{n}"
    return {"cells": cells, "metadata": {"kernelspec": chapter.kernelspec} if chapter.kernelspec else {},
            "nbformat": 4, "nbformat_minor": 5}


def _yaml(value: object, indent: int = 0) -> str:
    """Enough YAML for the assignment config (dicts, lists, scalars), without a YAML library."""
    pad = " " * indent
    if isinstance(value, dict):
        out = ""
        for key, v in value.items():
            if isinstance(v, dict | list):
                out += f"{pad}{key}:\n{_yaml(v, indent + 2)}"
            else:
                out += f"{pad}{key}: {json.dumps(v)}\n"
        return out
    return "".join(f"{pad}- {json.dumps(v)}\n" for v in value)  # type: ignore[union-attr]


def write_master(chapter: Chapter, folder: Path) -> Path:
    """Write the master notebook and its support files into ``folder`` (emptied first)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for rel in SUPPORT_FILES.get(chapter.name, ()):
        source, target = ROOT / rel, folder / rel
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    path = folder / chapter.name
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(master_notebook(chapter), indent=1, ensure_ascii=False) + "\n")
    return path


# ----------------------------------------------------------------------------- commands
def _chapter_name(name: str) -> str:
    full = name if name.endswith(".ipynb") else name + ".ipynb"
    if full not in CHAPTERS:
        raise SystemExit(f"unknown chapter {name!r}; chapters with exercises: {', '.join(CHAPTERS)}")
    return full


def autograder_zip(folder: Path) -> Path:
    """The newest autograder zip that ``otter assign`` wrote under ``folder/autograder``."""
    zips = sorted((folder / "autograder").glob("*-autograder_*.zip"))
    if not zips:
        raise FileNotFoundError(f"no autograder zip under {folder / 'autograder'}; run: "
                                f"python book/make_autograder.py assign {folder.name}")
    return zips[-1]


def assign(name: str, out: Path, run_tests: bool = True, master_only: bool = False) -> Path:
    """Build ``out/<chapter>/``: the master notebook, then (unless ``master_only``) ``otter assign``."""
    chapter = read_chapter(name)
    folder = out / Path(name).stem
    master = write_master(chapter, folder / "master")
    print(f"wrote {master} ({len(chapter.exercises)} questions, "
          f"{sum(len(e.hidden) for e in chapter.exercises)} hidden tests)")
    if master_only:
        return folder
    command = [sys.executable, "-m", "otter", "assign", "--no-pdfs", str(master), str(folder)]
    if not run_tests:
        command.insert(-2, "--no-run-tests")
    subprocess.run(command, check=True, cwd=folder)
    print(f"wrote {folder / 'student' / name} (hand out) and {autograder_zip(folder)} (grade with)")
    return folder


def grade(name: str, submissions: list[Path], out: Path, csv_path: Path | None) -> list[dict]:
    """Grade ``submissions`` with the autograder of ``out/<chapter>`` (no Docker); one row per submission."""
    from otter.api import grade_submission

    zip_path = autograder_zip(out / Path(name).stem)
    # otter grades in a temporary folder, where ./data is not the repository's: point vaeas at it
    if not os.environ.get("VAEAS_DATA") and Path("data").is_dir():
        os.environ["VAEAS_DATA"] = str(Path("data").resolve())
    rows = []
    for path in submissions:
        row: dict = {"file": str(path)}
        try:
            results = grade_submission(str(path), str(zip_path), quiet=True)
        except Exception as exc:  # another chapter's notebook, not a notebook, ...: report it, go on
            row.update(total=0, error=f"{type(exc).__name__}: {exc}")
            rows.append(row)
            print(f"{path}: not graded ({row['error']})")
            continue
        for question, result in sorted(results.results.items()):
            row[question] = round(result.score, 3)
        row["total"], row["possible"] = round(results.total, 3), results.possible
        rows.append(row)
        print(f"{path}: {row['total']:g} / {row['possible']:g}")
    if csv_path is not None and rows:
        columns = list(dict.fromkeys(key for row in rows for key in row))
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {csv_path}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p_assign = commands.add_parser("assign", help="build the otter assignment of each chapter")
    p_assign.add_argument("chapters", nargs="*", help=f"default: all ({', '.join(CHAPTERS)})")
    p_assign.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    p_assign.add_argument("--no-run-tests", action="store_true",
                          help="do not let otter grade the solutions notebook after building")
    p_assign.add_argument("--master-only", action="store_true",
                          help="write the master notebooks only (no otter assign)")
    p_grade = commands.add_parser("grade", help="grade submissions of one chapter locally, without Docker")
    p_grade.add_argument("chapter")
    p_grade.add_argument("submissions", nargs="+", type=Path)
    p_grade.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where assign wrote (default: %(default)s)")
    p_grade.add_argument("--csv", type=Path, default=Path("grades.csv"), help="default: %(default)s")
    args = parser.parse_args(argv)
    if args.command == "assign":
        for name in [_chapter_name(c) for c in args.chapters] or list(CHAPTERS):
            assign(name, args.out.resolve(), run_tests=not args.no_run_tests, master_only=args.master_only)
        return 0
    grade(_chapter_name(args.chapter), args.submissions, args.out.resolve(), args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
