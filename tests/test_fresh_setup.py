"""Each chapter starts in a fresh environment that has only what Colab has (Python, IPython and a
kernel) plus what its own setup cell installs: a copy of this checkout stands in for the clone, the
setup cell's ``%pip install`` line runs in a new virtual environment, and then the chapter's setup
cell and its next code cell run in a kernel of that environment, in fast mode.

This catches a chapter that imports something the package does not declare, or reads a file that
only a developer's checkout has. It takes a few minutes (the packages come from pip's cache when
the test environment was installed from the same index); set ``VAEAS_SKIP_FRESH=1`` to skip it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("0*.ipynb"))
KERNEL = "vaeas-fresh"
#: What the copy leaves out: build outputs, environments, run folders and caches (as a clone would).
IGNORE = shutil.ignore_patterns(".git", ".venv", "_build", "runs", "processed", "*.egg-info", "__pycache__",
                                ".pytest_cache", ".ipynb_checkpoints", "node_modules")

pytestmark = pytest.mark.skipif(os.environ.get("VAEAS_SKIP_FRESH") == "1", reason="VAEAS_SKIP_FRESH=1")


def colab_block(cell: str) -> list[str]:
    """The lines of a setup cell's Colab block (the body of its ``if "google.colab" ...:``)."""
    lines = cell.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("if") and "google.colab" in line)
    body = []
    for line in lines[start + 1:]:
        if not line.startswith((" ", "\t")):
            break
        body.append(line.strip())
    return body


def _run(cmd: list[str], **kw) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """(the checkout's copy, the environment's JUPYTER_PATH): a venv with ipykernel only, then the
    setup cell's install line run in the copy, as on Colab."""
    base = tmp_path_factory.mktemp("fresh")
    clone = base / "vaeas"
    shutil.copytree(ROOT, clone, ignore=IGNORE)
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    _run([str(python), "-m", "pip", "install", "-q", "ipykernel"])                      # what Colab has
    block = colab_block(_setup_cell(CHAPTERS[0]))
    install = [line for line in block if line.startswith("%pip install")]
    assert install == ["%pip install -q -e ."], install
    _run([str(python), "-m", "pip", "install", "-q", "-e", "."], cwd=clone)               # the setup cell's line
    _run([str(python), "-m", "ipykernel", "install", "--prefix", str(base / "jupyter"), "--name", KERNEL])
    return clone, str(base / "jupyter" / "share" / "jupyter")


def _setup_cell(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return next("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def test_the_colab_block_clones_installs_and_moves_into_the_clone():
    for path in CHAPTERS:
        block = colab_block(_setup_cell(path))
        assert re.match(r"!git clone -q --depth 1 \S+ /content/vaeas$", block[0]), (path.name, block)
        assert 'os.chdir("/content/vaeas")' in block[1] and block[2] == "%pip install -q -e .", (path.name, block)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_a_chapter_starts_in_a_fresh_environment(fresh, path, tmp_path):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    clone, jupyter_path = fresh
    nb = nbformat.read(clone / "book" / path.name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"][:2]                  # the setup cell and the next one
    for c in code:
        c.outputs, c.execution_count = [], None
    nb.cells = code
    env = {**os.environ, "JUPYTER_PATH": jupyter_path, "VAEAS_FAST": "1", "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": "1"}
    data = os.environ.get("VAEAS_DATA") or str(ROOT / "data")
    env["VAEAS_DATA"] = str(Path(data).resolve())
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)              # nbclient starts the kernel with this process's environment
    try:
        client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=600,
                                         resources={"metadata": {"path": str(clone / "book")}})
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    errors = [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
