"""The chapters with exercises: their student editions are current, and every check cell works both ways.

A check must *fail* on the empty template (otherwise it accepts anything) and *pass* with the
worked solution (otherwise it rejects a correct answer). Both notebooks run in a fresh kernel with
the repository root as working directory and ``VAEAS_FAST=1``. Chapter 8 is all exercises and runs
whole; a lesson chapter runs its setup cell and its exercises section only (the rest of it is
executed by the notebook test).
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "book" / "make_student_edition.py"
#: chapter -> (number of code exercises, whether the whole notebook is exercises)
CHAPTERS = {"01_vae.ipynb": (0, False), "02_mutual_information.ipynb": (0, False), "03_collapse.ipynb": (0, False),
            "04_vaeas.ipynb": (0, False), "05_comparison_mnist.ipynb": (2, False), "06_omniglot.ipynb": (1, False),
            "07_total_collapse.ipynb": (3, False), "08_exercises.ipynb": (7, True)}
#: the chapters whose checks run (those with code exercises)
CODE_CHAPTERS = [name for name, (n_ex, _) in CHAPTERS.items() if n_ex]
#: sphinx-exercise's directives, as the chapters write them (colon fences)
EXERCISE = re.compile(r"^:::\{exercise\} \S.*\n:label: (ex-[a-z]+-[a-z0-9-]+)$", re.M)
SOLUTION = re.compile(r"^:::\{solution\} (ex-[a-z]+-[a-z0-9-]+)\n:class: dropdown$", re.M)
CHECK_ERRORS = ("AssertionError", "NotImplementedError")


def _script():
    spec = importlib.util.spec_from_file_location("make_student_edition", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def _code_cells(nb, tag: str) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and tag in _tags(c)]


def _require_mnist() -> None:
    from vaeas.data import DataError, find_root

    try:
        find_root("mnist")
    except DataError as exc:
        pytest.skip(f"MNIST not available for exercise 7: {exc}")


def _execute(nb, allow_errors: bool) -> None:
    """Run ``nb`` in place in a fresh python3 kernel at the repository root, in fast mode."""
    env = {"VAEAS_FAST": "1", "OMP_NUM_THREADS": "1"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=allow_errors,
                                         record_timing=False, resources={"metadata": {"path": str(ROOT)}})
        client.execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _errors(cell) -> list:
    return [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


# ----------------------------------------------------------------------------- the files
def test_check_mode_detects_a_stale_edition(tmp_path, capsys):
    script = _script()
    target = tmp_path / "08_exercises.ipynb"
    assert script.main(["--check", "--target", str(target)]) == 1          # missing
    assert script.main(["--target", str(target)]) == 0                     # written
    assert script.main(["--check", "--target", str(target)]) == 0          # current
    first = target.read_bytes()
    assert script.main(["--target", str(target)]) == 0
    assert target.read_bytes() == first, "the student edition must be byte-for-byte deterministic"
    target.write_text(first.decode("utf-8").replace("exercise 1: your code here", "edited"), encoding="utf-8")
    capsys.readouterr()
    assert script.main(["--check", "--target", str(target)]) == 1          # stale
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1 and "out of date" in out


def test_every_chapter_with_exercises_has_a_current_student_edition():
    script = _script()
    assert set(script.CHAPTERS) == set(CHAPTERS)
    for name in CHAPTERS:
        expected = script.render((ROOT / "book" / name).read_text(encoding="utf-8"), name)
        target = ROOT / "student" / name
        assert target.exists() and target.read_text(encoding="utf-8") == expected, (
            f"student/{name} is missing or out of date; run: python book/make_student_edition.py")
        assert f"book/{name}" in expected


@pytest.mark.parametrize("name", list(CHAPTERS))
def test_structure_of_book_and_student_edition(name):
    n_ex = CHAPTERS[name][0]
    book = nbformat.read(ROOT / "book" / name, as_version=4)
    templates, solutions, checks = (_code_cells(book, t) for t in ("template", "solution", "check"))
    assert len(templates) == len(solutions) == len(checks) == n_ex
    ids = [c.id for c in book.cells]
    for n, (t, s, c) in enumerate(zip(templates, solutions, checks, strict=True), start=1):
        # the solution comes right after its template (and redefines the function), the check after both
        assert ids.index(s.id) == ids.index(t.id) + 1 and ids.index(c.id) > ids.index(s.id), f"exercise {n}"
        assert "hide-input" in _tags(s), f"exercise {n}: solutions are tagged hide-input (a toggle in the book)"
        assert "NotImplementedError" in t.source, f"exercise {n}: the template should raise NotImplementedError"
    for cell in book.cells:
        if "solution" in _tags(cell):
            assert "hide-input" in _tags(cell), f"solution cell {cell.id} must also be tagged hide-input"
    student = nbformat.read(ROOT / "student" / name, as_version=4)
    nbformat.validate(student)
    assert not [c for c in student.cells if "solution" in _tags(c)], "the student edition contains solutions"
    assert len(_code_cells(student, "template")) == len(_code_cells(student, "check")) == n_ex
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {cell.id} has outputs"


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_exercise_is_numbered_and_has_a_hidden_solution(name):
    """sphinx-exercise's convention: each exercise a labelled {exercise}, each followed by its
    {solution} (a dropdown) in a cell tagged solution, which the student edition drops."""
    book = nbformat.read(ROOT / "book" / name, as_version=4)
    exercises, solutions = [], []
    for cell in book.cells:
        if cell.cell_type != "markdown":
            continue
        found = SOLUTION.findall(cell.source)
        if found:
            assert {"solution", "hide-input"} <= _tags(cell), f"cell {cell.id}: a solution cell is tagged solution"
            assert not EXERCISE.findall(cell.source), f"cell {cell.id}: an exercise and a solution in one cell"
        solutions += found
        exercises += EXERCISE.findall(cell.source)
    assert len(exercises) >= 2, f"{name}: at least two exercises"
    assert len(set(exercises)) == len(exercises), f"{name}: duplicate labels {exercises}"
    assert solutions == exercises, f"{name}: every exercise needs one solution, in order: {exercises} vs {solutions}"
    slug = {e.split("-")[1] for e in exercises}
    assert len(slug) == 1, f"{name}: one chapter slug in the labels, got {slug}"
    student = nbformat.read(ROOT / "student" / name, as_version=4)
    text = "\n".join(c.source for c in student.cells)
    assert EXERCISE.findall(text) == exercises and not SOLUTION.findall(text), f"student/{name}"


def _exercise_part(nb, whole: bool):
    """The cells a check test runs: all of them, or the setup cell and the exercises section."""
    if whole:
        return nb
    start = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "## Exercises" in c.source)
    setup = next(c for c in nb.cells if c.cell_type == "code")
    nb.cells = [setup, *nb.cells[start:]]
    return nb


# ----------------------------------------------------------------------------- the checks
@pytest.mark.parametrize("name", CODE_CHAPTERS)
def test_every_check_fails_on_the_empty_template(name):
    n_ex, whole = CHAPTERS[name]
    if whole:
        _require_mnist()
    text = _script().render((ROOT / "book" / name).read_text(encoding="utf-8"), name)
    student = _exercise_part(nbformat.reads(text, as_version=4), whole)
    _execute(student, allow_errors=True)
    checks = 0
    for cell in student.cells:
        if cell.cell_type != "code":
            continue
        errors = _errors(cell)
        if "check" in _tags(cell):
            checks += 1
            assert errors, f"check cell {cell.id} passed on the empty template: it accepts anything"
            assert errors[0]["ename"] in CHECK_ERRORS, (
                f"check cell {cell.id} failed with {errors[0]['ename']}: {errors[0]['evalue']}")
            assert "✓ correct" not in _stdout(cell)
        else:
            assert not errors, f"cell {cell.id} raised {errors[0]['ename']}: {errors[0]['evalue']}"
    assert checks == n_ex


@pytest.mark.parametrize("name", CODE_CHAPTERS)
def test_every_check_passes_with_the_solution(name):
    n_ex, whole = CHAPTERS[name]
    if whole:
        _require_mnist()
    book = _exercise_part(nbformat.read(ROOT / "book" / name, as_version=4), whole)
    _execute(book, allow_errors=False)  # raises CellExecutionError, with the traceback, on any failure
    checks = _code_cells(book, "check")
    assert len(checks) == n_ex
    for cell in checks:
        assert "✓ correct" in _stdout(cell), f"check cell {cell.id} did not print ✓ correct"
