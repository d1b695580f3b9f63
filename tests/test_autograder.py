"""The otter-grader export of the exercises (``book/make_autograder.py``).

For each chapter with exercises the assignment is built in a temporary folder, then graded with
otter's non-containerised runner (what ``otter run`` does: no Docker, no network): the solutions
notebook must score full marks, every public and hidden test passing, and the blank student
notebook, whose answer cells are the book's templates, must score zero. The student notebook is
checked against the book: its answer cells are the templates, and it holds neither solutions nor
hidden tests. Grading runs in fast mode (``VAEAS_FAST=1``); chapter 8 needs MNIST.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("otter")
nbformat = pytest.importorskip("nbformat")

# otter 7 calls DataFrame.drop(inplace=True), which pandas 3 deprecates
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "book" / "make_autograder.py"
#: chapter -> number of exercises
CHAPTERS = {"05_comparison_mnist.ipynb": 2, "06_omniglot.ipynb": 1, "07_total_collapse.ipynb": 3,
            "08_exercises.ipynb": 7}


def _script():
    if "make_autograder" not in sys.modules:  # dataclasses look their module up in sys.modules
        spec = importlib.util.spec_from_file_location("make_autograder", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["make_autograder"] = module
        spec.loader.exec_module(module)
    return sys.modules["make_autograder"]


def _tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


# ----------------------------------------------------------------------------- the generator alone
def test_every_exercise_has_a_public_and_hidden_tests():
    script = _script()
    assert set(script.CHAPTERS) == set(CHAPTERS)
    for name, n_ex in CHAPTERS.items():
        chapter = script.read_chapter(name)
        book = nbformat.read(ROOT / "book" / name, as_version=4)
        templates = [c.source for c in book.cells if "template" in _tags(c)]
        assert [e.template for e in chapter.exercises] == templates and len(templates) == n_ex
        master = script.master_notebook(chapter)
        sources = ["".join(c["source"]) for c in master["cells"]]
        assert not any('os.chdir("..")' in s for s in sources), "the setup must not leave the assignment folder"
        for ex in chapter.exercises:
            assert ex.hidden, ex.name
            assert sum(s.startswith('""" # BEGIN TEST CONFIG\nhidden: false') and f"def public_{ex.name}(" in s
                       for s in sources) == 1, ex.name


def test_the_generator_rejects_incomplete_hidden_tests():
    script = _script()
    with pytest.raises(ValueError, match="no hidden test for batch_bound, paired_interval, grid_posterior_mean"):
        script.read_chapter("07_total_collapse.ipynb", hidden_text="")
    with pytest.raises(ValueError, match="names no exercise"):
        script.read_chapter("07_total_collapse.ipynb", hidden_text="def batch_boundd__typo():\n    pass\n")


def test_free_names_are_the_globals_a_test_reads():
    code = ("from vaeas.heads import batch_nll\ng = torch.Generator()\nf = lambda v: math.log(v) + g.seed()\n"
            "vals = [np.mean(x) for x in range(3)]\nassert len(vals) == 3, batch_bound(g)\nprint(f(2))\n")
    assert _script().free_names(code) == ["batch_bound", "math", "np", "torch"]


def test_a_statement_starts_at_its_heading_with_its_label():
    cell = {"cell_type": "markdown", "source": "## Exercises\n\nIntro.\n\n(sec-x)=\n### Exercise 1: y\n\nStatement."}
    intro, statement = _script()._split_statement(cell)
    assert intro["source"] == "## Exercises\n\nIntro.\n" and statement["source"].startswith("(sec-x)=\n### Exercise 1")


def test_a_statement_starts_at_its_exercise_directive():
    text = "## Exercises\n\nIntro.\n\n:::{exercise} Y\n:label: ex-x-y\n\nStatement.\n:::"
    cell = {"cell_type": "markdown", "source": text}
    intro, statement = _script()._split_statement(cell)
    assert intro["source"] == "## Exercises\n\nIntro.\n" and statement["source"].startswith(":::{exercise} Y\n")
    alone = {"cell_type": "markdown", "source": ":::{exercise} Y\n:label: ex-x-y\n\nStatement.\n:::"}
    assert _script()._split_statement(alone) == [alone]


# ----------------------------------------------------------------------------- built and graded
@pytest.mark.parametrize("name", list(CHAPTERS))
def test_solutions_score_full_marks_and_templates_zero(name, tmp_path, monkeypatch):
    script = _script()
    n_ex = CHAPTERS[name]
    monkeypatch.setenv("VAEAS_FAST", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # the kernel runs in otter's temporary folder: it must import this checkout and find the data
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    if name == "08_exercises.ipynb":
        from vaeas.data import DataError, find_root

        try:
            monkeypatch.setenv("VAEAS_DATA", str(Path(find_root("mnist", download=False)).resolve()))
        except DataError as exc:
            pytest.skip(f"MNIST not available for exercise 7: {exc}")

    assert script.main(["assign", name, "--out", str(tmp_path), "--no-run-tests"]) == 0
    folder = tmp_path / Path(name).stem
    solutions, student = folder / "autograder" / name, folder / "student" / name

    # the student notebook: the book's templates as answer cells, no solutions, no hidden tests
    book = nbformat.read(ROOT / "book" / name, as_version=4)
    nb = nbformat.read(student, as_version=4)
    answers = [c.source for c in nb.cells if "otter_answer_cell" in _tags(c)]
    assert answers == [c.source.rstrip("\n") for c in book.cells if "template" in _tags(c)]
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "SOLUTION" not in code
    for cell in book.cells:
        if "solution" in _tags(cell) and cell.cell_type == "code":
            assert cell.source.strip() not in code, f"the solution {cell.id} is in the student notebook"
    tests = nb.metadata["otter"]["tests"]
    assert len(tests) == n_ex and all("hidden=False" in t and "hidden=True" not in t for t in tests.values())
    graded_tests = nbformat.read(solutions, as_version=4).metadata["otter"]["tests"]
    assert all("hidden=True" in t for t in graded_tests.values()), "every question has hidden tests"

    wrong = tmp_path / "wrong.ipynb"  # a notebook of another assignment is reported, not graded
    nb.metadata["otter"]["assignment_name"] = "another-assignment"
    nbformat.write(nb, wrong)
    rows = script.grade(name, [solutions, student, wrong], tmp_path, tmp_path / "grades.csv")
    full, blank, other = rows
    assert other["total"] == 0 and "another-assignment" in other["error"]
    questions = set(tests)
    assert questions <= set(full) and full["possible"] == n_ex * script.QUESTION_POINTS
    assert full["total"] == full["possible"], f"the solutions lost points: {full}"
    assert all(full[q] == script.QUESTION_POINTS for q in questions), full
    assert blank["total"] == 0 and all(blank[q] == 0 for q in questions), f"the blank templates scored: {blank}"
    assert (tmp_path / "grades.csv").read_text(encoding="utf-8").count("\n") == 4

